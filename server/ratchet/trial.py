"""One experiment's lifecycle: prepare, review, measure, repair, record.

prepare  carry the proposal onto the current best; guard it; commit it under its ref
review   with `review = "propose"`, wait for a person's accept or reject
measure  run it as often as the judge asks (the baseline `baseline_runs` times)
repair   hand a fast crash back to the agent, for `repair_attempts` tries
record   final commit message, ledger, ref, branch, results.tsv — in the order recovery expects
"""

from __future__ import annotations

import asyncio
import difflib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from . import guard, results_tsv
from .baseline import Baselines, machine
from .config import Config
from .events import (
    AgentActivity,
    EventBus,
    ExperimentFinished,
    ExperimentProposed,
)
from .experiment import Experiment, Pending, RepairRequest, Status, move
from .history import History
from .novelty import digest
from .proposer import Proposer
from .runners.base import Slot
from .runs import Judged, Runs
from .scheduler import REMEASURE, WorkItem
from .slots import Slots
from .traces import Traces
from .verdicts import Verdicts
from .workspace import Trailers, Workspace, commit_message


@dataclass
class Review:
    """A proposal waiting for a person's accept or reject (review = "propose")."""

    id: int
    pending: Pending
    decision: asyncio.Future[bool] = field(repr=False)


def unified_diff(path: str, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
        )
    )


NOT_MEASURED = Judged(0.0)  # refused, rejected or stopped before it ran


class TrialNeeds(Protocol):
    """What one experiment's lifecycle needs of the engine that drives it."""

    @property
    def stopping(self) -> bool: ...

    def say(self, message: str) -> None: ...

    # A proposal began to wait for a person, or the last one waiting was answered.
    def reviews_changed(self, waiting: bool) -> None: ...


@dataclass
class Outcome:
    """What one work item came to, for the engine to decide what follows."""

    experiment: Experiment | None = None  # recorded; None: dropped before it ran, or a re-measure
    queued: list[WorkItem] = field(default_factory=list)  # work it left, in the ledger's queue
    remeasured: bool = False  # the best was measured once more

    @property
    def ran(self) -> bool:
        return self.experiment is not None


