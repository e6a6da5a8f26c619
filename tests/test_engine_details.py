"""Smaller promises of the engine, each found broken once and mended."""

from __future__ import annotations

import os
import stat
import sys

from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject, commit_all, git
from loops import engine_for, run, statuses
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Status


async def test_a_dot_slash_editable_path_is_the_same_file(make_project: MakeProject) -> None:
    root = make_project(config=CONFIG.replace('editable = "train.py"', 'editable = "./train.py"'))
    engine = engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w12")]))
    await run(engine, 2)
    assert statuses(engine) == ["kept", "kept"]  # before: every edit refused as out of scope


async def test_the_users_git_hooks_never_run_and_no_worktree_stays(
    make_project: MakeProject,
) -> None:
    root = make_project()
    marker = root.parent / "hook-ran"
    hook = root / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    engine = engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w12")]))
    await run(engine, 2)
    assert not marker.exists()
    assert git(root, "worktree", "list", "--porcelain").count("worktree ") == 1


async def test_a_repair_keeps_the_crash_log(make_project: MakeProject) -> None:
    root = make_project()
    agent = ScriptedAgent(
        [(replace("WIDTH = 8", "WIDTH = undefined_name"), "typo")],
        repairs=[(replace("WIDTH = undefined_name", "WIDTH = 12"), "fix the name")],
    )
    engine = engine_for(root, agent)
    await run(engine, 2)
    logs = engine.data / "logs"
    assert "NameError" in (logs / "1.log").read_text()  # the crash, as it was
    assert (logs / "1.repair1.log").read_text().startswith("training...")
    exp = engine.experiment(1)
    assert exp is not None and exp.log_path.endswith("1.repair1.log")


async def test_two_loops_keep_their_logs_apart(make_project: MakeProject) -> None:
    root = make_project()
    await run(engine_for(root, ScriptedAgent([]), tag="a"), 1)
    await run(engine_for(root, ScriptedAgent([]), tag="b"), 1)
    a, b = (root / ".ratchet" / "loops" / tag / "logs" / "0.log" for tag in "ab")
    assert a.exists() and b.exists()
    assert Engine(load_config(root), tag="a").experiment(0).log_path == str(a)  # type: ignore[union-attr]


async def test_a_changed_rule_is_refused_and_new_rules_measure_the_baseline_again(
    make_project: MakeProject,
) -> None:
    root = make_project()
    await run(engine_for(root, ScriptedAgent([])), 1)
    (root / "ratchet.toml").write_text(
        (root / "ratchet.toml").read_text().replace('goal = "minimize"', 'goal = "maximize"')
    )
    engine = engine_for(root, ScriptedAgent([]))
    try:
        await engine.run(max_experiments=3)
        raise AssertionError("a changed goal ran")
    except Exception as problem:  # RatchetError: said in words, nothing run
        assert "changes the rules" in str(problem) and "goal (minimize → maximize)" in str(problem)
    finally:
        await engine.close()
    assert len(engine.ledger.experiments("t")) == 1
    again = Engine(load_config(root), tag="t", agent=ScriptedAgent([]), new_rules=True)
    await run(again, 2)
    baselines = [e for e in again.ledger.experiments("t") if e.source == "baseline"]
    assert len(baselines) == 2 and baselines[1].status is Status.KEPT
    assert again.ledger.loop("t")["rules"]["goal"] == "maximize"  # type: ignore[index]


async def test_a_moved_user_branch_is_said_and_can_be_carried(make_project: MakeProject) -> None:
    root = make_project()
    await run(engine_for(root, ScriptedAgent([])), 1)
    (root / "train.py").write_text((root / "train.py").read_text().replace("LR = 0.5", "LR = 0.3"))
    commit_all(root, "my own edit")
    refused = engine_for(root, ScriptedAgent([]))
    try:
        await refused.run(max_experiments=2)
        raise AssertionError("old code ran silently")
    except Exception as problem:
        assert "your branch changed train.py" in str(problem) and "--carry" in str(problem)
    finally:
        await refused.close()
    carried = Engine(load_config(root), tag="t", agent=ScriptedAgent([]), carry_user_change=True)
    await run(carried, 2)
    mine = carried.ledger.experiments("t")[-1]
    assert mine.source == "human" and mine.description.startswith("your change from")
    assert mine.status is Status.KEPT  # LR 0.3 is the optimum of the test metric


async def test_a_moved_loop_branch_is_refused_not_trusted(make_project: MakeProject) -> None:
    root = make_project()
    await run(engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w")])), 2)
    forged = git(root, "commit-tree", "HEAD^{tree}", "-m", "forged").strip()
    git(root, "update-ref", "refs/heads/ratchet/t", forged)
    engine = engine_for(root, ScriptedAgent([]))
    try:
        await engine.run(max_experiments=3)
        raise AssertionError("a forged branch was trusted")
    except Exception as problem:
        assert "something other than Ratchet moved it" in str(problem)
        assert "git update-ref refs/heads/ratchet/t" in str(problem)
    finally:
        await engine.close()


def test_forget_drops_a_loop_whose_baseline_failed(make_project: MakeProject) -> None:
    import subprocess

    root = make_project(train="raise SystemExit(3)\n")
    command = [sys.executable, "-m", "ratchet.cli", "-C", str(root)]
    done = subprocess.run([*command, "run", "--tag", "x"], capture_output=True, text=True)
    assert done.returncode == 1 and "ratchet forget" in done.stdout + done.stderr
    # Forgetting builds no agent: an anthropic loop whose key is not here is forgotten too.
    config = root / "ratchet.toml"
    config.write_text(config.read_text().replace('kind = "mutate"', 'kind = "anthropic"'))
    environ = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run(
        [*command, "forget", "--tag", "x"], capture_output=True, text=True, env=environ
    )
    assert done.returncode == 0 and "forgot loop x" in done.stdout, done.stdout + done.stderr
    assert git(root, "for-each-ref", "refs/ratchet/x", "refs/heads/ratchet/x").strip() == ""


async def test_the_refs_are_checked_at_every_open_that_follows_no_clean_close(
    make_project: MakeProject,
) -> None:
    """A clean close marks the refs as agreeing with the ledger, so the next open skips
    reading them all; the mark is taken at open, so a loop killed later leaves none."""
    root = make_project()
    engine = engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w12")]))
    await run(engine, 2)
    mark = engine.data / "closed.json"
    assert mark.exists()
    commit = engine.ledger.get("t", 1).commit  # type: ignore[union-attr]
    dying = engine_for(root, ScriptedAgent([]))
    await dying.open()
    assert not mark.exists()
    dying.lock.release()  # killed: it never closes
    git(root, "update-ref", "-d", "refs/ratchet/t/exp/1")  # a ref the kill never wrote
    again = engine_for(root, ScriptedAgent([]))
    await again.open()
    try:
        assert git(root, "rev-parse", "refs/ratchet/t/exp/1").strip() == commit
    finally:
        await again.close()
    assert mark.exists()
