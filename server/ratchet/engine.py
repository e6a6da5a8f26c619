"""The loop: propose → guard → commit → run → measure → judge → record, on every slot.

The engine prints nothing and knows nothing of LSP or terminals: it emits typed events
(events.py) and takes commands (the public methods of Engine). Agents, runners, git and the
ledger meet only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import difflib
import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import guard
from .agents import make_agent, resolve_kind
from .agents.base import Agent
from .config import Config
from .context import LOG_TAIL_FOR_AGENT, history, read_program
from .errors import RatchetError
from .events import (
    AgentActivity,
    EventBus,
    ExperimentFinished,
    ExperimentProposed,
    ExperimentStarted,
    LoopStateChanged,
    OutputLine,
)
from .experiment import (
    Experiment,
    Pending,
    Proposal,
    ProposalContext,
    RepairRequest,
    Status,
)
from .guard import locked_hashes_at  # [sandbox wiring, issue 11]
from .hardware import same_hardware
from .judge import Decision, Judge, estimate_noise, mean
from .ledger import Ledger
from .lockfile import LoopLock
from .measure import Measurer, failure
from .novelty import digest
from .progress import load_curve, save_curve
from .runners import make_runner
from .runners.base import RunControl, Runner, Slot
from .runners.processes import kill_orphans
from .traces import secrets_for, write_trace
from .verdicts import Verdicts
from .workspace import Trailers, Workspace, commit_message, ensure_ratchet_dir

LOOP_VARIABLE = "RATCHET_LOOP"  # in every experiment's environment: which loop started it


@dataclass
class Running:
    """An experiment in flight: what status views show and what stop reaches."""

    id: int
    description: str
    slot: str
    budget_s: float
    started: float
    control: RunControl
    last_line: str = ""


@dataclass
class Review:
    """A proposal waiting for a person's accept or reject (review = "propose")."""

    id: int
    pending: Pending
    decision: asyncio.Future[bool] = field(repr=False)


def best_of(experiments: list[Experiment]) -> Experiment | None:
    """The last kept experiment: the current best."""
    kept = [e for e in experiments if e.status is Status.KEPT]
    return kept[-1] if kept else None


def baseline_of(experiments: list[Experiment]) -> Experiment | None:
    return next(
        (e for e in experiments if e.status is Status.KEPT and e.source == "baseline"), None
    )


def default_tag(today: datetime.date | None = None) -> str:
    day = today or datetime.date.today()
    return day.strftime("%b%d").lower()


