"""The one work queue: every wait has a way out, promised work survives, hardware per loop.

Real repositories, real processes as experiments, deadlines on everything that could hang.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject
from loops import engine_for, run, statuses
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.events import (
    ExperimentFinished,
    ExperimentProposed,
    ExperimentStarted,
    LoopStateChanged,
)
from ratchet.experiment import Proposal, ProposalContext, Status
from ratchet.ledger import Ledger
from ratchet.ledger_schema import SCHEMA_VERSION
from ratchet.runners.base import Job, OnLine, RunControl, RunOutcome, Slot
from ratchet.runners.local import LocalRunner

DEADLINE_S = 90.0


def slots(gpus: list[int]) -> str:
    """The test loop's configuration on these GPU slots (their commands run on the CPU)."""
    runner = f"[judge]\nbaseline_runs = 1\n\n[runner]\ngpus = {gpus}\n\n[agent]"
    return CONFIG.replace("[agent]", runner)


class SlowAgent:
    """An LLM-like agent: slower than the experiments, a new harmless edit every time."""

    kind = "slow"

    def __init__(self, delay_s: float = 0.3) -> None:
        self.delay_s = delay_s
        self.calls = 0

    async def propose(self, context: ProposalContext) -> Proposal:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        n = context.proposal
        text = context.editable_text + f"\nSLOW_{n} = {n}\n"
        return Proposal({context.editable_path: text}, f"slow {n}")

    async def close(self) -> None:
        return None


async def within(awaitable: Any, seconds: float = DEADLINE_S) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


@pytest.mark.parametrize("gpus", [2, 4])
async def test_several_slots_with_a_slow_agent_return_for_every_n(
    make_project: MakeProject, gpus: int
) -> None:
    """The review found `--max-experiments N` on two slots waiting for ever once all N were
    recorded: an idle worker waited for an item nothing would put."""
    config = slots(list(range(gpus)))
    for n in range(1, 9):
        root = make_project(config=config, name=f"p{gpus}-{n}")
        engine = Engine(load_config(root), tag="t", agent=SlowAgent(0.3))
        await within(run(engine, n))
        assert len(statuses(engine)) == n, (gpus, n, statuses(engine))
        assert engine.state == "idle"


async def test_propose_once_returns_and_frees_the_loop(make_project: MakeProject) -> None:
    root = make_project(config=slots([0, 1]))
    engine = Engine(load_config(root), tag="t", agent=SlowAgent(0.3))
    try:
        await within(engine.run(more=1))  # the baseline, then one proposal
        assert len(engine.experiments()) == 2
        await within(engine.run(more=1))  # once more: the loop's lock and state are free
        assert len(engine.experiments()) == 3 and engine.state == "idle"
    finally:
        await engine.close()


class FailingAgent(SlowAgent):
    def __init__(self, failures: dict[int, BaseException]) -> None:
        super().__init__(0.0)
        self.failures = failures

    async def propose(self, context: ProposalContext) -> Proposal:
        problem = self.failures.pop(self.calls + 1, None)
        if problem is not None:
            self.calls += 1
            raise problem
        return await super().propose(context)


@pytest.mark.parametrize(
    "step",
    ["context: a busy ledger", "context: git", "context: program.md", "agent: raises"],
)
async def test_an_exception_while_proposing_is_a_recorded_invalid(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """Any error while proposing becomes an `invalid` experiment with the error in words; the
    loop goes on (before, the proposing task died and the loop hung, saying nothing)."""
    root = make_project()
    agent = FailingAgent({1: RuntimeError("agent exploded")} if step == "agent: raises" else {})
    engine = Engine(load_config(root), tag="t", agent=agent)
    failures = {"n": 0}
    if step.startswith("context"):
        from ratchet.proposer import Proposer

        real_context = Proposer.context

        def broken(self: Proposer, number: int) -> ProposalContext:
            if failures["n"] == 0:
                failures["n"] += 1
                if step == "context: a busy ledger":
                    raise sqlite3.OperationalError("database is locked")
                if step == "context: git":
                    self.engine.workspace.read("0" * 40, "train.py")  # a real git error
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
            return real_context(self, number)

        monkeypatch.setattr(Proposer, "context", broken)
    await within(run(engine, 3))
    experiments = engine.ledger.experiments("t")
    assert experiments[0].status is Status.KEPT
    invalid = [e for e in experiments if e.status is Status.INVALID]
    assert len(invalid) == 1, [(e.status, e.reason) for e in experiments]
    words = {
        "context: a busy ledger": "database is locked",
        "context: git": "preparing the agent's context failed",
        "context: program.md": "invalid start byte",
        "agent: raises": "agent exploded",
    }[step]
    assert words in invalid[0].reason
    assert len(experiments) == 3 and engine.state == "idle"  # and it went on


class TwoGpuModels(LocalRunner):
    """Slots that report their GPU model before they run (as ssh does from nvidia-smi)."""

    def __init__(self, gpus: tuple[int, ...], models: tuple[str, ...]) -> None:
        super().__init__(gpus)
        self.models = models

    def hardware_of(self, slot: Slot) -> dict[str, Any]:
        return {"gpu": self.models[slot.gpu or 0], "gpu_count": 1, "cpu": "x"}

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        outcome = await super().run(job, slot, on_line, control)
        outcome.hardware = {**outcome.hardware, **self.hardware_of(slot)}
        return outcome


async def test_the_reference_hardware_missing_remeasures_the_baseline_instead_of_waiting(
    make_project: MakeProject,
) -> None:
    """A loop measured on A100s, resumed where only H100s are: said once, the baseline is
    measured again on the H100, and keeps go on (before: every winner was discarded "queued to
    be measured on A100", and nothing ran it)."""
    root = make_project(config=slots([0, 1]))
    first = Engine(
        load_config(root),
        tag="t",
        agent=ScriptedAgent([]),
        runner=TwoGpuModels((0, 1), ("A100", "A100")),
    )
    await within(run(first, 1))
    said: list[str] = []
    agent = ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "better")])
    second = Engine(
        load_config(root), tag="t", agent=agent, runner=TwoGpuModels((0, 1), ("H100", "H100"))
    )
    second.bus.subscribe(
        lambda e: said.append(e.message) if isinstance(e, LoopStateChanged) and e.message else None
    )
    await within(run(second, 3))
    experiments = second.ledger.experiments("t")
    again = [e for e in experiments if e.source == "baseline" and e.id > 0]
    assert again and again[0].status is Status.KEPT and again[0].hardware["gpu"] == "H100"
    better = [e for e in experiments if e.description == "better"]
    assert better and better[0].status is Status.KEPT, [
        (e.description, e.reason) for e in experiments
    ]
    assert sum("no slot has" in m for m in said) == 1, said
    assert second.ledger.loop("t")["hardware"]["gpu"] == "H100"  # type: ignore[index]


async def measured_on_an_a100(make_project: MakeProject) -> Path:
    """A one-slot loop whose baseline was measured on an A100: the reference hardware."""
    root = make_project(config=slots([0]))
    first = Engine(
        load_config(root), tag="t", agent=ScriptedAgent([]), runner=TwoGpuModels((0,), ("A100",))
    )
    await within(run(first, 1))
    return root


async def test_a_submitted_edit_on_missing_hardware_runs_rather_than_hangs(
    make_project: MakeProject,
) -> None:
    root = await measured_on_an_a100(make_project)
    second = Engine(
        load_config(root), tag="t", agent=ScriptedAgent([]), runner=TwoGpuModels((0,), ("H100",))
    )
    try:
        text = (root / "train.py").read_text().replace("LR = 0.5", "LR = 0.3")
        await second.submit(text, "a person's edit")
        await within(second.run(submitted_only=True))
    finally:
        await second.close()
    mine = [e for e in second.ledger.experiments("t") if e.description == "a person's edit"]
    assert mine and mine[0].status.is_final and mine[0].metric is not None


class GoneWrong(TwoGpuModels):
    """Slots whose every run fails before it starts (a runner that cannot reach its machine)."""

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        raise OSError("the machine went away")


async def test_a_failed_baseline_measured_again_stops_the_loop_from_its_own_thread(
    make_project: MakeProject,
) -> None:
    """The reference hardware is gone and the baseline measured again on the hardware here
    fails: the loop stops in error and says why, from the loop's own thread (an adapter's
    handlers are not thread-safe; before, this was said from a worker thread)."""
    root = await measured_on_an_a100(make_project)
    second = Engine(
        load_config(root), tag="t", agent=ScriptedAgent([]), runner=GoneWrong((0,), ("H100",))
    )
    errors: list[tuple[str, int]] = []
    second.bus.subscribe(
        lambda e: (
            errors.append((e.message, threading.get_ident()))
            if isinstance(e, LoopStateChanged) and e.state == "error"
            else None
        )
    )
    await within(run(second, 3))
    assert second.state == "error"
    assert errors and "measuring the baseline again" in errors[0][0], errors
    assert {thread for _, thread in errors} == {threading.get_ident()}
    again = [e for e in second.ledger.experiments("t") if e.source == "baseline" and e.id > 0]
    assert again and again[0].status is Status.VOIDED


