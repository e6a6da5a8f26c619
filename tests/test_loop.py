"""The loop end to end on real git repositories and real processes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject, commit_all, git
from loops import engine_for, run, statuses
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.errors import LoopBusyError, RatchetError, WorkspaceError
from ratchet.events import ExperimentFinished, ExperimentStarted, OutputLine
from ratchet.experiment import Status
from ratchet.runners.base import Job, OnLine, RunControl, RunOutcome, Slot
from ratchet.runners.local import LocalRunner
from ratchet.runners.processes import processes_with_token


async def test_keeps_improvements_and_the_branch_holds_exactly_the_kept(
    make_project: MakeProject,
) -> None:
    root = make_project()
    user_head = git(root, "rev-parse", "HEAD").strip()
    agent = ScriptedAgent(
        [
            (replace("WIDTH = 8", "WIDTH = 12"), "WIDTH 8 → 12"),  # better
            # Prepared while exp 1 ran (pipelining): merged onto exp 1's WIDTH 12, still worse.
            (replace("LR = 0.5", "LR = 0.9"), "LR 0.5 → 0.9"),
            (replace("LR = 0.5", "LR = 0.3"), "LR 0.5 → 0.3"),  # better
        ]
    )
    engine = engine_for(root, agent)
    events = await run(engine, 4)
    assert statuses(engine) == ["kept", "kept", "discarded", "kept"]
    experiments = engine.ledger.experiments("t")
    assert [e.metric for e in experiments] == pytest.approx([0.2, 0.04, 0.36, 0.0])
    assert experiments[1].secondary == {"num_steps": 10.0}
    assert "-WIDTH = 8\n+WIDTH = 12" in experiments[1].diff
    assert "No newline" not in experiments[1].diff  # the final newline survives git
    assert engine.text_of(1).endswith('print("num_steps: 10")\n')
    subjects = git(root, "log", "--format=%s", f"{user_head}..ratchet/t").splitlines()
    assert subjects == ["exp 3: LR 0.5 → 0.3", "exp 1: WIDTH 8 → 12", "exp 0: baseline"]
    message = git(root, "log", "-1", "--format=%B", "ratchet/t")
    assert "Ratchet-Experiment: 3" in message and "Ratchet-Status: kept" in message
    assert "Ratchet-Metric: score=0" in message
    refs = git(root, "for-each-ref", "--format=%(refname)", "refs/ratchet/t/exp/").split()
    assert len(refs) == 4  # the discarded one is kept too, under its ref
    discarded = git(root, "log", "-1", "--format=%B", "refs/ratchet/t/exp/2")
    assert "Ratchet-Status: discarded" in discarded
    # The user's branch, working tree and index are untouched.
    assert git(root, "rev-parse", "HEAD").strip() == user_head
    assert git(root, "status", "--porcelain").strip() == ""
    assert "WIDTH = 8" in (root / "train.py").read_text()
    # Every output line streamed as an event; results.tsv follows autoresearch's columns.
    assert any(isinstance(e, OutputLine) and e.line == "training..." for e in events)
    tsv = (root / ".ratchet" / "results.tsv").read_text().splitlines()
    assert tsv[0] == "commit\tscore\tmemory_gb\tstatus\tdescription"
    assert tsv[2].split("\t")[3] == "keep" and tsv[3].split("\t")[3] == "discard"
    assert (
        (root / ".ratchet" / "loops" / "t" / "logs" / "1.log").read_text().startswith("training...")
    )
    assert experiments[1].hardware["cpu"]


async def test_resume_carries_on_numbering_branch_and_best(make_project: MakeProject) -> None:
    root = make_project()
    first = engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w12")]))
    await run(first, 2)
    second = engine_for(root, ScriptedAgent([(replace("LR = 0.5", "LR = 0.4"), "lr .4")]))
    await run(second, 3)  # --max-experiments counts the whole loop: one more
    experiments = second.ledger.experiments("t")
    assert [e.id for e in experiments] == [0, 1, 2]
    assert experiments[2].base_commit == experiments[1].commit  # built on the kept best
    assert "WIDTH = 12" in second.agent.contexts[0].editable_text
    assert experiments[2].status is Status.KEPT


async def test_the_default_tag_resumes_the_last_loop(make_project: MakeProject) -> None:
    root = make_project()
    await run(Engine(load_config(root), tag="first"), 1)
    engine = Engine(load_config(root))
    assert engine.tag == "first"
    await engine.close()


async def test_an_edit_outside_the_editable_file_is_invalid(make_project: MakeProject) -> None:
    root = make_project()
    agent = ScriptedAgent(
        [
            ({"prepare.py": "evil\n"}, "edit the evaluator"),
            ({"../outside.py": "x = 1\n"}, "escape"),
            ({"train.py": "LR = 1\x00\n"}, "binary junk"),
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 4)
    experiments = engine.ledger.experiments("t")
    assert statuses(engine) == ["kept", "invalid", "invalid", "invalid"]
    assert "only train.py may change" in experiments[1].reason
    assert "outside the repository" in experiments[2].reason
    assert "binary" in experiments[3].reason
    assert not (root.parent / "outside.py").exists()
    assert (root / "prepare.py").read_text().startswith("# locked")


async def test_a_run_that_edits_a_locked_file_is_voided(make_project: MakeProject) -> None:
    root = make_project()
    tamper = "open('prepare.py', 'a').write('# tampered\\n')\n"
    engine = engine_for(root, ScriptedAgent([(lambda t: tamper + t, "tamper")]))
    await run(engine, 2)
    exp = engine.ledger.experiments("t")[1]
    assert exp.status is Status.VOIDED
    assert "changed locked files: prepare.py" in exp.reason


@pytest.mark.parametrize(
    ("train", "reason"),
    [
        ("print('no metric here')\n", "no `score: <number>` line"),
        ("print('score: nan')\n", "score is nan, not a finite number"),
        ("import sys\nprint('boom')\nsys.exit(3)\n", "exit code 3: boom"),
    ],
)
async def test_a_baseline_without_a_metric_stops_with_an_error(
    make_project: MakeProject, train: str, reason: str
) -> None:
    root = make_project(train="LR = 1\n" + train)
    engine = engine_for(root)
    events = await run(engine, 3)
    exp = engine.ledger.experiments("t")[0]
    assert exp.status is Status.CRASHED and reason in exp.reason
    assert exp.metric is None
    assert engine.state == "error"
    assert len(engine.ledger.experiments("t")) == 1  # nothing ran on a broken baseline
    assert any(isinstance(e, ExperimentFinished) for e in events)


async def test_a_missing_command_is_refused_before_the_loop_exists(
    make_project: MakeProject,
) -> None:
    root = make_project(config=CONFIG.replace("{python} train.py", "no-such-program --flag"))
    engine = engine_for(root)
    with pytest.raises(RatchetError, match=r"`no-such-program` not found.*nothing was started"):
        await run(engine, 1)
    assert engine.ledger.tags() == []  # no loop, no branch, no refs: nothing half-made
    assert not git(root, "for-each-ref", "refs/ratchet", "refs/heads/ratchet")
    # Mended, the same tag starts at once, its baseline run within the quota.
    (root / "ratchet.toml").write_text(CONFIG.replace("{python}", sys.executable))
    engine = engine_for(root)
    await run(engine, 1)
    assert [e.status for e in engine.ledger.experiments("t")] == [Status.KEPT]


async def test_a_crash_after_the_baseline_is_recorded_and_the_loop_goes_on(
    make_project: MakeProject,
) -> None:
    root = make_project()
    agent = ScriptedAgent(
        [
            (replace("WIDTH = 8", "WIDTH = undefined_name"), "typo"),
            (replace("WIDTH = 8", "WIDTH = 11"), "w11"),
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 4)
    crashed, kept = engine.ledger.experiments("t")[1:3]
    assert crashed.status is Status.CRASHED
    assert "NameError" in crashed.log_tail and crashed.exit_code == 1
    assert kept.status is Status.KEPT
    # The proposal prepared after the crash finished sees it, with its traceback.
    seen = [c for c in agent.contexts if c.repair_of is None][2].history[1]
    assert seen.status == "crashed" and "NameError" in seen.log_tail


SPAWNER = """\
import os, subprocess, sys, time
LR = 0.5
if float(os.environ.get("SLOW", "1")) and LR < 1:
    # a child and a grandchild that double-forks away from the process group
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    subprocess.Popen([sys.executable, "-c",
        "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(300)"])
    time.sleep(300)