class Trial:
    """Runs work items for the engine; holds the proposals waiting for review, and the lock
    that lets one keep at a time move the branch."""

    def __init__(
        self,
        engine: TrialNeeds,
        *,
        config: Config,
        history: History,
        workspace: Workspace,
        verdicts: Verdicts,
        runs: Runs,
        proposer: Proposer,
        baselines: Baselines,
        slots: Slots,
        bus: EventBus,
        traces: Traces,
        data: Path,
        agent_kind: str,
    ) -> None:
        self.engine = engine
        self.config = config
        self.history = history
        self.workspace = workspace
        self.verdicts = verdicts
        self.runs = runs
        self.proposer = proposer
        self.baselines = baselines
        self.slots = slots
        self.bus = bus
        self.traces = traces
        self.logs = data / "logs"
        self.agent_kind = agent_kind
        self.reviews: dict[int, Review] = {}  # proposals waiting for a person
        self.finishing = asyncio.Lock()  # one keep at a time: each is checked against the tip

    @property
    def editable(self) -> str:
        return self.config.loop.editable

    # --- prepare -----------------------------------------------------------------------------

    async def run(self, item: WorkItem, slot: Slot) -> Outcome:
        """Runs one work item to its record (nothing, when it is dropped before it runs)."""
        if item.pending.proposal.source == "remeasure":
            await self.runs.remeasure_best(slot)
            return Outcome(remeasured=True)
        pending = await self._carry(item.pending)
        if pending is None:  # its change is already in, or no longer applies: said, not lost
            proposal = item.pending.proposal
            if proposal.source != "agent":
                self.engine.say(
                    f"“{proposal.description}” was not run: its change is already in the best, "
                    "or no longer applies to it (the best moved on)"
                )
            if item.durable is not None:
                await asyncio.to_thread(self.history.ledger.dequeue, item.durable)
            return Outcome()
        return await self.experiment(pending, slot, [], item.durable)

    async def _carry(self, pending: Pending) -> Pending | None:
        """A proposal made from an older best, carried onto the current one."""
        tip = self.history.tip
        if pending.base_commit == tip or pending.proposal.source == "baseline":
            return pending
        if pending.proposal.source == "human":  # a person's file, measured as they wrote it
            current = await asyncio.to_thread(self.workspace.read, tip, self.editable)
            return replace(pending, base_commit=tip, base_text=current)
        proposed = pending.proposal.edits.get(self.editable)
        if proposed is None or set(pending.proposal.edits) != {self.editable}:
            current = await asyncio.to_thread(self.workspace.read, tip, self.editable)
            return replace(pending, base_commit=tip, base_text=current)  # the guard refuses it
        carried = await asyncio.to_thread(
            self.workspace.carry, pending.base_text, proposed, tip, self.editable
        )
        if carried is None:
            return None
        merged, current = carried
        return Pending(replace(pending.proposal, edits={self.editable: merged}), tip, current)

    def _new(self, pending: Pending, exp_id: int) -> Experiment:
        proposal = pending.proposal
        return Experiment(
            id=exp_id,
            tag=self.history.tag,
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

    def _refusal(self, pending: Pending, text: str) -> str | None:
        proposal = pending.proposal
        if proposal.source == "baseline":
            return None
        problem = guard.check_proposal(proposal, self.editable, pending.base_text)
        # Only the agent is held to novelty: a person may measure a text again on purpose
        # (a held gain applied by hand), and a revert or re-measure may well repeat one.
        if problem is None and proposal.source == "agent":
            seen = self.history.tried(digest(text))
            if seen is not None:
                problem = f"this edit repeats exp {seen.id} ({seen.status}), already measured"
        return problem

    async def experiment(
        self, pending: Pending, slot: Slot, extra_slots: list[Slot], durable: int | None = None
    ) -> Outcome:
        """Guard, commit, review, measure, judge and record one proposal."""
        engine, started = self.engine, time.monotonic()
        proposal = pending.proposal
        new_text = proposal.edits.get(self.editable, pending.base_text)
        reserved = pending.reserved_id
        exp = self._new(pending, self.history.allocate_id() if reserved is None else reserved)
        await asyncio.to_thread(self.traces.write, exp.id, proposal.trace)
        problem = self._refusal(pending, new_text)
        if problem is not None:
            move(exp, Status.INVALID, f"invalid: {problem}")
            exp.diff = refused_diff(self.editable, pending.base_text, new_text)
            return await self.finish(exp, started, durable=durable)
        exp.diff = unified_diff(self.editable, pending.base_text, new_text)
        exp.digest = digest(new_text)
        await self._commit(exp, pending.base_commit, new_text if proposal.edits else None)
        review = self.config.loop.review == "propose" and proposal.source == "agent"
        move(exp, Status.AWAITING_REVIEW if review else Status.RUNNING)
        await asyncio.to_thread(self.history.save, exp, durable)
        durable = None  # carried by the experiment's own row from here on
        self.bus.emit(
            ExperimentProposed(
                exp.id, proposal.description, exp.diff, pending.base_text, new_text, review
            )
        )
        if review and not await self._review(exp.id, pending):
            reason = "the loop stopped before review" if engine.stopping else "rejected in review"
            move(exp, Status.REJECTED, reason)
            return await self.finish(exp, started)
        if engine.stopping:
            move(exp, Status.INTERRUPTED, "interrupted: the loop stopped")
            return await self.finish(exp, started)
        if exp.status is not Status.RUNNING:
            move(exp, Status.RUNNING)
            await asyncio.to_thread(self.history.save, exp)
        judged = await self.runs.measure(exp, slot, new_text, extra_slots)
        run_s = judged.seconds
        for attempt in range(1, self.config.agent.repair_attempts + 1):
            if not self._repairable(exp, run_s):
                break
            repaired = await self._repair(exp, pending, new_text, attempt)
            if repaired is None:
                break
            new_text = repaired
            judged = await self.runs.measure(exp, slot, new_text, [], repair=attempt)
            run_s += judged.seconds
        return await self.finish(exp, started, judged._replace(seconds=run_s))

    async def _commit(self, exp: Experiment, base: str, text: str | None) -> None:
        message = commit_message(exp.id, exp.description, Trailers(exp.id, "running"))
        edits = {self.editable: text} if text is not None else {}
        workspace = self.workspace
        exp.commit = await asyncio.to_thread(workspace.commit_edits, base, edits, message)
        await asyncio.to_thread(workspace.set_experiment_ref, exp.id, exp.commit)

    async def _review(self, exp_id: int, pending: Pending) -> bool:
        engine = self.engine
        if engine.stopping:  # a stop answers every waiting review, and this one came after it
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.reviews[exp_id] = Review(exp_id, pending, future)
        engine.reviews_changed(waiting=True)
        try:
            return await future  # stop() answers every review: this wait has a way out
        except asyncio.CancelledError:
            if engine.stopping:
                return False
            raise
        finally:
            self.reviews.pop(exp_id, None)
            if not self.reviews:
                engine.reviews_changed(waiting=False)

    # --- repair ------------------------------------------------------------------------------

    def _repairable(self, exp: Experiment, run_s: float) -> bool:
        """A fast crash (a syntax error, a NameError, a shape mismatch) goes back to the agent."""
        return (
            exp.status is Status.CRASHED
            and exp.source == "agent"
            and not self.engine.stopping
            and run_s <= self.config.agent.repair_window_s
        )

    async def _repair(
        self, exp: Experiment, pending: Pending, broken: str, attempt: int
    ) -> str | None:
        """Asks the agent to fix its crashed edit; the fix is the same experiment's new code.
        Returns the new text, or None (the crash stands, with the reason why)."""
        context = replace(
            await asyncio.to_thread(self.proposer.context, 0),
            editable_text=pending.base_text,
            repair_of=RepairRequest(broken, exp.description, exp.log_tail, attempt),
        )
        self.bus.emit(AgentActivity(exp.id, f"repairing the crash (attempt {attempt})"))
        proposal = await self.proposer.ask(context)
        exp.agent_s += proposal.agent_seconds
        exp.cost_usd += proposal.cost_usd
        exp.input_tokens += proposal.input_tokens
        exp.output_tokens += proposal.output_tokens
        await asyncio.to_thread(self.traces.write, exp.id, [{"repair": attempt}, *proposal.trace])
        problem = guard.check_proposal(proposal, self.editable, pending.base_text)
        if problem is not None:
            exp.reason += f"; repair {attempt} refused: {problem}"
            return None
        text = proposal.edits[self.editable]
        exp.diff = unified_diff(self.editable, pending.base_text, text)
        exp.digest = digest(text)
        exp.description = f"{exp.description} (repaired: {proposal.description})"
        await self._commit(exp, pending.base_commit, text)
        move(exp, Status.RUNNING, "")
        await asyncio.to_thread(self.history.save, exp)
        return text

    # --- record ------------------------------------------------------------------------------

    async def finish(
        self,
        exp: Experiment,
        started: float,
        judged: Judged = NOT_MEASURED,
        durable: int | None = None,
    ) -> Outcome:
        """Final commit message, the work it leaves, ledger, branch and results.tsv, in the
        order recovery expects: the queue and the ledger first, then the refs."""
        exp.run_s = judged.seconds
        exp.finished_at = time.time()
        again, priority = judged.again, judged.priority
        async with self.finishing:
            if exp.commit is not None:
                exp.commit, overtaken = await asyncio.to_thread(self._final_commit, exp)
                if overtaken is not None:
                    again, priority = overtaken, REMEASURE
            queued = [] if again is None else await self._promise(again, priority)
            exp.overhead_s = max(0.0, time.monotonic() - started - judged.seconds)
            await asyncio.to_thread(self._record, exp, durable)
        return Outcome(exp, queued)

    async def _promise(self, again: Pending, priority: int) -> list[WorkItem]:
        """The work this experiment leaves, written to the ledger's queue before its own record,
        so a kill between the two loses none of it. Work pinned to hardware no slot has runs on
        the hardware here, after the baseline is measured again on it."""
        items = []
        wanted = again.hardware
        if wanted is not None and not self.slots.present(wanted):
            again = replace(again, hardware=None)
            why = f"no slot here has the reference hardware ({machine(wanted)})"
            if (baseline := await self.baselines.measure_again(why)) is not None:
                items.append(WorkItem(baseline, REMEASURE, counted=False))
        items.append(WorkItem(again, priority, counted=False))
        for item in items:
            item.durable = await asyncio.to_thread(
                self.history.promise, item.pending, item.priority, item.counted
            )
        return items

    def announce(self, exp: Experiment) -> None:
        """A recorded experiment said to every face."""
        best, baseline = self.history.best, self.history.baseline
        self.bus.emit(
            ExperimentFinished(
                exp,
                best.metric if best else None,
                baseline.metric if baseline else None,
                exp.status is Status.KEPT,
            )
        )

    def _final_commit(self, exp: Experiment) -> tuple[str, Pending | None]:
        """The experiment's commit with its final trailers. A keep whose base is an equivalent
        older commit (it ran while the baseline was measured) is put on the tip, so the branch
        stays a straight line; a keep overtaken by another slot's keep since it was judged is
        carried onto that one and queued to be measured again instead."""
        assert exp.commit is not None
        workspace = self.workspace
        tip = self.history.tip
        if exp.status is Status.KEPT and exp.base_commit != tip:
            if not self.verdicts.same_editable(exp.base_commit, tip):
                again = self.verdicts.merged_onto_best(exp)
                move(
                    exp,
                    Status.DISCARDED,
                    exp.reason
                    + (
                        ", but another experiment was kept first: merged onto it and "
                        "queued to be measured again"
                        if again is not None
                        else ", but another experiment was kept first and this change does "
                        "not merge onto it"
                    ),
                )
                return workspace.recommit(exp.commit, self._message(exp)), again
            exp.base_commit = tip
            tree = workspace.tree(exp.commit)
            return workspace.commit_tree(tree, tip, self._message(exp)), None
        return workspace.recommit(exp.commit, self._message(exp)), None

    def _message(self, exp: Experiment) -> str:
        name = self.config.metric.name
        metric = f"{name}={exp.metric:.6g}" if exp.metric is not None else ""
        return commit_message(exp.id, exp.description, Trailers(exp.id, str(exp.status), metric))

    def _record(self, exp: Experiment, durable: int | None) -> None:
        self.history.save(exp, durable)
        if exp.commit is not None:
            self.workspace.set_experiment_ref(exp.id, exp.commit)
            if exp.status is Status.KEPT:
                self.workspace.move_branch(exp.commit, exp.base_commit)
                self.history.advance(exp.commit)
        results_tsv.append_result(self.history.ledger.folder, exp, self.config.metric.name)


REFUSED_DIFF_BYTES = 64_000  # of a refused edit's diff kept in the record


def refused_diff(editable: str, base: str, new: str) -> str:
    """A refused edit's diff, bounded: enough for a person to see what was tried, never the
    whole of a 50 MB proposal (the record stays small); binary content is not diffed."""
    if "\0" in new:
        return ""
    if len(new) > 4 * REFUSED_DIFF_BYTES + len(base):
        new = new[: 2 * REFUSED_DIFF_BYTES + len(base)]  # diffing all of it costs seconds
    diff = unified_diff(editable, base, new)
    if len(diff) <= REFUSED_DIFF_BYTES:
        return diff
    cut = diff.rfind("\n", 0, REFUSED_DIFF_BYTES) + 1
    return diff[:cut] + f"... (the diff is cut here: the refused edit was {len(new):,}+ chars)\n"