async def test_the_loop_awaits_review_while_a_proposal_waits_then_runs_on(
    make_project: MakeProject,
) -> None:
    """With the review gate, the loop's state is `awaiting_review` while a proposal waits for
    a person, and `running` again once it is answered (accepted or rejected)."""
    root = make_project(
        config=CONFIG.replace('budget = "10s"', 'budget = "10s"\nreview = "propose"')
    )
    edits = [(replace("WIDTH = 8", "WIDTH = 12"), "w12"), (replace("LR = 0.5", "LR = 0.4"), "lr")]
    engine = engine_for(root, ScriptedAgent(edits))
    states: list[str] = []
    waiting: asyncio.Queue[int] = asyncio.Queue()
    engine.bus.subscribe(
        lambda e: states.append(e.state) if isinstance(e, LoopStateChanged) else None
    )
    engine.bus.subscribe(
        lambda e: (
            waiting.put_nowait(e.id)
            if isinstance(e, ExperimentProposed) and e.awaiting_review
            else None
        )
    )
    loop = asyncio.create_task(run(engine, 3))
    for accept in (True, False):
        experiment = await within(waiting.get())
        assert engine.state == "awaiting_review"
        engine.decide(experiment, accept)
    await within(loop)
    changes = [s for n, s in enumerate(states) if n == 0 or states[n - 1] != s]
    assert changes == [
        "running",
        "awaiting_review",
        "running",
        "awaiting_review",
        "running",
        "idle",
    ]
    assert statuses(engine) == ["kept", "kept", "rejected"]


async def test_the_cost_cap_with_a_leftover_queue_returns(make_project: MakeProject) -> None:
    class Spender(SlowAgent):
        async def propose(self, context: ProposalContext) -> Proposal:
            proposal = await super().propose(context)
            proposal.cost_usd = 0.6
            return proposal

    config = slots([0, 1]).replace("seed = 0", "seed = 0\nmax_cost_usd = 1.0")
    root = make_project(config=config)
    said: list[str] = []
    engine = Engine(load_config(root), tag="t", agent=Spender(0.2))
    engine.bus.subscribe(
        lambda e: said.append(e.message) if isinstance(e, LoopStateChanged) and e.message else None
    )
    await within(run(engine, None))  # no quota: only the cap ends it
    assert any("max_cost_usd" in m for m in said), said
    assert engine.state == "idle"