print("score: 1.0")
"""


async def test_a_run_past_its_timeout_is_killed_with_all_its_children(
    make_project: MakeProject,
) -> None:
    config = CONFIG.replace('budget = "10s"', 'budget = "1s"\ntimeout = "2s"\ngrace = "5s"')
    root = make_project(train=SPAWNER, config=config)
    engine = engine_for(root)
    tokens: list[str] = []
    original = os.environ.copy()
    started = time.monotonic()
    await run(engine, 1)
    assert time.monotonic() - started < 20
    exp = engine.ledger.experiments("t")[0]
    assert exp.status is Status.TIMEOUT
    assert "killed after 2s" in exp.reason
    # Nothing that carried a Ratchet run token is left alive.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            mine = f"RATCHET_LOOP={engine.loop_id}".encode()  # not another test's loop
            if mine in environ and b"RATCHET_RUN_TOKEN=" in environ:
                token = environ.split(b"RATCHET_RUN_TOKEN=")[1].split(b"\0")[0].decode()
                tokens.append(token)
    assert not [t for t in tokens if processes_with_token(t)]
    assert os.environ == original


async def test_processes_left_behind_void_the_experiment(make_project: MakeProject) -> None:
    leaver = (
        "import subprocess, sys\nLR = 0.5\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\nprint('score: 0.1')\n"
    )
    root = make_project()
    engine = engine_for(root, ScriptedAgent([(lambda _: leaver, "leave a daemon")]))
    await run(engine, 2)
    exp = engine.ledger.experiments("t")[1]
    assert exp.status is Status.VOIDED and "left 1 process" in exp.reason


async def test_refuses_a_folder_that_is_not_a_repository(
    tmp_path: Path, make_project: MakeProject
) -> None:
    root = make_project(commit=False)
    (root / ".git").rename(root / "not-git")
    with pytest.raises(WorkspaceError, match="not inside a git repository"):
        engine_for(root)


async def test_refuses_a_repository_with_no_commit(make_project: MakeProject) -> None:
    root = make_project(commit=False)
    engine = engine_for(root)
    with pytest.raises(WorkspaceError, match="no commit yet"):
        await engine.open()
    await engine.close()


async def test_refuses_uncommitted_changes_to_the_editable_file(make_project: MakeProject) -> None:
    root = make_project()
    (root / "train.py").write_text((root / "train.py").read_text() + "# unsaved thought\n")
    engine = engine_for(root)
    with pytest.raises(WorkspaceError, match=r"uncommitted changes to train.py.*git stash"):
        await engine.open()
    await engine.close()
    assert "unsaved thought" in (root / "train.py").read_text()  # nothing lost


async def test_a_second_loop_on_the_same_project_is_refused(make_project: MakeProject) -> None:
    root = make_project()
    first = engine_for(root)
    await first.open()
    second = engine_for(root)
    with pytest.raises(LoopBusyError, match="already running"):
        await second.open()
    await first.close()
    await second.open()  # free again once the first is gone
    await second.close()


async def test_stop_interrupts_the_running_experiment(make_project: MakeProject) -> None:
    slow = "import time\nLR = 0.5\ntime.sleep(30)\nprint('score: 1')\n"
    root = make_project()
    engine = engine_for(root, ScriptedAgent([(lambda _: slow, "slow")]))
    started = asyncio.Event()
    engine.bus.subscribe(
        lambda e: started.set() if isinstance(e, ExperimentStarted) and e.id == 1 else None
    )
    task = asyncio.create_task(run(engine, 5))
    await asyncio.wait_for(started.wait(), 20)
    await asyncio.sleep(0.3)
    engine.stop()
    await asyncio.wait_for(task, 20)
    assert statuses(engine)[-1] == "interrupted"


async def test_parallel_slots_run_at_once_and_see_their_gpu(make_project: MakeProject) -> None:
    sleeper = (
        "import os, time\nLR = {lr}\ntime.sleep(1.5)\n"
        "print('gpu', os.environ['CUDA_VISIBLE_DEVICES'])\nprint('score:', LR)\n"
    )
    config = CONFIG.replace("[agent]", "[runner]\ngpus = [0, 1]\n\n[agent]")
    root = make_project(train=sleeper.format(lr=0.5), config=config)
    agent = ScriptedAgent([(replace("LR = 0.5", f"LR = 0.{n}"), f"lr {n}") for n in (7, 8)])
    engine = engine_for(root, agent)
    started = time.monotonic()
    await run(engine, 3)
    elapsed = time.monotonic() - started
    experiments = engine.ledger.experiments("t")
    assert [e.status for e in experiments[1:]] == [Status.DISCARDED, Status.DISCARDED]
    # The two experiments overlapped in time, one per GPU.
    a, b = experiments[1], experiments[2]
    assert a.started_at < b.finished_at and b.started_at < a.finished_at
    assert elapsed < 3 * 1.5 + 4
    logs = {Path(e.log_path).read_text().split("\n")[0] for e in experiments[1:]}
    assert logs == {"gpu 0", "gpu 1"}


async def test_a_better_result_on_a_stale_base_is_merged_and_measured_again(
    make_project: MakeProject,
) -> None:
    train = (
        "import time\nLR = 0.5\n\n\nWIDTH = 8\n\n\nDELAY = 0.2\ntime.sleep(DELAY)\n"
        "print('score:', (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100)\n"
    )
    config = CONFIG.replace("[agent]", "[runner]\ngpus = [0, 1]\n\n[agent]")
    root = make_project(train=train, config=config)
    agent = ScriptedAgent(
        [
            (replace("WIDTH = 8", "WIDTH = 12"), "w12 (fast)"),
            (
                lambda t: t.replace("LR = 0.5", "LR = 0.3").replace("DELAY = 0.2", "DELAY = 1.5"),
                "lr .3 (slow)",
            ),
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 4)
    experiments = engine.ledger.experiments("t")
    by_description = {e.description: e for e in experiments}
    slow = by_description["lr .3 (slow)"]
    assert slow.status is Status.DISCARDED and "the best moved on" in slow.reason
    [remeasured] = [e for e in experiments if e.source == "rebase"]
    assert remeasured.status is Status.KEPT and remeasured.id > slow.id
    text = engine.workspace.read(remeasured.commit or "", "train.py")
    assert "WIDTH = 12" in text and "LR = 0.3" in text  # both changes, merged
    # A linear branch: every commit's parent is the previous kept one.
    log = git(root, "log", "--format=%s", "--first-parent", "main..ratchet/t").splitlines()
    merges = git(root, "log", "--merges", "--format=%H", "main..ratchet/t").strip()
    assert merges == "" and len(log) == 3


async def test_the_user_checked_out_on_the_loop_branch_is_refused(
    make_project: MakeProject,
) -> None:
    root = make_project()
    await run(engine_for(root), 1)
    git(root, "switch", "-q", "ratchet/t")
    engine = engine_for(root)
    with pytest.raises(RatchetError, match="checked out"):
        await engine.open()
    await engine.close()


async def test_a_project_in_a_subfolder_of_the_repository(
    tmp_path: Path, make_project: MakeProject
) -> None:
    root = make_project(commit=False)
    nested = root / "examples" / "loop"
    nested.mkdir(parents=True)
    for name in ("train.py", "prepare.py", "program.md", "ratchet.toml"):
        (root / name).rename(nested / name)
    commit_all(root)
    engine = engine_for(nested, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w12")]))
    await run(engine, 2)
    assert statuses(engine) == ["kept", "kept"]
    assert (nested / ".ratchet" / "ledger.sqlite").exists()
    assert "WIDTH = 12" in git(root, "show", "ratchet/t:examples/loop/train.py")


async def test_a_fast_crash_goes_back_to_the_agent_for_repair(make_project: MakeProject) -> None:
    root = make_project()
    agent = ScriptedAgent(
        [(replace("WIDTH = 8", "WIDTH = undefined_name"), "WIDTH from a typo")],
        repairs=[(replace("WIDTH = undefined_name", "WIDTH = 12"), "fix the name")],
    )
    engine = engine_for(root, agent)
    await run(engine, 2)
    exp = engine.ledger.experiments("t")[1]
    assert exp.status is Status.KEPT, exp.reason
    assert exp.description == "WIDTH from a typo (repaired: fix the name)"
    assert "+WIDTH = 12" in exp.diff
    repair = agent.contexts[-1].repair_of
    assert repair is not None and "NameError" in repair.log_tail
    assert [run["metric"] is None for run in engine.ledger.runs("t", 1)] == [True, False]
    trace = (root / ".ratchet" / "loops" / "t" / "traces" / "1.jsonl").read_text()
    assert '"repair": 1' in trace


class TwoKindsOfGpu(LocalRunner):
    """The local runner on two slots that report different GPU models (what an ssh or Ray
    runner reports for mixed hosts)."""

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        outcome = await super().run(job, slot, on_line, control)
        model = "A100" if slot.gpu == 0 else "H100"
        outcome.hardware = {**outcome.hardware, "gpu": model, "gpu_count": 1}
        return outcome


async def test_a_winner_from_other_hardware_is_measured_again_on_the_baselines(
    make_project: MakeProject,
) -> None:
    train = (
        "import time\nLR = 0.5\n\n\nWIDTH = 8\ntime.sleep(0.4)\n"
        "print('score:', (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100)\n"
    )
    config = CONFIG.replace(
        "[agent]", "[judge]\nbaseline_runs = 1\n\n[runner]\ngpus = [0, 1]\n\n[agent]"
    )
    root = make_project(train=train, config=config)
    agent = ScriptedAgent(
        # The first proposal runs on the H100 slot while the baseline runs on the A100 one.
        [(replace("WIDTH = 8", "WIDTH = 12"), "better"), (replace("LR = 0.5", "LR = 0.9"), "worse")]
    )
    engine = Engine(load_config(root), tag="t", agent=agent, runner=TwoKindsOfGpu((0, 1)))
    await run(engine, 4)
    experiments = engine.ledger.experiments("t")
    assert experiments[0].hardware["gpu"] == "A100"  # the baseline ran on slot gpu0
    better = [e for e in experiments if e.description == "better"]
    again = [e for e in experiments if e.description.startswith("better (exp")]
    assert better[0].hardware["gpu"] == "H100"
    assert better[0].status is Status.DISCARDED and "other hardware" in better[0].reason
    assert again and again[0].hardware["gpu"] == "A100" and again[0].status is Status.KEPT
    kept = [e for e in experiments if e.status is Status.KEPT and e.source != "baseline"]
    assert all(e.hardware["gpu"] == "A100" for e in kept)
