"""The loop's wiring and its commands.

The engine prints nothing and knows nothing of LSP or terminals: it emits typed events
(events.py) and takes commands (the public methods of Engine). Agents, runners, git and the
ledger meet here; the parts are built in parts.py; the queue and its workers are scheduler.py,
one experiment's lifecycle is trial.py, the record in memory is history.py, opening and
recovering is opening.py. A part returns what happened; what follows is decided here.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from .agents.base import Agent
from .config import Config
from .errors import RatchetError
from .events import EventBus, LoopStateChanged
from .experiment import Experiment, Pending, Proposal
from .guard import locked_hashes_at
from .history import History
from .ledger import Ledger
from .lockfile import LoopLock
from .parts import Loop, build_parts
from .record import default_tag
from .runners.base import Runner, Slot
from .runs import LOOP_VARIABLE
from .scheduler import AGENT, PERSON, REMEASURE, Scheduler, WorkItem
from .trial import Outcome
from .workspace import Workspace, ensure_ratchet_dir

__all__ = ["LOOP_VARIABLE", "Engine", "default_tag"]


class Engine:
    def __init__(
        self,
        config: Config,
        *,
        tag: str | None = None,
        agent: Agent | None = None,
        runner: Runner | None = None,
        new_rules: bool = False,
        carry_user_change: bool = False,
    ) -> None:
        self.config = config
        self.bus = bus = EventBus()
        self.folder = ensure_ratchet_dir(config.root)
        self.ledger = Ledger(self.folder)
        self.tag = tag or self._pick_tag()
        self.data = self.folder / "loops" / self.tag  # this loop's logs, traces and curves
        self.workspace = Workspace(config.root, self.tag)
        self.loop_id = hashlib.sha256(f"{config.root.resolve()}:{self.tag}".encode()).hexdigest()[
            :16
        ]
        where = Loop(config, self.ledger, self.tag, self.data, self.loop_id, self.workspace, bus)
        parts = build_parts(
            self,
            where,
            agent=agent,
            runner=runner,
            new_rules=new_rules,
            carry_user_change=carry_user_change,
        )
        self.history = parts.history
        self.agent, self.agent_kind = parts.agent, parts.agent_kind
        self.runner = parts.runner
        self.slots = parts.slots
        self.baselines = parts.baselines
        self.proposer = parts.proposer
        self.trial = parts.trial
        self.opening = parts.opening
        self.upkeep = parts.upkeep
        self.in_flight = parts.in_flight
        self.parts = parts
        self.lock = LoopLock(self.folder)
        self.state = "idle"
        self.stopping = False
        self.scheduler: Scheduler | None = None
        self._restored: list[WorkItem] = []  # queued work found at open, for the next run
        self._opened = False

    def _pick_tag(self) -> str:
        tags = self.ledger.tags()
        return tags[-1] if tags else default_tag()

    # --- opening and closing -----------------------------------------------------------------

    async def open(self) -> None:
        """Takes the project's lock, readies the branch and recovers from any crash."""
        if self._opened:
            return
        await asyncio.to_thread(self.lock.acquire)
        try:
            await asyncio.to_thread(self.opening.open_branch)
            # Every run's locked files are checked against the loop's start commit, not
            # against whatever the run folder held before it ran.
            start = (self.ledger.loop(self.tag) or {})["start_commit"]
            self.parts.measurer.expected_locked = await asyncio.to_thread(
                locked_hashes_at, self.workspace, start, self.config.loop.locked
            )
            await self.slots.open(self.runner)
            self._restored = await asyncio.to_thread(self.opening.restore_queue)
        except BaseException:
            self.lock.release()
            raise
        self.upkeep.opened()
        self._opened = True
        if (baseline := await self.opening.check_hardware()) is not None:
            await self.enqueue(baseline, REMEASURE, counted=False)

    async def close(self) -> None:
        """Frees the project for another loop; the ledger stays readable."""
        await self.agent.close()
        await self.runner.close()
        if self._opened:
            await asyncio.to_thread(self.workspace.remove_worktrees)
            if self.state != "error":
                await asyncio.to_thread(self.opening.mark_closed)
            await asyncio.to_thread(self.history.save_snapshot)
        self.lock.release()
        self._opened = False

    # --- what the loop knows -----------------------------------------------------------------

    def _record(self) -> History:
        """The history, read from the ledger when the loop is not open (a view of a loop that
        another process runs, or has run)."""
        if not self._opened:
            self.history.load()
        return self.history

    def experiments(self) -> list[Experiment]:
        """Every experiment of this loop, in order, without the heavy fields (diff, log_tail,
        trace_tail): read one experiment whole with `experiment(id)`."""
        return list(self._record().experiments)

    def experiment(self, experiment: int) -> Experiment | None:
        """One experiment with every field, heavy ones included."""
        return self.ledger.get(self.tag, experiment)

    def experiments_since(self, after: int, limit: int | None = None) -> list[Experiment]:
        """The finished experiments numbered above `after` (light, as `experiments()`)."""
        return self._record().since(after, limit)

    def best(self) -> Experiment | None:
        return self._record().best

    def baseline(self) -> Experiment | None:
        return self._record().baseline

    def noise(self) -> float | None:
        return self._record().noise()

    def status(self) -> dict[str, Any]:
        """A snapshot for status views (the status bar, `ratchet.status`): O(1) in the record."""
        history = self._record()
        best, baseline = history.best, history.baseline
        gain = None
        if best and baseline and best.metric is not None and baseline.metric is not None:
            gain = self.parts.judge.gain_percent(best.metric, baseline.metric)
        now = time.monotonic()
        return {
            "state": self.state,
            "tag": self.tag,
            "metric": self.config.metric.name,
            "goal": self.config.metric.goal,
            "running": self.in_flight.shown(now),
            "awaitingReview": sorted(self.trial.reviews),
            "best": best.metric if best else None,
            "bestId": best.id if best else None,
            "baseline": baseline.metric if baseline else None,
            "gainPercent": gain,
            "kept": history.kept,
            "total": history.finished,
            "crashed": history.crashed,
            "costUsd": round(history.cost_usd, 4),
            "runs": history.clock,  # every run, control runs of the best included
            "controlRuns": history.control_runs,
            "queued": len(self.scheduler.items) if self.scheduler else len(self._restored),
        }

    def set_state(self, state: str, message: str = "") -> None:
        if state != self.state or message:
            self.state = state
            self.bus.emit(LoopStateChanged(state, message))

    def say(self, message: str) -> None:
        """A message for every face (the CLI's live view, the editor), the state unchanged."""
        self.bus.emit(LoopStateChanged(self.state, message))

    def reviews_changed(self, waiting: bool) -> None:
        """The loop waits for review while any proposal does; then runs (or stays paused)."""
        if waiting:
            self.set_state("awaiting_review")
        elif self.state == "awaiting_review":
            paused = self.scheduler is not None and self.scheduler.paused
            self.set_state("paused" if paused else "running")

    # --- running -----------------------------------------------------------------------------

    async def run(
        self,
        max_experiments: int | None = None,
        *,
        more: int | None = None,
        submitted_only: bool = False,
    ) -> None:
        """Runs (or resumes) the loop until stopped, or until it holds `max_experiments`
        experiments (the baseline counts as one; re-runs and re-measures do not), or `more`
        beyond those it has. With `submitted_only`, runs just what was submitted (a person's
        edit, a revert) and returns: the agent proposes nothing."""
        await self.open()
        if self.state in ("running", "paused", "awaiting_review", "stopping"):
            raise RatchetError("the loop is already running")
        scheduler = self._new_scheduler(max_experiments, more, submitted_only)
        self.stopping = False
        self.set_state("paused" if scheduler.paused else "running")
        try:
            await self._run(scheduler)
        except* RatchetError as group:
            self.set_state("error", "; ".join(str(e) for e in group.exceptions))
        except* Exception as group:
            # A bug anywhere in the loop ends it with a message, never as a silent stop.
            problem = group.exceptions[0]
            self.set_state("error", f"the loop stopped on an internal error: {problem!r}")
            raise
        finally:
            await self._wind_down(scheduler)

    def _new_scheduler(
        self, max_experiments: int | None, more: int | None, submitted_only: bool
    ) -> Scheduler:
        paused = self.scheduler.paused if self.scheduler else False
        scheduler = Scheduler(
            self.slots.all,
            execute=self._execute,
            propose=self.proposer.propose,
            fits=self._fits,
            blocked=self.proposer.blocked,
            pipeline=self.config.loop.pipeline,
        )
        counted = self.history.counted()
        needs_baseline = self.history.baseline is None
        scheduler.started = counted
        if max_experiments is not None:
            scheduler.quota = max_experiments
        elif more is not None:
            scheduler.quota = counted + more + (1 if needs_baseline else 0)
        if scheduler.quota is not None and scheduler.quota <= counted and not self._restored:
            self.say(
                f"loop {self.tag} already holds {counted} experiments, as many as "
                f"--max-experiments {scheduler.quota} allows; raise it to go on"
            )
        scheduler.proposer_open = not submitted_only
        # Proposals are numbered over the whole loop: a seeded agent's draws follow the record,
        # never the timing of the slots.
        scheduler.proposals = len(self.history.experiments)
        scheduler.paused = paused
        for item in self._restored:
            scheduler.put(item)
        self._restored = []
        self.scheduler = scheduler
        return scheduler

    async def _run(self, scheduler: Scheduler) -> None:
        wanted = 0
        if self.history.baseline is None and not self.baselines.again:
            wanted = max(1, min(self.config.judge.baseline_runs, len(self.slots.all)))
            self.baselines.ready.clear()  # nothing is judged before the baseline is known
            scheduler.started += 1
        async with asyncio.TaskGroup() as tasks:
            if scheduler.proposer_open:
                tasks.create_task(scheduler.propose_forever())
            for slot in self.slots.all[wanted:]:
                tasks.create_task(scheduler.work(slot))
            if wanted:  # exp 0, numbered before any other slot takes a number
                baseline = self.history.allocate_id()
                tasks.create_task(self._baseline_then_work(scheduler, wanted, baseline))

    async def _baseline_then_work(self, scheduler: Scheduler, wanted: int, exp_id: int) -> None:
        """The baseline on the first `wanted` slots, then they join the work; without it,
        nothing can be judged and the loop stops."""
        slots = self.slots.all[:wanted]
        if (failed := await self.baselines.first(self._experiment, slots, exp_id)) is not None:
            self.stop(failed.error)
            return
        await asyncio.gather(*(scheduler.work(slot) for slot in slots))

    async def _wind_down(self, scheduler: Scheduler) -> None:
        scheduler.drop_agent_items()
        for review in self.trial.reviews.values():
            if not review.decision.done():
                review.decision.cancel()
        # Work still queued (the quota was used, or a stop) waits in the ledger for the next run.
        self._restored = [i for i in scheduler.items if i.durable is not None]
        self.in_flight.clear()
        self.baselines.ready.set()
        # No slot worktree stays registered in the user's repository between runs.
        await asyncio.to_thread(self.workspace.remove_worktrees)
        if scheduler.proposer_message:
            self.say(scheduler.proposer_message)
        if self.state != "error":
            self.set_state("idle")

    def _fits(self, item: WorkItem, slot: Slot) -> bool:
        return self.slots.fits(item.pending.hardware, slot)

    # --- what follows a result ---------------------------------------------------------------

    async def _execute(self, item: WorkItem, slot: Slot) -> bool:
        """One work item for the scheduler; True when it ran (it counts)."""
        outcome = await self.trial.run(item, slot)
        await self._follow(outcome, slot)
        return outcome.ran

    async def _experiment(self, pending: Pending, slot: Slot, extra: list[Slot]) -> Experiment:
        """The baseline, on its slots, and what follows it."""
        outcome = await self.trial.experiment(pending, slot, extra)
        await self._follow(outcome, slot)
        assert outcome.experiment is not None
        return outcome.experiment

    async def _follow(self, outcome: Outcome, slot: Slot) -> None:
        """What a result sets going: the work it left queued, its event, a re-measure of the
        best or the end of the loop, and the holdout of a new best (after the record and the
        rest, so no slot waits for it)."""
        for item in outcome.queued:
            self._place(item)
        exp = outcome.experiment
        if outcome.remeasured and self.upkeep.unconfirmed():
            self._queue_remeasure()  # until the judge trusts it
        if exp is None:
            return
        if exp.source == "baseline" and (failed := await self.baselines.done(exp)) is not None:
            self.stop(failed.error)  # before its event: the baseline's end
        self.trial.announce(exp)
        then = self.upkeep.after_finish()
        if then.remeasure:
            self._queue_remeasure()
        if then.stop:
            self.say(then.stop)
            self.stop()
        await self.parts.holdout.measure(exp, slot)

    def _queue_remeasure(self) -> None:
        if self.scheduler is not None and (item := self.upkeep.remeasure(self.scheduler.items)):
            self.scheduler.put(item)

    async def enqueue(self, pending: Pending, priority: int, counted: bool = True) -> None:
        """Work for a slot. All but the agent's next proposal is written to the ledger first, so
        a stop, a crash or a SIGKILL loses none of it."""
        durable = None
        if priority != AGENT:
            durable = await asyncio.to_thread(self.history.promise, pending, priority, counted)
        self._place(WorkItem(pending, priority, counted, durable))

    def _place(self, item: WorkItem) -> None:
        """Queued work goes to the running loop's scheduler, or waits for the next run."""
        if self.scheduler is not None and self.state not in ("idle", "error"):
            self.scheduler.put(item)
        else:
            self._restored.append(item)

    # --- commands ----------------------------------------------------------------------------

    def stop(self, error: str = "") -> None:
        """Stops the loop: running experiments are killed and recorded `interrupted` (run again
        at the next start); queued work stays in the ledger. With `error`, said as the loop's."""
        if error:
            self.set_state("error", error)
        self.stopping = True
        self.in_flight.stop_all("stopped by the user")
        for review in self.trial.reviews.values():
            if not review.decision.done():
                review.decision.set_result(False)  # recorded "the loop stopped before review"
        if self.scheduler is not None:
            self.scheduler.stop()
        self.baselines.ready.set()
        if self.state not in ("idle", "error"):
            self.set_state("stopping")

    def stop_experiment(self, experiment: int, reason: str = "cancelled by the user") -> bool:
        """Stops one experiment on purpose: recorded `cancelled`, never run again by itself."""
        return self.in_flight.cancel(experiment, reason)

    def pause(self) -> None:
        """Running experiments finish; no new one starts until resume."""
        if self.scheduler is not None:
            self.scheduler.pause(True)
        if self.state in ("running", "awaiting_review"):
            self.set_state("paused")

    def resume(self) -> None:
        if self.scheduler is not None:
            self.scheduler.pause(False)
        if self.state == "paused":
            self.set_state("running")

    def decide(self, experiment: int, accept: bool) -> None:
        """Accept or reject a proposal waiting for review."""
        review = self.trial.reviews.get(experiment)
        if review is None or review.decision.done():
            raise RatchetError(f"experiment {experiment} is not waiting for review")
        review.decision.set_result(accept)

    async def submit(self, text: str, description: str, source: str = "human") -> None:
        """An edit made by a person (the editor's buffer), judged like any proposal; it runs
        before the agent's next one, and survives a restart until it has."""
        await self.open()
        editable = self.config.loop.editable
        tip = self.history.tip
        base_text = await asyncio.to_thread(self.workspace.read, tip, editable)
        proposal = Proposal(edits={editable: text}, description=description, source=source)
        await self.enqueue(Pending(proposal, tip, base_text), PERSON)

    async def revert(self, experiment: int) -> None:
        """Undoes a kept experiment with a new commit on the loop's branch: its change is taken
        back out of the current best (a reverse three-way merge), measured, and kept."""
        await self.open()
        pending = await asyncio.to_thread(self.opening.revert_pending, experiment)
        await self.enqueue(pending, PERSON)

    def reconfigure(self, config: Config) -> None:
        """ratchet.toml changed while the loop runs. Only what does not change how results are
        judged applies (the review gate, the agent's settings); the pinned rules (metric, goal,
        pattern, eval, budget, command, locked files) never change under a running loop."""
        problem = self.opening.rules_changed(config)
        if problem:
            raise RatchetError(problem)
        self.config = config
        self.parts.reconfigure(config)

    def text_of(self, experiment: int | str) -> str:
        """The editable file as experiment N left it, or as the best has it (`best`)."""
        editable = self.config.loop.editable
        if experiment == "best":
            tip = self.history.tip or self.workspace.branch_tip()
            if not tip:
                raise RatchetError(f"the loop's branch {self.workspace.branch} does not exist")
            return self.workspace.read(tip, editable)
        exp = self.ledger.get(self.tag, int(experiment))
        if exp is None or exp.commit is None:
            raise RatchetError(
                f"experiment {experiment} has no code to show (unknown, or refused "
                "before it was committed)"
            )
        return self.workspace.read(exp.commit, editable)

    def add_note(self, text: str) -> None:
        self.ledger.add_note(self.tag, text)