KILLER = textwrap.dedent(
    """\
    import asyncio, os, signal, sys
    from pathlib import Path
    from ratchet.config import load_config
    from ratchet.engine import Engine
    from ratchet.experiment import Pending, Proposal
    from ratchet.scheduler import REMEASURE

    async def main():
        engine = Engine(load_config(Path(sys.argv[1])), tag="t")
        await engine.open()
        text = open(sys.argv[1] + "/train.py").read()
        best = text.replace("LR = 0.5", "LR = 0.3").replace("WIDTH = 8", "WIDTH = 12")
        await engine.submit(best, "a person's edit")
        proposal = Proposal({"train.py": text.replace("WIDTH = 8", "WIDTH = 12")}, "re-measure me",
                            source="rebase")
        pending = Pending(proposal, engine.history.tip, text)
        await engine.enqueue(pending, REMEASURE, counted=False)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_queued_work_survives_a_sigkill_and_a_restart(make_project: MakeProject) -> None:
    root = make_project()
    await within(run(engine_for(root, ScriptedAgent([])), 1))
    script = root.parent / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script), str(root)], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL
    again = engine_for(root, ScriptedAgent([]))
    await within(run(again, 2))  # one counted experiment more: the person's edit
    done_by = {e.description: e for e in again.ledger.experiments("t")}
    assert done_by["a person's edit"].status is Status.KEPT
    assert done_by["re-measure me"].status.is_final and done_by["re-measure me"].metric is not None
    assert again.ledger.queued("t") == []  # done, so no longer queued


async def test_a_cancelled_experiment_is_not_run_again(make_project: MakeProject) -> None:
    slow = (
        "import time\nLR = 0.5\n\n\nWIDTH = 8\nif LR != 0.5:\n    time.sleep(30)\n"
        "print('score:', (LR - 0.3) ** 2)\n"
    )
    root = make_project(train=slow)
    engine = engine_for(root, ScriptedAgent([(replace("LR = 0.5", "LR = 0.4"), "slow one")]))

    def cancel(event: Any) -> None:
        if isinstance(event, ExperimentStarted) and event.id == 1:
            asyncio.get_running_loop().call_later(0.5, engine.stop_experiment, 1)

    engine.bus.subscribe(cancel)
    await within(run(engine, 2))
    assert statuses(engine) == ["kept", "cancelled"]
    again = engine_for(root, ScriptedAgent([]))
    await within(run(again, 3))
    assert [e.rerun_of for e in again.ledger.experiments("t")] == [None, None, None]


def test_results_tsv_survives_concurrent_writers(tmp_path: Path) -> None:
    """Both the loop and `ratchet log --tsv` wrote one `results.tsv.tmp`; now each rewrite has
    a temporary file of its own (and `log --tsv` writes nothing)."""
    import threading

    ledger = Ledger(tmp_path)
    problems: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(20):
                ledger.write_results("t", "score")
        except BaseException as problem:
            problems.append(problem)

    threads = [threading.Thread(target=write) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert problems == []
    assert (tmp_path / "loops" / "t" / "results.tsv").read_text().startswith("commit\tscore")
    assert not list(tmp_path.glob("**/*.tmp"))


async def test_log_tsv_during_a_run_leaves_the_loop_alone(make_project: MakeProject) -> None:
    root = make_project(config=slots([0, 1]))
    engine = Engine(load_config(root), tag="t", agent=SlowAgent(0.05))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    async def readers() -> list[int]:
        codes = []
        while engine.state != "idle" or not codes:
            processes = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "ratchet.cli",
                    "-C",
                    str(root),
                    "log",
                    "--tsv",
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                for _ in range(4)
            ]
            codes += [await p.wait() for p in processes]
        return codes

    loop_task = asyncio.create_task(run(engine, 8))
    await asyncio.sleep(0.5)
    codes = await within(readers())
    await within(loop_task)
    assert len(statuses(engine)) == 8
    lines = (root / ".ratchet" / "results.tsv").read_text().splitlines()
    assert len(lines) == 1 + 8 and all(len(line.split("\t")) == 5 for line in lines)
    assert set(codes) <= {0, 2}  # 2: before the loop wrote its first row


def _downgrade_to_the_first_schema(ledger_path: Path) -> None:
    """The ledger as the first Ratchet wrote it: fewer columns, no runs' purpose of rules, no
    queue, no generation, no schema version."""
    db = sqlite3.connect(ledger_path)
    old = 'tag, id, status, description, agent, base_commit, "commit", metric, reason, diff'
    db.executescript(
        f"""
        CREATE TABLE first (tag TEXT NOT NULL, id INTEGER, status, description, agent,
            base_commit, "commit", metric, reason, diff, PRIMARY KEY (tag, id));
        INSERT INTO first SELECT {old} FROM experiments;
        DROP TABLE experiments;
        ALTER TABLE first RENAME TO experiments;
        CREATE TABLE loops1 AS SELECT tag, created_at, start_commit, metric_name, goal FROM loops;
        DROP TABLE loops;
        ALTER TABLE loops1 RENAME TO loops;
        DROP TABLE queue;
        DROP TABLE record_generation;
        DROP TRIGGER runs_insert;
        DROP TRIGGER runs_update;
        DROP TRIGGER runs_delete;
        PRAGMA user_version = 0;
        """
    )
    db.close()


@pytest.mark.parametrize("kind", ["mutate", "command", "anthropic"])
async def test_a_ledger_from_the_first_schema_opens_for_every_agent_kind(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    from fake_anthropic import FakeAnthropic, tool, turn

    root = make_project()
    await within(
        run(engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w")])), 2)
    )
    _downgrade_to_the_first_schema(root / ".ratchet" / "ledger.sqlite")
    agent_script = root.parent / "agent.py"
    agent_script.write_text(
        "import pathlib\np = pathlib.Path('train.py')\n"
        "p.write_text(p.read_text().replace('LR = 0.5', 'LR = 0.3'))\nprint('LR 0.5 -> 0.3')\n"
    )
    settings = {
        "mutate": 'kind = "mutate"',
        "command": f'kind = "command"\nrun = "{sys.executable} {agent_script}"',
        "anthropic": 'kind = "anthropic"\nbase_url = "{url}"\napi_key_env = "OLD_LEDGER_KEY"',
    }[kind]
    with FakeAnthropic() as api:
        api.script(
            turn(
                tool(
                    "replace_text",
                    {"path": "train.py", "old_text": "LR = 0.5", "new_text": "LR = 0.3"},
                )
            ),
            turn(tool("finish", {"description": "LR 0.5 -> 0.3"})),
        )
        monkeypatch.setenv("OLD_LEDGER_KEY", "sk-ant-test-old-ledger-0123456789")
        config = (
            (root / "ratchet.toml")
            .read_text()
            .replace('kind = "mutate"', settings.format(url=api.base_url))
        )
        (root / "ratchet.toml").write_text(config)
        engine = Engine(load_config(root), tag="t")
        await within(run(engine, 3))
    experiments = engine.ledger.experiments("t")
    assert len(experiments) == 3, [(e.id, e.source, e.status, e.reason) for e in experiments]
    assert experiments[0].secondary == {} and experiments[0].hardware == {}  # defaults, not None
    assert experiments[2].status.is_final and experiments[2].status is not Status.INVALID, (
        experiments[2].reason
    )
    assert Ledger(root / ".ratchet")._all("PRAGMA user_version")[0][0] == SCHEMA_VERSION


async def test_stop_cancels_a_proposal_in_flight_and_returns_within_seconds(
    make_project: MakeProject,
) -> None:
    root = make_project()
    agent = ScriptedAgent([], delay_s=600)  # an agent that would answer in ten minutes
    engine = engine_for(root, agent)
    loop = asyncio.create_task(engine.run(max_experiments=5))
    deadline = time.monotonic() + 60
    while not (agent.contexts and engine.history.finished) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the baseline measured; the agent is asked
    assert agent.contexts and engine.history.finished, "the agent was never asked"
    asked = time.monotonic()
    engine.stop()
    await asyncio.wait_for(loop, timeout=20)
    assert time.monotonic() - asked < 10
    await engine.close()
    assert [str(e.status) for e in engine.ledger.experiments("t")] == ["kept"]


async def _interrupt_when_started(engine: Engine, runs: int) -> None:
    """Runs the loop and stops it half a second after an experiment starts."""

    def stop(event: Any) -> None:
        if isinstance(event, ExperimentStarted) and event.id > 0:
            asyncio.get_running_loop().call_later(0.5, engine.stop)

    engine.bus.subscribe(stop)
    await within(run(engine, runs))


async def test_interrupted_work_is_run_again_until_measured_or_said_dropped(
    make_project: MakeProject,
) -> None:
    slow = (
        "import time\nLR = 0.5\n\n\nWIDTH = 8\nif LR != 0.5:\n    time.sleep(3)\n"
        "print('score:', (LR - 0.3) ** 2)\n"
    )
    root = make_project(train=slow)
    await within(run(engine_for(root, ScriptedAgent([])), 1))
    person = engine_for(root, ScriptedAgent([]))
    await person.open()
    await person.submit(slow.replace("LR = 0.5", "LR = 0.4"), "a person's slow edit")
    await person.close()
    for _ in range(3):  # interrupted three times in a row, each time on a new start
        await _interrupt_when_started(engine_for(root, ScriptedAgent([], delay_s=600)), 5)
    again = engine_for(root, ScriptedAgent([], delay_s=600))
    finished: list[int] = []
    again.bus.subscribe(
        lambda e: (
            isinstance(e, ExperimentFinished)
            and e.experiment.status is Status.KEPT
            and (finished.append(e.experiment.id), again.stop())
        )
    )
    await within(run(again, 5))
    rows = again.ledger.experiments("t")
    edits = [e for e in rows if e.description == "a person's slow edit"]
    assert [str(e.status) for e in edits] == ["interrupted"] * 3 + ["kept"], rows
    assert edits[-1].metric == pytest.approx(0.01)

    # The agent's proposal is dropped after three interrupted starts, and the loop says so.
    agent_slow = engine_for(
        root, ScriptedAgent([(replace("LR = 0.4", "LR = 0.35"), "the agent's slow edit")])
    )
    await _interrupt_when_started(agent_slow, 99)
    for _ in range(2):
        await _interrupt_when_started(engine_for(root, ScriptedAgent([], delay_s=600)), 99)
    said: list[str] = []
    last = engine_for(root, ScriptedAgent([], delay_s=600))
    last.bus.subscribe(lambda e: isinstance(e, LoopStateChanged) and said.append(e.message))
    last.bus.subscribe(lambda e: isinstance(e, ExperimentStarted) and last.stop())
    asyncio.get_running_loop().call_later(3.0, last.stop)  # nothing is left to start
    await within(run(last, 99))
    tried = [e for e in last.ledger.experiments("t") if e.description == "the agent's slow edit"]
    assert len(tried) == 3 and all(str(e.status) == "interrupted" for e in tried)
    assert any(f"exp {tried[-1].id}" in m and "interrupted 3 times" in m for m in said if m)
