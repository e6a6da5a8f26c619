"""A run cannot shape the next one, and the proposing agent sees only what a run may see,
labelled: attacks 3, 7 and the second half of 9, through the real loop. Each ends refused,
voided or harmless, and an honest edit in the same loop is still kept."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest
from agents import ScriptedAgent
from conftest import MakeProject, commit_all
from loops import engine_for, run
from ratchet.experiment import Status
from ratchet.runners.sandbox import find_bwrap, probe
from test_sandbox_attacks import FAST, attack

pytestmark = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)

LOCKED_TEXT = b"# locked: the data and the evaluation\n"
# Every run first says what its folder holds: the next run shows what the last one left.
SEEN = """
seen = sorted(os.path.relpath(os.path.join(d, f), ".") for d, ds, fs in os.walk(".")
              for f in fs + [x + "/" for x in ds if x == ".git"] if "__pycache__" not in d)
print("SEEN", seen, open("prepare.py", "rb").read())
"""
TOUCH = """
for name in ("prepare.py", "train.py", "program.md"):
    os.utime(name, (0, 0))  # stat-dirty: the next checkout looks at them again
"""


def leaves(name: str, body: str) -> tuple[object, str]:
    """An attack that leaves `body`'s state behind it, named `name` in the ledger."""
    return attack(SEEN + TOUCH + textwrap.dedent(body))[0], name


ATTRIBUTES = leaves(
    "attributes",
    """
    open(".gitattributes", "w").write("* text eol=crlf\\n")
    """,
)
ENCODING = leaves(
    "encoding",
    """
    open(".gitattributes", "w").write("*.py working-tree-encoding=UTF-16LE\\n")
    """,
)
FILTER = leaves(
    "filter",
    """
    open(".gitattributes", "w").write("* filter=lfs diff=lfs merge=lfs ident export-subst\\n")
    """,
)
IGNORE = leaves(
    "ignore",
    """
    open(".gitignore", "w").write("*\\n")
    open("json.py", "w").write("raise SystemExit('shadowed')\\n")  # would shadow an import
    os.makedirs("cache", exist_ok=True)
    open("cache/.gitignore", "w").write("*\\n")
    open("cache/state", "w").write("for the next run\\n")
    """,
)


def git_state(marker: Path) -> tuple[object, str]:
    """Git's own places: the admin folder (through the run folder's link, or above it), a
    nested repository whose monitor would run `touch marker`, submodules, a config file."""
    return leaves(
        "git state",
        f"""
        for where in (".git/info/attributes", ".git/config", "../.git/info/attributes",
                      "../../.git/info/attributes", "../../../.git/info/attributes"):
            try:
                os.makedirs(os.path.dirname(where), exist_ok=True)
                open(where, "w").write("* text eol=crlf\\n")
                print("wrote", where)  # inside the sandbox: to a throwaway tmpfs
            except OSError as error:
                print(where, type(error).__name__)
        try:
            print("link:", repr(open(".git").read()))
        except OSError as error:
            print("link:", type(error).__name__)
        os.makedirs("nested/.git/hooks", exist_ok=True)
        open("nested/.git/HEAD", "w").write("ref: refs/heads/main\\n")
        open("nested/.git/config", "w").write("[core]\\n\\tfsmonitor = touch {marker}\\n")
        open(".gitmodules", "w").write('[submodule "x"]\\n\\tpath = nested\\n\\turl = ./nested\\n')
        open(".gitconfig", "w").write("[core]\\n\\tautocrlf = true\\n")
        """,
    )


def planted(log: str, link: bool = True) -> list[str]:
    """What the run's folder held when it started, beyond the project's tracked files (and
    the worktree's `.git` link when the run folder is the worktree's top)."""
    line = next(line for line in log.splitlines() if line.startswith("SEEN "))
    listing, _, locked = line[5:].partition("] ")
    names = ast.literal_eval(listing + "]")
    tracked = ("train.py", "prepare.py", "program.md", "ratchet.toml", *([".git"] if link else []))
    extra = [n for n in names if n not in tracked]
    return extra + ([] if ast.literal_eval(locked) == LOCKED_TEXT else ["prepare.py changed"])


def honest_probe(text: str) -> str:
    """The honest edit (WIDTH 8 -> 12, a better score) that also says what it found."""
    return text.replace("WIDTH = 8", "WIDTH = 12") + SEEN


async def test_a_run_leaves_nothing_that_shapes_the_next_checkout(
    make_project: MakeProject, tmp_path: Path
) -> None:
    marker = tmp_path / "monitor-ran"
    attacks = [ATTRIBUTES, ENCODING, FILTER, IGNORE, git_state(marker)]
    root = make_project(config=FAST)
    engine = engine_for(root, ScriptedAgent([*attacks, (honest_probe, "honest: width 12")]))
    await run(engine, len(attacks) + 2)
    rows = engine.ledger.experiments("t")
    tried, honest = rows[1:-1], rows[-1]
    logs = [Path(exp.log_path).read_text(errors="replace") for exp in [*tried, honest]]
    # Each attack ran from a clean folder: none was voided by the one before it.
    for exp in tried:
        assert exp.status is Status.DISCARDED, (exp.description, exp.reason)
    for log in logs:
        assert "ATTACK-OK" not in log, log
        assert planted(log) == [], log
    assert honest.status is Status.KEPT, honest.reason
    assert not marker.exists()
    # git's own files, outside: untouched
    admin = root / ".git"
    assert not (admin / "info" / "attributes").exists()
    assert "crlf" not in (admin / "config").read_text()
    # the worktree's link to the repository is not there to read
    assert "link: ''" in logs[-2] or "link: PermissionError" in logs[-2], logs[-2]


async def test_a_planted_repository_in_a_subfolder_project_is_gone_next_run(
    make_project: MakeProject, tmp_path: Path
) -> None:
    """In a project below the repository's top, the run folder has no `.git` link: a run can
    make one, which git itself would never list nor clean."""
    root = make_project(config=FAST, commit=False)
    nested = root / "sub" / "loop"
    nested.mkdir(parents=True)
    for name in ("train.py", "prepare.py", "program.md", "ratchet.toml"):
        (root / name).rename(nested / name)
    commit_all(root)
    marker = tmp_path / "monitor-ran"
    plant = leaves(
        "a repository in the run folder",
        f"""
        os.makedirs(".git/hooks", exist_ok=True)
        open(".git/HEAD", "w").write("ref: refs/heads/main\\n")
        open(".git/config", "w").write("[core]\\n\\tfsmonitor = touch {marker}\\n")
        open(".git/hooks/post-checkout", "w").write("#!/bin/sh\\ntouch {marker}\\n")
        os.chmod(".git/hooks/post-checkout", 0o755)
        """,
    )
    engine = engine_for(nested, ScriptedAgent([plant, (honest_probe, "honest: width 12")]))
    await run(engine, 3)
    _baseline, planter, honest = engine.ledger.experiments("t")
    assert planter.status is Status.DISCARDED, planter.reason
    assert honest.status is Status.KEPT, honest.reason
    assert planted(Path(honest.log_path).read_text(), link=False) == []
    assert not marker.exists()
