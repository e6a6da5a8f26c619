"""`ratchet finalize`: a real loop's keeps carried onto the user's branch in real git, which
never moves; keeps left out, a keep that no longer applies, squash, and a patch series."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject, commit_all, git
from loops import engine_for, run
from ratchet.cli import main
from ratchet.ledger import Ledger

STEPS = [
    (replace("LR = 0.5", "LR = 0.25"), "LR 0.5 → 0.25"),  # 1: kept
    (replace("LR = 0.25", "LR = 0.9"), "LR 0.25 → 0.9"),  # 2: discarded
    (replace("WIDTH = 8", "WIDTH = 10"), "WIDTH 8 → 10"),  # 3: kept
    (replace("WIDTH = 10", "WIDTH = 12"), "WIDTH 10 → 12"),  # 4: kept, on the line 3 wrote
]


@pytest.fixture
async def project(make_project: MakeProject) -> Path:
    """A real loop with keeps 1, 3 and 4 (4 changes the line 3 wrote); not pipelined, so
    each proposal is made from the best before it."""
    root = make_project(config=CONFIG.replace('budget = "10s"', 'budget = "10s"\npipeline = false'))
    await run(engine_for(root, ScriptedAgent(list(STEPS))), 5)
    ledger = Ledger(root / ".ratchet")
    keeps = [e.id for e in ledger.experiments("t") if e.id and str(e.status) == "kept"]
    ledger.close()
    assert keeps == [1, 3, 4]
    return root


def _head(root: Path) -> str:
    return git(root, "rev-parse", "main").strip()


def _branches(root: Path) -> set[str]:
    return set(git(root, "branch", "--format=%(refname:short)").split())


def test_keeps_become_a_review_branch_and_the_users_branch_stays(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _head(project)
    (project / "train.py").write_text((project / "train.py").read_text() + "# my edit\n")
    assert main(["-C", str(project), "finalize"]) == 0
    out = capsys.readouterr().out
    assert "branch ratchet/t-review" in out and "ratchet run --tag t-check" in out
    assert _head(project) == before
    assert git(project, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert (project / "train.py").read_text().endswith("# my edit\n")  # the unsaved edit stays
    subjects = git(project, "log", "--format=%s", "main..ratchet/t-review").splitlines()
    assert subjects == ["WIDTH 10 → 12", "WIDTH 8 → 10", "LR 0.5 → 0.25"]
    message = git(project, "log", "-1", "--format=%B", "ratchet/t-review")
    assert "Ratchet-Experiment: 4" in message and "score 0.0425 → 0.0025" in message
    tip = git(project, "show", "ratchet/t-review:train.py")
    assert tip == git(project, "show", "ratchet/t:train.py")
    assert len(git(project, "worktree", "list").splitlines()) <= 2  # main (+ the loop's slot)
    assert main(["-C", str(project), "finalize"]) == 0  # a second one gets its own name
    assert "branch ratchet/t-review-2" in capsys.readouterr().out


def test_keeps_apply_three_way_on_a_branch_that_moved(project: Path) -> None:
    text = (project / "train.py").read_text() + 'print("moved on")\n'
    (project / "train.py").write_text(text)
    commit_all(project, "the user's own work since the loop began")
    before = _head(project)
    assert main(["-C", str(project), "finalize"]) == 0
    result = git(project, "show", "ratchet/t-review:train.py")
    assert 'print("moved on")' in result and "WIDTH = 12" in result and "LR = 0.25" in result
    assert git(project, "rev-parse", "ratchet/t-review~3").strip() == before


def test_a_keep_left_out_and_one_that_no_longer_applies(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    branches = _branches(project)
    assert main(["-C", str(project), "finalize", "--exclude", "1"]) == 0
    assert "LR = 0.5" in git(project, "show", "ratchet/t-review:train.py")
    capsys.readouterr()
    # 4 changes the line 3 wrote: without 3 it no longer applies. A clear stop, nothing written.
    assert main(["-C", str(project), "finalize", "--exclude", "3"]) == 2
    error = capsys.readouterr().err
    assert "exp 4" in error and "no longer applies" in error and "--exclude 4" in error
    assert _branches(project) == branches | {"ratchet/t-review"}
    assert main(["-C", str(project), "finalize", "--exclude", "3,4"]) == 0
    assert main(["-C", str(project), "finalize", "--exclude", "2"]) == 2
    assert "not a keep" in capsys.readouterr().err
    assert len(git(project, "worktree", "list").splitlines()) <= 2


def test_squash_and_patch_series(project: Path, tmp_path: Path) -> None:
    assert main(["-C", str(project), "finalize", "--squash"]) == 0
    assert git(project, "rev-list", "--count", "main..ratchet/t-review").strip() == "1"
    squashed = git(project, "log", "-1", "--format=%B", "ratchet/t-review")
    assert "(3 keeps)" in squashed and "- exp 3: WIDTH 8 → 10" in squashed
    assert git(project, "show", "ratchet/t-review:train.py") == git(
        project, "show", "ratchet/t:train.py"
    )
    patches = tmp_path / "patches"
    branches = _branches(project)
    assert main(["-C", str(project), "finalize", "--patch", str(patches)]) == 0
    assert _branches(project) == branches  # a patch series, no branch
    series = sorted(patches.glob("*.patch"))
    assert [p.name[:4] for p in series] == ["0001", "0002", "0003"]
    git(project, "switch", "-q", "-c", "apply-here", "main")
    git(project, "am", "-q", *map(str, series))
    assert (project / "train.py").read_text() == git(project, "show", "ratchet/t:train.py")


def test_the_offered_command_measures_the_review_branch_again(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(project), "finalize"]) == 0
    offered = capsys.readouterr().out.split("`")[1]  # git switch ... && ratchet run ...
    switch, measure = offered.split(" && ")
    git(project, *switch.split()[1:])
    assert main(["-C", str(project), *measure.split()[1:]]) == 0
    ledger = Ledger(project / ".ratchet")
    baseline = ledger.experiments("t-check")[0]
    assert baseline.source == "baseline" and baseline.metric == pytest.approx(0.0025)
    ledger.close()


def test_a_killed_finalize_leaves_no_worktree_behind(project: Path, tmp_path: Path) -> None:
    # What a SIGKILL in the middle of a finalize leaves: its scratch worktree, registered,
    # in a folder named after its (now dead) process.
    dead = subprocess.Popen(["true"])
    dead.wait()
    scratch = tmp_path / f"ratchet-finalize-{dead.pid}-killed" / "tree"
    git(project, "worktree", "add", "--detach", "--quiet", str(scratch), "main")
    assert str(scratch) in git(project, "worktree", "list")
    # One of a finalize still running (this process) is left alone.
    live = tmp_path / f"ratchet-finalize-{os.getpid()}-running" / "tree"
    git(project, "worktree", "add", "--detach", "--quiet", str(live), "main")
    assert main(["-C", str(project), "finalize"]) == 0
    listed = git(project, "worktree", "list")
    assert str(scratch) not in listed and not scratch.parent.exists()
    assert str(live) in listed and live.exists()
