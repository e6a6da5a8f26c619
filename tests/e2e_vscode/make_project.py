"""Writes the end-to-end test's workspace: tests/conftest.py's tiny loop (TRAIN, CONFIG) as a
committed git repository, with a 1-2 s experiment and the review gate on.

    python make_project.py DEST        (DEST must not exist; the interpreter running this
                                        script is the one the experiments run with)
    python make_project.py DEST --anthropic BASE_URL
                                       (the anthropic agent, against a Messages API there)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from conftest import CONFIG, TRAIN, commit_all, git  # noqa: E402

SLEEP = "import time\ntime.sleep(1.2)  # a 1-2 s experiment: long enough to see it run\n"


def config_text(python: str) -> str:
    text = CONFIG.format(python=python)
    if re.search(r"^review\s*=", text, flags=re.M):
        text = re.sub(r"^review\s*=.*$", 'review = "propose"', text, flags=re.M)
    else:
        text = text.replace("[loop]\n", '[loop]\nreview = "propose"\n', 1)
    return text


def main(dest: Path, anthropic: str | None = None) -> None:
    dest.mkdir(parents=True)
    git(dest, "init", "-q", "-b", "main")
    (dest / "train.py").write_text(SLEEP + TRAIN)
    (dest / "prepare.py").write_text("# locked: the data and the evaluation\n")
    (dest / "program.md").write_text("Make the score lower.\n")
    config = config_text(sys.executable)
    if anthropic:
        agent = f'kind = "anthropic"\nbase_url = "{anthropic}"\nmax_tokens = 1024'
        config = config.replace('kind = "mutate"', agent)
    (dest / "ratchet.toml").write_text(config)
    commit_all(dest)
    # the e2e changes settings in .vscode/settings.json mid-loop; like many users, it keeps
    # that folder out of git (else the loop would refuse to start on uncommitted files)
    (dest / ".git" / "info").mkdir(parents=True, exist_ok=True)
    with (dest / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".vscode/\n")


if __name__ == "__main__":
    anthropic = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--anthropic" else None
    main(Path(sys.argv[1]), anthropic)
