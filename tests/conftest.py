"""Shared fixtures: real git repositories in temporary folders, with tiny real experiments."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from ratchet.runners.sandbox import find_bwrap, probe

TRAIN = textwrap.dedent(
    """\
    import os
    LR = 0.5

    # Separate lines merge cleanly when a pipelined proposal lands on a newer best.

    WIDTH = 8
    score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100
    print("training...")
    print("---")
    print(f"score: {score:.6f}")
    print("num_steps: 10")
    """
)

CONFIG = textwrap.dedent(
    """\
    [loop]
    editable = "train.py"
    locked = ["prepare.py"]
    command = "{python} train.py"
    budget = "10s"

    [metric]
    name = "score"
    goal = "minimize"

    [agent]
    kind = "mutate"
    seed = 0
    """
)

# Noise of 0.01 whose draws are the same every time the test runs (seeded by the run's number
# and the knobs), yet differ between versions: the judge's rates are bench_judge.py's, not
# this test's luck.
NOISY = """\
import os, random
LR = 0.5


WIDTH = 8
random.seed(f"{os.environ['RATCHET_SEED']}:{LR}:{WIDTH}")
print("score:", (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100 + random.gauss(0, 0.01))
"""

# Runs are sandboxed by default: a test that runs experiments needs bubblewrap to start here.
needs_sandbox = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def commit_all(cwd: Path, message: str = "init") -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-qm", message)


MakeProject = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """A committed git repository holding a tiny loop (editable train.py, metric `score`)."""

    def make(
        train: str = TRAIN,
        config: str | None = None,
        extra: dict[str, str] | None = None,
        commit: bool = True,
        name: str = "project",
    ) -> Path:
        root = tmp_path / name
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        (root / "train.py").write_text(train)
        (root / "prepare.py").write_text("# locked: the data and the evaluation\n")
        (root / "program.md").write_text("Make the score lower.\n")
        (root / "ratchet.toml").write_text((config or CONFIG).format(python=sys.executable))
        for relative, text in (extra or {}).items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_text(text)
        if commit:
            commit_all(root)
        return root

    return make
