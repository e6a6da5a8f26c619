"""Lock files a git process killed with the loop leaves behind: the loop's own are cleared when
it opens again, anyone else's are left alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agents import ScriptedAgent, replace
from conftest import MakeProject, git
from loops import engine_for, run
from ratchet.experiment import Status
from ratchet.workspace import Workspace


def plant(path: Path, age_s: float = 60.0) -> None:
    """A lock as a git process killed mid-write leaves it: the start of an object id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("4b825dc642cb6eb9a060")
    moment = time.time() - age_s
    os.utime(path, (moment, moment))


async def test_a_killed_gits_locks_on_the_loops_refs_are_cleared_and_others_left(
    make_project: MakeProject,
) -> None:
    root = make_project()
    await run(engine_for(root), 1)  # the baseline, exp 0
    dot_git = root / ".git"
    # The loop was killed while git wrote exp 1's ref, moved its branch, and checked out a
    # slot: a kill leaves no close mark, and the locks stay.
    (root / ".ratchet" / "loops" / "t" / "closed.json").unlink()
    ours = [dot_git / "refs/ratchet/t/exp/1.lock", dot_git / "refs/heads/ratchet/t.lock"]
    slot = root / ".ratchet" / "worktrees" / "cpu"
    git(root, "worktree", "add", "-q", "--detach", str(slot), "HEAD")
    ours += [dot_git / "worktrees/cpu/index.lock", dot_git / "worktrees/cpu/HEAD.lock"]
    # A person's git in their own checkout, and another loop's ref: not the loop's to clear.
    theirs = [dot_git / "index.lock", dot_git / "refs/heads/main.lock"]
    theirs.append(dot_git / "refs/ratchet/other/exp/3.lock")
    for lock in ours + theirs:
        plant(lock)

    engine = engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w12")]))
    await run(engine, 2)

    experiments = engine.ledger.experiments("t")
    assert [e.status for e in experiments] == [Status.KEPT, Status.KEPT]
    assert engine.workspace.experiment_refs()[1] == experiments[1].commit
    assert engine.workspace.branch_tip() == experiments[1].commit
    assert [lock for lock in ours if lock.exists()] == []
    assert all(lock.read_text() == "4b825dc642cb6eb9a060" for lock in theirs)


def test_a_lock_taken_after_the_loop_lock_is_left(make_project: MakeProject) -> None:
    root = make_project()
    workspace = Workspace(root, "t")
    old, new = root / ".git/refs/ratchet/t/exp/1.lock", root / ".git/refs/ratchet/t/exp/2.lock"
    plant(old, age_s=60)
    plant(new, age_s=30)
    held_since = time.time() - 45  # the loop lock was taken between the two
    assert workspace.clear_stale_locks(held_since) == ["refs/ratchet/t/exp/1.lock"]
    assert not old.exists() and new.exists()