class Engine:
    def __init__(
        self,
        config: Config,
        *,
        tag: str | None = None,
        agent: Agent | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.config = config
        self.bus = EventBus()
        self.folder = ensure_ratchet_dir(config.root)
        self.ledger = Ledger(self.folder)
        self.tag = tag or self._pick_tag()
        self.workspace = Workspace(config.root, self.tag)
        self.judge = self._make_judge(config)
        self.verdicts = Verdicts(config, self.judge, self.ledger, self.workspace, self.tag)
        self.agent = agent or make_agent(config)
        self.agent_kind = agent.kind if agent else resolve_kind(config)
        self.runner = runner or make_runner(config)
        self.measurer = Measurer(config, self.runner, self.workspace)
        self._secrets = secrets_for(config)
        self.loop_id = hashlib.sha256(f"{config.root.resolve()}:{self.tag}".encode()).hexdigest()[
            :16
        ]
        self.lock = LoopLock(self.folder)
        self.logs = self.folder / "logs"
        self.state = "idle"
        self.slots: list[Slot] = []
        self.running: dict[tuple[int, int], Running] = {}  # (experiment, run) in flight
        self.reviews: dict[int, Review] = {}
        self._opened = False
        self._stopping = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._priority: list[Pending] = []  # a person's edits and re-measures: first in line
        self._prepared: list[Pending] = []  # the agent's proposals waiting for a slot
        self._claimed: list[Pending] = []  # taken by a slot, not yet recorded as finished
        self._started_this_run = 0
        self._budget: int | None = None
        self._wakeup = asyncio.Event()
        self._submitted_only = False
        self._proposer_done = False
        self._next_id = 0
        self._remeasuring = False
        self._last_remeasure = 0
        self._baseline_ready = asyncio.Event()
        self._finishing = asyncio.Lock()
        self._baseline_id: int | None = None
        self._proposal_count = 0  # proposals asked of the agent by this engine
        self._slot_hardware: dict[str, dict[str, Any]] = {}  # what each slot last ran on

    # --- opening and recovering --------------------------------------------------------------

    def _pick_tag(self) -> str:
        tags = self.ledger.tags()
        return tags[-1] if tags else default_tag()

    async def open(self) -> None:
        """Takes the project's lock, readies the branch and recovers from any crash."""
        if self._opened:
            return
        self.lock.acquire()
        try:
            await asyncio.to_thread(self._open_branch)
            # [sandbox wiring, issue 11] every run's locked files are checked against the
            # loop's start commit, not against whatever the run folder held before it ran.
            start = (self.ledger.loop(self.tag) or {})["start_commit"]
            self.measurer.expected_locked = await asyncio.to_thread(
                locked_hashes_at, self.workspace, start, self.config.loop.locked
            )
            self.slots = await self.runner.open()
        except BaseException:
            self.lock.release()
            raise
        self._opened = True

    def _open_branch(self) -> None:
        loop = self.ledger.loop(self.tag)
        tracked = [self.config.loop.editable, *self.config.loop.locked]
        if loop is None:
            if self.workspace.branch_exists():
                raise RatchetError(
                    f"the branch {self.workspace.branch} exists but this project's ledger does "
                    "not know it; choose another tag (`ratchet run --tag NAME`) or delete that "
                    f"branch (`git branch -D {self.workspace.branch}`)"
                )
            self.workspace.check_ready(tracked)
            start = self.workspace.create_branch()
            self.ledger.add_loop(self.tag, start, self.config.metric.name, self.config.metric.goal)
        else:
            self.workspace.check_ready([])  # a repository with commits, not on our branch
        # We hold the lock: whatever a killed loop's experiments left running is orphaned.
        kill_orphans(LOOP_VARIABLE, self.loop_id)
        self._recover()
        self.workspace.remove_worktrees()

    def _recover(self) -> None:
        """After a kill: unfinished experiments become `interrupted`, and the branch and the
        refs are put where the ledger says. The ledger is the truth: it is written first."""
        loop = self.ledger.loop(self.tag)
        assert loop is not None
        expected = loop["start_commit"]
        for exp in self.ledger.experiments(self.tag):
            if not exp.status.is_final:
                exp.status = Status.INTERRUPTED
                exp.reason = "interrupted: the loop stopped while it ran"
                exp.finished_at = exp.finished_at or time.time()
                self.ledger.save(exp)
            if exp.commit:
                self.workspace.set_experiment_ref(exp.id, exp.commit)
            if exp.status is Status.KEPT and exp.commit:
                expected = exp.commit
        if self.workspace.branch_tip() != expected:
            self.workspace.set_branch(expected)
        self.ledger.write_results(self.tag, self.config.metric.name)
        self._queue_reruns()

    def _queue_reruns(self) -> None:
        """An experiment interrupted mid-run (a kill, Ctrl-C, a stop) is measured again first
        thing, once: nothing a person or the agent proposed is lost to a stop."""
        experiments = self.ledger.experiments(self.tag)
        rerun = {e.rerun_of for e in experiments if e.rerun_of is not None}
        editable = self.config.loop.editable
        for exp in experiments:
            if (
                exp.status is not Status.INTERRUPTED
                or exp.commit is None
                or exp.id in rerun
                or exp.rerun_of is not None
                or exp.source == "baseline"
            ):
                continue
            text = self.workspace.read(exp.commit, editable)
            base_text = self.workspace.read(exp.base_commit, editable)
            proposal = Proposal(
                edits={editable: text},
                source=exp.source,
                rerun_of=exp.id,
                description=exp.description,
            )
            self._priority.append(Pending(proposal, exp.base_commit, base_text))

    async def close(self) -> None:
        """Frees the project for another loop; the ledger stays readable."""
        await self.agent.close()
        await self.runner.close()
        self.lock.release()
        self._opened = False

    # --- what the loop knows -----------------------------------------------------------------

    def experiments(self) -> list[Experiment]:
        """Every experiment of this loop, in order. Heavy fields (diff, log_tail, trace_tail)
        may be empty here: read one experiment whole with `experiment(id)`."""
        return self.ledger.experiments(self.tag)

    def experiment(self, experiment: int) -> Experiment | None:
        """One experiment with every field, heavy ones included."""
        return self.ledger.get(self.tag, experiment)

    def experiments_since(self, after: int, limit: int | None = None) -> list[Experiment]:
        """The finished experiments numbered above `after` (light, as `experiments()`)."""
        found = [e for e in self.experiments() if e.id > after and e.status.is_final]
        return found[:limit] if limit is not None else found

    def best(self) -> Experiment | None:
        return best_of(self.experiments())

    def baseline(self) -> Experiment | None:
        return baseline_of(self.experiments())

    def tip(self) -> str:
        tip = self.workspace.branch_tip()
        if tip is None:
            raise RatchetError(
                f"the loop's branch {self.workspace.branch} is gone; run again to recover"
            )
        return tip

    def status(self) -> dict[str, Any]:
        """A snapshot for status views (the status bar, `ratchet.status`)."""
        experiments = self.experiments()
        best, baseline = best_of(experiments), baseline_of(experiments)
        gain = None
        if best and baseline and best.metric is not None and baseline.metric is not None:
            gain = self.judge.gain_percent(best.metric, baseline.metric)
        now = time.monotonic()
        return {
            "state": self.state,
            "tag": self.tag,
            "metric": self.config.metric.name,
            "goal": self.config.metric.goal,
            "running": [
                {
                    "id": r.id,
                    "description": r.description,
                    "slot": r.slot,
                    "elapsed": round(now - r.started, 1),
                    "budget": r.budget_s,
                    "lastLine": r.last_line,
                }
                for r in self.running.values()
            ],
            "awaitingReview": sorted(self.reviews),
            "best": best.metric if best else None,
            "bestId": best.id if best else None,
            "baseline": baseline.metric if baseline else None,
            "gainPercent": gain,
            "kept": sum(
                1 for e in experiments if e.status is Status.KEPT and e.source != "baseline"
            ),
            "total": sum(1 for e in experiments if e.status.is_final),
            "crashed": sum(1 for e in experiments if e.status in (Status.CRASHED, Status.TIMEOUT)),
            "costUsd": round(sum(e.cost_usd for e in experiments), 4),
        }

    def _set_state(self, state: str, message: str = "") -> None:
        if state != self.state or message:
            self.state = state
            self.bus.emit(LoopStateChanged(state, message))

    # --- commands ----------------------------------------------------------------------------

    async def run(
        self, max_experiments: int | None = None, *, submitted_only: bool = False
    ) -> None:
        """Runs (or resumes) the loop until stopped or `max_experiments` have started
        (the baseline counts as one). With `submitted_only`, runs just what was submitted
        (a person's edit, a revert) and returns: the agent proposes nothing."""
        await self.open()
        if self.state in ("running", "paused", "awaiting_review"):
            raise RatchetError("the loop is already running")
        self._stopping = False
        self._started_this_run = 0
        self._budget = max_experiments
        self._submitted_only = submitted_only
        self._proposer_done = False
        self._last_remeasure = sum(
            1 for e in self.experiments() if e.status is Status.KEPT and e.source != "baseline"
        )
        self._set_state("running" if self._unpaused.is_set() else "paused")
        try:
            await self._run_slots()
        finally:
            self.running.clear()
            for review in self.reviews.values():
                if not review.decision.done():
                    review.decision.cancel()
            if self.state != "error":
                self._set_state("idle")

    def stop(self) -> None:
        """Stops the loop: running experiments are killed and recorded `interrupted`."""
        self._stopping = True
        for running in self.running.values():
            running.control.stop("stopped by the user")
        for review in self.reviews.values():
            if not review.decision.done():
                review.decision.set_result(False)  # recorded "the loop stopped before review"
        self._unpaused.set()
        self._wakeup.set()
        if self.state not in ("idle", "error"):
            self._set_state("stopping")

    def stop_experiment(self, experiment: int, reason: str = "cancelled by the user") -> bool:
        runs = [r for (exp_id, _), r in self.running.items() if exp_id == experiment]
        for running in runs:
            running.control.stop(reason)
        return bool(runs)

    def pause(self) -> None:
        """Running experiments finish; no new one starts until resume."""
        self._unpaused.clear()
        if self.state in ("running", "awaiting_review"):
            self._set_state("paused")

    def resume(self) -> None:
        self._unpaused.set()
        if self.state == "paused":
            self._set_state("running")

    def decide(self, experiment: int, accept: bool) -> None:
        """Accept or reject a proposal waiting for review."""
        review = self.reviews.get(experiment)
        if review is None or review.decision.done():
            raise RatchetError(f"experiment {experiment} is not waiting for review")
        review.decision.set_result(accept)

    async def submit(self, text: str, description: str, source: str = "human") -> None:
        """An edit made by a person (the editor's buffer), judged like any proposal; it runs
        before the agent's next one."""
        editable = self.config.loop.editable
        tip = await asyncio.to_thread(self.tip)
        base_text = await asyncio.to_thread(self.workspace.read, tip, editable)
        proposal = Proposal(edits={editable: text}, description=description, source=source)
        self._priority.append(Pending(proposal, tip, base_text))
        self._wakeup.set()

    async def revert(self, experiment: int) -> None:
        """Undoes a kept experiment with a new commit on the loop's branch: its change is taken
        back out of the current best (a reverse three-way merge), measured, and kept."""
        pending = await asyncio.to_thread(self._revert_pending, experiment)
        self._priority.append(pending)
        self._wakeup.set()

    def _revert_pending(self, experiment: int) -> Pending:
        exp = self.ledger.get(self.tag, experiment)
        if exp is None:
            raise RatchetError(f"there is no experiment {experiment} in loop {self.tag}")
        if exp.status is not Status.KEPT or exp.source == "baseline" or exp.commit is None:
            raise RatchetError(
                f"experiment {experiment} is {exp.status}, not a kept change; "
                "only kept experiments can be reverted"
            )
        editable = self.config.loop.editable
        tip = self.tip()
        current = self.workspace.read(tip, editable)
        merged = self.workspace.merge_file(
            self.workspace.read(exp.commit, editable),
            current,
            self.workspace.read(self.workspace.parent(exp.commit), editable),
        )
        if merged is None:
            raise RatchetError(
                f"experiment {experiment} cannot be reverted cleanly: later kept "
                "changes touch the same lines; revert those first"
            )
        if merged == current:
            raise RatchetError(f"experiment {experiment}'s change is no longer in the best")
        proposal = Proposal(
            edits={editable: merged},
            description=f"revert exp {experiment}: {exp.description}",
            source="revert",
        )
        return Pending(proposal, tip, current)

    def reconfigure(self, config: Config) -> None:
        """ratchet.toml changed while the loop runs: the command, budget, timeout, review and
        metric settings apply from the next experiment (the editable file and the metric's
        name and goal only when a loop starts)."""
        self.config = config
        self.measurer.config = config
        self.judge = self._make_judge(config)
        self.verdicts = Verdicts(config, self.judge, self.ledger, self.workspace, self.tag)

    @staticmethod
    def _make_judge(config: Config) -> Judge:
        return Judge(
            config.metric.lower_is_better,
            config.metric.min_delta,
            config.judge.z,
            config.judge.max_runs,
            config.judge.screen,
            config.judge.review_above,
        )

    def text_of(self, experiment: int | str) -> str:
        """The editable file as experiment N left it, or as the best has it (`best`)."""
        editable = self.config.loop.editable
        if experiment == "best":
            return self.workspace.read(self.tip(), editable)
        exp = self.ledger.get(self.tag, int(experiment))
        if exp is None or exp.commit is None:
            raise RatchetError(
                f"experiment {experiment} has no code to show (unknown, or refused "
                "before it was committed)"
            )
        return self.workspace.read(exp.commit, editable)

    def add_note(self, text: str) -> None:
        self.ledger.add_note(self.tag, text)

    # --- the baseline ------------------------------------------------------------------------

    async def _run_baseline(self, slots: list[Slot]) -> bool:
        """Exp 0, the unmodified file, measured `baseline_runs` times (in parallel on the
        slots it was given). Agent experiments may run meanwhile; their verdicts wait for it."""
        tip = await asyncio.to_thread(self.tip)
        text = await asyncio.to_thread(self.workspace.read, tip, self.config.loop.editable)
        pending = Pending(
            Proposal(edits={}, description="baseline", source="baseline"),
            tip,
            text,
            reserved_id=self._baseline_id,
        )
        self._started_this_run += 1
        try:
            exp = await self._experiment(pending, slots[0], slots[1:])
        finally:
            self._baseline_ready.set()
        if exp is None or exp.status is not Status.KEPT:
            if exp is not None and exp.status is not Status.INTERRUPTED:
                self._set_state(
                    "error",
                    f"the baseline (exp {exp.id}) did not give a metric: {exp.reason}. "
                    "Fix the command or the file, commit, and run again.",
                )
            self.stop()  # nothing can be judged without it
            return False
        return True

    # --- slots and the pipeline --------------------------------------------------------------

    async def _run_slots(self) -> None:
        """One worker per slot takes proposals as they come. The agent starts proposing at
        once, even while the baseline runs: slots the baseline does not need start on them."""
        queue: asyncio.Queue[Pending] = asyncio.Queue()
        tickets = asyncio.Semaphore(len(self.slots))
        needs_baseline = self.baseline() is None
        self._baseline_ready = asyncio.Event()
        if not needs_baseline:
            self._baseline_ready.set()
        proposer = asyncio.create_task(
            asyncio.sleep(0) if self._submitted_only else self._propose_forever(queue, tickets)
        )
        wanted = min(self.config.judge.baseline_runs, len(self.slots)) if needs_baseline else 0
        if needs_baseline:
            self._baseline_id = self._allocate_id()  # exp 0 before other slots take numbers
        workers = [
            asyncio.create_task(self._work(slot, queue, tickets)) for slot in self.slots[wanted:]
        ]
        try:
            if needs_baseline and await self._run_baseline(self.slots[:wanted]):
                workers += [
                    asyncio.create_task(self._work(slot, queue, tickets))
                    for slot in self.slots[:wanted]
                ]
            await asyncio.gather(*workers)
        finally:
            self._prepared.clear()
            proposer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await proposer
            for worker in workers:
                worker.cancel()

    def _quota_left(self) -> bool:
        return self._budget is None or self._started_this_run < self._budget

    def _over_cost(self) -> str | None:
        """Why the agent may spend no more (`[agent] max_cost_usd`), or None."""
        cap = self.config.agent.max_cost_usd
        if cap is None:
            return None
        spent = sum(e.cost_usd for e in self.experiments()) + sum(
            p.proposal.cost_usd for p in self._prepared + self._claimed
        )
        if spent < cap:
            return None
        return (
            f"the agent has spent ${spent:.2f} of max_cost_usd ${cap:.2f}: no more proposals; "
            "raise [agent] max_cost_usd to go on"
        )

    async def _propose_forever(
        self, queue: asyncio.Queue[Pending], tickets: asyncio.Semaphore
    ) -> None:
        """Prepares the next proposals while the current experiments run (the GPU never waits).
        A ticket per slot bounds how far ahead it goes: one prepared proposal per slot. As many
        proposals are made at once as there are tickets, so idle slots all get one soon."""
        proposing: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                await tickets.acquire()
                await self._unpaused.wait()
                if self._stopping:
                    return
                planned = self._started_this_run + queue.qsize() + len(proposing)
                if self._budget is not None and planned >= self._budget:
                    tickets.release()  # enough are planned; look again in case one is dropped
                    await asyncio.sleep(0.05)
                    continue
                if (spent := self._over_cost()) is not None:
                    await asyncio.gather(*proposing)  # their cost counts before the verdict
                    if (spent := self._over_cost()) is not None:
                        self._proposer_done = True
                        self._wakeup.set()
                        self.bus.emit(LoopStateChanged(self.state, spent))
                        return
                self._proposal_count += 1
                task = asyncio.create_task(self._propose_into(queue, self._proposal_count))
                proposing.add(task)
                task.add_done_callback(proposing.discard)
        finally:
            for task in proposing:
                task.cancel()

    async def _propose_into(self, queue: asyncio.Queue[Pending], number: int) -> None:
        pending = await self._propose(number)
        self._prepared.append(pending)
        queue.put_nowait(pending)

    async def _propose(self, number: int) -> Pending:
        tip = await asyncio.to_thread(self.tip)
        context = await asyncio.to_thread(self._context, tip, number)
        started = time.monotonic()
        self.bus.emit(AgentActivity(context.experiment, f"{self.agent_kind}: proposing"))
        proposal = await self.agent.propose(context)
        proposal.agent_seconds = proposal.agent_seconds or (time.monotonic() - started)
        outcome = proposal.failure or proposal.description
        self.bus.emit(
            AgentActivity(
                context.experiment,
                f"{self.agent_kind}: {outcome} "
                f"({proposal.agent_seconds:.1f}s, ${proposal.cost_usd:.4f})",
            )
        )
        return Pending(proposal, tip, context.editable_text)

    def _context(self, tip: str, number: int = 0) -> ProposalContext:
        """What the agent sees; `number` tells apart proposals made at the same moment."""
        editable = self.config.loop.editable
        text = self.workspace.read(tip, editable)
        experiments = self.experiments()
        best = best_of(experiments)
        queued = self._prepared + self._claimed
        in_flight = [p.proposal.description for p in queued]
        tried = {e.digest for e in experiments if e.digest}
        tried |= {digest(p.proposal.edits.get(editable, "")) for p in queued}
        return ProposalContext(
            experiment=max(self._next_id, self.ledger.next_id(self.tag)) + len(self._prepared),
            proposal=number,
            editable_path=editable,
            editable_text=text,
            program=read_program(self.config.root / self.config.loop.program),
            metric_name=self.config.metric.name,
            goal=self.config.metric.goal,
            best_metric=best.metric if best else None,
            history=history(experiments, best),
            notes=tuple(self.ledger.notes(self.tag)),
            running=tuple(in_flight),
            tried_digests=frozenset(tried),
        )

    async def _work(
        self, slot: Slot, queue: asyncio.Queue[Pending], tickets: asyncio.Semaphore
    ) -> None:
        # Re-measures of earlier experiments finish them; they do not count against the quota.
        while not self._stopping and (self._quota_left() or self._priority_remeasures(slot)):
            await self._unpaused.wait()
            if self._stopping or (self._submitted_only and not self._priority):
                return
            if self._proposer_done and queue.empty() and not self._priority:
                return
            if self._remeasure_due():
                await self._remeasure_best(slot)
                continue
            pending = await self._next(queue, slot)
            if pending is None:
                continue
            prepared = pending in self._prepared
            if prepared:
                self._prepared.remove(pending)
                if self.config.loop.pipeline:
                    tickets.release()  # the next proposal is prepared while this one runs
            counted = pending.proposal.source != "rebase"
            self._started_this_run += counted
            self._claimed.append(pending)
            try:
                if await self._experiment(pending, slot) is None:
                    self._started_this_run -= counted  # dropped before it ran: not counted
            finally:
                self._claimed.remove(pending)
                if prepared and not self.config.loop.pipeline:
                    tickets.release()  # without pipelining, the agent waits for the result

    def _remeasure_due(self) -> bool:
        """Every `remeasure_every` keeps, the best is measured once more to catch drift."""
        every = self.config.judge.remeasure_every
        if not every or self._remeasuring:
            return False
        keeps = sum(
            1 for e in self.experiments() if e.status is Status.KEPT and e.source != "baseline"
        )
        return keeps >= self._last_remeasure + every

    async def _remeasure_best(self, slot: Slot) -> None:
        best = self.best()
        if best is None or best.commit is None or best.metric is None:
            return
        self._remeasuring = True
        try:
            keeps = sum(
                1 for e in self.experiments() if e.status is Status.KEPT and e.source != "baseline"
            )
            self._last_remeasure = keeps
            runs = self.ledger.run_groups(self.tag).get(best.id, [best.metric])
            text = await asyncio.to_thread(
                self.workspace.read, best.commit, self.config.loop.editable
            )
            probe = replace(best, log_path=str(self.logs / f"{best.id}.log"))
            value, _, problem = await self._measure_once(probe, slot, text, len(runs))
            if value is None:
                self.bus.emit(
                    LoopStateChanged(
                        self.state, f"re-measuring the best (exp {best.id}) failed: {problem}"
                    )
                )
                return
            noise = self.noise()
            before = mean(runs)
            best.metric = mean([*runs, value])
            await asyncio.to_thread(self.ledger.save, best)
            if noise and abs(value - before) > 3 * noise:
                self.bus.emit(
                    LoopStateChanged(
                        self.state,
                        f"drift: the best (exp {best.id}) measured {value:.6g} now against "
                        f"{before:.6g} before ({abs(value - before) / noise:.1f} x noise); "
                        "the machine or the data may have changed",
                    )
                )
        finally:
            self._remeasuring = False

    def _fits(self, pending: Pending, slot: Slot) -> bool:
        """A re-measure on the reference hardware goes only to a slot that has it."""
        if pending.hardware is None:
            return True
        seen = self._slot_hardware.get(slot.name)
        return seen is not None and same_hardware(seen, pending.hardware)

    def _priority_remeasures(self, slot: Slot) -> bool:
        return any(p.proposal.source == "rebase" and self._fits(p, slot) for p in self._priority)

    async def _next(self, queue: asyncio.Queue[Pending], slot: Slot) -> Pending | None:
        """The person's edits first, then the agent's; None to look again (stop, wake-up)."""
        eligible = [i for i, p in enumerate(self._priority) if self._fits(p, slot)]
        if not self._quota_left():
            eligible = [i for i in eligible if self._priority[i].proposal.source == "rebase"]
        if eligible:
            return self._priority.pop(eligible[0])
        self._wakeup.clear()
        getter = asyncio.create_task(queue.get())
        waker = asyncio.create_task(self._wakeup.wait())
        done, _ = await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
        waker.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        return None

    # --- one experiment ----------------------------------------------------------------------

    async def _rebase(self, pending: Pending) -> Pending | None:
        """A proposal made from an older best is merged onto the current one (three-way merge of
        the editable file); None if it no longer applies or changes nothing."""
        tip = await asyncio.to_thread(self.tip)
        if pending.base_commit == tip or pending.proposal.source == "baseline":
            return pending
        editable = self.config.loop.editable
        current = await asyncio.to_thread(self.workspace.read, tip, editable)
        proposed = pending.proposal.edits.get(editable)
        if proposed is None or set(pending.proposal.edits) != {editable}:
            return replace(pending, base_commit=tip, base_text=current)  # the guard refuses it
        merged = await asyncio.to_thread(
            self.workspace.merge_file, pending.base_text, current, proposed
        )
        if merged is None or merged == current:
            return None
        proposal = replace(pending.proposal, edits={editable: merged})
        return Pending(proposal, tip, current)

    async def _experiment(
        self, pending: Pending, slot: Slot, extra_slots: list[Slot] | None = None
    ) -> Experiment | None:
        """Guard, commit, run, measure, judge and record one proposal. Returns the record."""
        rebased = await self._rebase(pending)
        if rebased is None:
            return None  # its change is already in, or no longer applies: the agent re-proposes
        pending = rebased
        started = time.monotonic()
        proposal = pending.proposal
        editable = self.config.loop.editable
        new_text = proposal.edits.get(editable, pending.base_text)
        exp_id = pending.reserved_id if pending.reserved_id is not None else self._allocate_id()
        await asyncio.to_thread(self._trace, exp_id, proposal.trace)
        exp = Experiment(
            id=exp_id,
            tag=self.tag,
            status=Status.PROPOSED,
            description=proposal.description,
            agent=self.agent_kind if proposal.source == "agent" else proposal.source,
            base_commit=pending.base_commit,
            agent_s=proposal.agent_seconds,
            cost_usd=proposal.cost_usd,
            input_tokens=proposal.input_tokens,
            output_tokens=proposal.output_tokens,
            started_at=time.time(),
            source=proposal.source,
            rerun_of=proposal.rerun_of,
            log_path=str(self.logs / f"{exp_id}.log"),
        )
        if proposal.source != "baseline":
            problem = guard.check_proposal(proposal, editable, pending.base_text)
            # A revert or a re-measure may well give back a text already measured.
            if problem is None and proposal.source not in ("revert", "rebase"):
                problem = self._repeats(new_text)
            if problem is not None:
                exp.status, exp.reason = Status.INVALID, f"invalid: {problem}"
                exp.diff = (
                    _diff(editable, pending.base_text, new_text) if "\0" not in new_text else ""
                )
                return await self._finish(exp, started, run_s=0.0)
        exp.diff = _diff(editable, pending.base_text, new_text)
        exp.digest = digest(new_text)
        message = commit_message(exp_id, proposal.description, Trailers(exp_id, "running"))
        exp.commit = await asyncio.to_thread(
            self.workspace.commit_edits,
            pending.base_commit,
            {editable: new_text} if proposal.edits else {},
            message,
        )
        await asyncio.to_thread(self.workspace.set_experiment_ref, exp_id, exp.commit)
        review = self.config.loop.review == "propose" and proposal.source == "agent"
        exp.status = Status.AWAITING_REVIEW if review else Status.RUNNING
        await asyncio.to_thread(self.ledger.save, exp)
        self.bus.emit(
            ExperimentProposed(
                exp_id, proposal.description, exp.diff, pending.base_text, new_text, review
            )
        )
        if review and not await self._await_review(exp_id, pending):
            exp.status = Status.REJECTED
            exp.reason = (
                "rejected in review" if not self._stopping else "the loop stopped before review"
            )
            return await self._finish(exp, started, run_s=0.0)
        if self._stopping:
            exp.status, exp.reason = Status.INTERRUPTED, "interrupted: the loop stopped"
            return await self._finish(exp, started, run_s=0.0)

        exp.status = Status.RUNNING
        await asyncio.to_thread(self.ledger.save, exp)
        run_s = await self._measure_and_judge(exp, slot, new_text, extra_slots or [])
        for attempt in range(1, self.config.agent.repair_attempts + 1):
            if not self._repairable(exp, run_s):
                break
            repaired = await self._repair(exp, pending, new_text, attempt)
            if repaired is None:
                break
            new_text = repaired
            run_s += await self._measure_and_judge(exp, slot, new_text)
        return await self._finish(exp, started, run_s=run_s)

    def _repairable(self, exp: Experiment, run_s: float) -> bool:
        """A fast crash (a syntax error, a NameError, a shape mismatch) goes back to the agent."""
        return (
            exp.status is Status.CRASHED
            and exp.source == "agent"
            and not self._stopping
            and run_s <= self.config.agent.repair_window_s
        )

    async def _repair(
        self, exp: Experiment, pending: Pending, broken: str, attempt: int
    ) -> str | None:
        """Asks the agent to fix its crashed edit; the fix is the same experiment's new code.
        Returns the new text, or None (the crash stands, with the reason why)."""
        editable = self.config.loop.editable
        tip = await asyncio.to_thread(self.tip)
        context = replace(
            await asyncio.to_thread(self._context, tip),
            editable_text=pending.base_text,
            repair_of=RepairRequest(broken, exp.description, exp.log_tail, attempt),
        )
        self.bus.emit(AgentActivity(exp.id, f"repairing the crash (attempt {attempt})"))
        proposal = await self.agent.propose(context)
        exp.agent_s += proposal.agent_seconds
        exp.cost_usd += proposal.cost_usd
        exp.input_tokens += proposal.input_tokens
        exp.output_tokens += proposal.output_tokens
        await asyncio.to_thread(self._trace, exp.id, [{"repair": attempt}, *proposal.trace])
        problem = guard.check_proposal(proposal, editable, pending.base_text)
        if problem is not None:
            exp.reason += f"; repair {attempt} refused: {problem}"
            return None
        text = proposal.edits[editable]
        exp.diff = _diff(editable, pending.base_text, text)
        exp.digest = digest(text)
        exp.description = f"{exp.description} (repaired: {proposal.description})"
        message = commit_message(exp.id, exp.description, Trailers(exp.id, "running"))
        exp.commit = await asyncio.to_thread(
            self.workspace.commit_edits, pending.base_commit, {editable: text}, message
        )
        await asyncio.to_thread(self.workspace.set_experiment_ref, exp.id, exp.commit)
        exp.status, exp.reason = Status.RUNNING, ""
        await asyncio.to_thread(self.ledger.save, exp)
        return text

    def _trace(self, experiment: int, records: list[dict[str, Any]]) -> None:
        if records:
            write_trace(self.folder, experiment, records, self._secrets)

    def _allocate_id(self) -> int:
        """Numbers are taken without an await in between, so parallel slots never share one."""
        exp_id = max(self._next_id, self.ledger.next_id(self.tag))
        self._next_id = exp_id + 1
        return exp_id

    def _repeats(self, text: str) -> str | None:
        wanted = digest(text)
        for exp in self.experiments():
            if (
                exp.digest == wanted
                and exp.status.is_final
                and exp.status
                not in (Status.INVALID, Status.INTERRUPTED, Status.REJECTED, Status.LOST)
            ):
                return f"this edit repeats exp {exp.id} ({exp.status}), which was already measured"
        return None

    async def _await_review(self, exp_id: int, pending: Pending) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.reviews[exp_id] = Review(exp_id, pending, future)
        self._set_state("awaiting_review")
        try:
            return await future
        except asyncio.CancelledError:
            if self._stopping:
                return False
            raise
        finally:
            self.reviews.pop(exp_id, None)
            if not self.reviews and self.state == "awaiting_review":
                self._set_state("running" if self._unpaused.is_set() else "paused")

    async def _measure_once(
        self, exp: Experiment, slot: Slot, text: str, run: int
    ) -> tuple[float | None, float, str]:
        """Runs the experiment once more; returns (metric or None, seconds, why it failed)."""
        control = RunControl()
        running = Running(
            exp.id, exp.description, slot.name, self.config.loop.budget_s, time.monotonic(), control
        )
        self.running[(exp.id, run)] = running
        log_path = Path(exp.log_path) if run == 0 else self.logs / f"{exp.id}.run{run + 1}.log"

        def on_line(line: str, elapsed: float) -> None:
            running.last_line = line
            self.bus.emit(OutputLine(exp.id, line, elapsed))

        self.bus.emit(
            ExperimentStarted(exp.id, exp.description, self.config.loop.budget_s, slot.name)
        )
        best = self.best()
        best_curve = load_curve(self.folder / "curves", best.id) if best else []
        try:
            attempt = await self.measurer.run(
                experiment=exp.id,
                commit=exp.commit or "",
                base_commit=exp.base_commit,
                slot=slot,
                text=text,
                log_path=log_path,
                control=control,
                on_line=on_line,
                best_curve=best_curve,
                env={LOOP_VARIABLE: self.loop_id},
            )
        finally:
            self.running.pop((exp.id, run), None)
        outcome = attempt.outcome
        exp.hardware = outcome.hardware
        if outcome.hardware:
            self._slot_hardware[slot.name] = outcome.hardware
        exp.exit_code = outcome.exit_code
        exp.log_tail = "\n".join(outcome.tail[-LOG_TAIL_FOR_AGENT:])
        exp.secondary = attempt.measurement.secondary | exp.secondary
        if attempt.holdout is not None:
            exp.secondary["holdout"] = attempt.holdout
        exp.trace_tail = attempt.trace_tail
        if attempt.curve:
            await asyncio.to_thread(save_curve, self.folder / "curves", exp.id, attempt.curve)
        failed = failure(attempt, control, self.config.loop.timeout_s)
        value = None if failed else attempt.measurement.value
        await asyncio.to_thread(
            self.ledger.add_run,
            self.tag,
            exp.id,
            value,
            attempt.run_s,
            "measure" if run == 0 else "rerun",
        )
        if failed:
            exp.status, exp.reason = failed
            return None, attempt.run_s, failed[1]
        return value, attempt.run_s, ""

    async def _measure_and_judge(
        self, exp: Experiment, slot: Slot, text: str, extra_slots: list[Slot] | None = None
    ) -> float:
        """Measures as often as the judge asks and sets the final status; returns run time."""
        if exp.source == "baseline":
            return await self._measure_baseline(exp, [slot, *(extra_slots or [])], text)
        runs: list[float] = []
        total = 0.0
        while True:
            value, seconds, problem = await self._measure_once(exp, slot, text, len(runs))
            total += seconds
            if value is None:
                if runs:  # a re-run failed: the earlier runs do not stand alone
                    exp.reason = f"{problem} (in run {len(runs) + 1})"
                exp.metric = None
                if exp.status is Status.LOST:
                    self._requeue_lost(exp, text)
                return total
            runs.append(value)
            exp.metric = mean(runs)
            await self._baseline_ready.wait()  # nothing is judged before the baseline is known
            if self.best() is None:
                exp.status, exp.reason = Status.INTERRUPTED, "interrupted: the baseline failed"
                return total
            decision = self._decide(exp, runs)
            if decision.action != "rerun" or self._stopping:
                exp.status = Status.KEPT if decision.keep else Status.DISCARDED
                exp.reason = decision.reason
                if self._stopping and decision.action == "rerun":
                    exp.status, exp.reason = Status.INTERRUPTED, "interrupted before its re-runs"
                return total

    async def _measure_baseline(self, exp: Experiment, slots: list[Slot], text: str) -> float:
        """`baseline_runs` runs, as many at once as there are slots for it."""
        wanted = self.config.judge.baseline_runs
        runs: list[float] = []
        total = 0.0
        while len(runs) < wanted:
            batch = slots[: wanted - len(runs)]
            results = await asyncio.gather(
                *(
                    self._measure_once(exp, slot, text, len(runs) + i)
                    for i, slot in enumerate(batch)
                )
            )
            for value, seconds, problem in results:
                total = max(total, seconds) if len(batch) > 1 else total + seconds
                if value is None:
                    exp.metric = None
                    if runs or len(batch) > 1:
                        exp.reason = f"{problem} (a baseline run)"
                    return total
                runs.append(value)
        exp.metric = mean(runs)
        noise = estimate_noise([runs])
        exp.status = Status.KEPT
        exp.reason = f"baseline: {self.config.metric.name} {exp.metric:.6g}" + (
            f" over {len(runs)} runs, noise {noise:.3g}" if noise is not None else ""
        )
        return total

    def _requeue_lost(self, exp: Experiment, text: str) -> None:
        """A run lost to its host or connection is measured again, once."""
        if exp.rerun_of is not None or exp.commit is None:
            return
        base_text = self.workspace.read(exp.base_commit, self.config.loop.editable)
        proposal = Proposal(
            edits={self.config.loop.editable: text},
            source=exp.source,
            description=exp.description,
            rerun_of=exp.id,
        )
        self._priority.append(Pending(proposal, exp.base_commit, base_text))
        exp.reason += "; queued to run again"

    def noise(self) -> float | None:
        """The run-to-run noise of the metric, from every experiment measured more than once."""
        return self.verdicts.noise()

    def _decide(self, exp: Experiment, runs: list[float]) -> Decision:
        experiments = self.experiments()
        best = best_of(experiments)
        assert best is not None
        decision, again = self.verdicts.decide(exp, runs, best, baseline_of(experiments))
        if again is not None:
            self._priority.append(again)
        return decision

    async def _finish(self, exp: Experiment, started: float, run_s: float) -> Experiment:
        """Final commit message, ledger, branch and results.tsv, in the order recovery expects:
        the ledger first, then the refs."""
        exp.run_s = run_s
        exp.finished_at = time.time()
        async with self._finishing:  # one keep at a time: each is checked against the tip
            if exp.commit is not None:
                metric = (
                    f"{self.config.metric.name}={exp.metric:.6g}" if exp.metric is not None else ""
                )
                exp.commit = await asyncio.to_thread(self._final_commit, exp, metric)
            exp.overhead_s = max(0.0, time.monotonic() - started - run_s)
            await asyncio.to_thread(self._record, exp)
        new_best = exp.status is Status.KEPT
        experiments = await asyncio.to_thread(self.experiments)
        best, baseline = (exp if new_best else best_of(experiments)), baseline_of(experiments)
        self.bus.emit(
            ExperimentFinished(
                exp, best.metric if best else None, baseline.metric if baseline else None, new_best
            )
        )
        return exp

    def _final_commit(self, exp: Experiment, metric: str) -> str:
        """The experiment's commit with its final trailers. A keep whose base is an equivalent
        older commit (it ran while the baseline was measured) is put on the tip, so the branch
        stays a straight line; a keep overtaken by another slot's keep since it was judged is
        merged onto that one and queued to be measured again instead."""
        assert exp.commit is not None
        tip = self.tip()
        if exp.status is Status.KEPT and exp.base_commit != tip:
            if not self.verdicts.same_editable(exp.base_commit, tip):
                again = self.verdicts.merged_onto_best(exp)
                if again is not None:
                    self._priority.append(again)
                requeued = again is not None
                exp.status = Status.DISCARDED
                exp.reason += (
                    ", but another experiment was kept first: merged onto it and "
                    "queued to be measured again"
                    if requeued
                    else ", but another experiment was kept first and this change does "
                    "not merge onto it"
                )
            else:
                exp.base_commit = tip
                message = self._message(exp, metric)
                return self.workspace.commit_tree(self.workspace.tree(exp.commit), tip, message)
        return self.workspace.recommit(exp.commit, self._message(exp, metric))

    def _message(self, exp: Experiment, metric: str) -> str:
        return commit_message(exp.id, exp.description, Trailers(exp.id, str(exp.status), metric))

    def _record(self, exp: Experiment) -> None:
        self.ledger.save(exp)
        if exp.commit is not None:
            self.workspace.set_experiment_ref(exp.id, exp.commit)
            if exp.status is Status.KEPT:
                self.workspace.move_branch(exp.commit, exp.base_commit)
        self.ledger.write_results(self.tag, self.config.metric.name)


def _diff(path: str, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )
