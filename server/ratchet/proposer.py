"""What the agent is shown, and asking it: one proposal for the queue.

Nothing raised here stops the loop: whatever goes wrong while proposing (the ledger, git, the
agent itself) comes back as a proposal that failed, recorded `invalid` with the error in words.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Set
from pathlib import Path
from typing import Protocol

from .agents.base import Agent
from .cases import NAMED, case_delta, failures_for_agent
from .config import Config
from .context import history as history_for_agent
from .context import read_program
from .events import AgentActivity, EventBus
from .experiment import (
    CaseFailures,
    Experiment,
    Pending,
    Proposal,
    ProposalContext,
    Status,
)
from .history import History
from .novelty import digest
from .scheduler import Scheduler
from .summary import summarise
from .workspace import Workspace

EXHAUSTED_IN_ROW = 3  # proposals with nothing new, in a row, that close the proposer
RECENT_FOR_AGENT = 10  # the last experiments whose log tails and traces the agent is shown
SHOWN = 60  # experiments in the agent's history table
_NOT_PROPOSALS = ("baseline", "remeasure")
_READS_SUMMARY = ("anthropic", "command", "claude-code")  # hybrids too: "anthropic+tune"


class _Tried(Set[str]):
    """The digests already measured and those on their way, without copying either."""

    def __init__(self, measured: Set[str], queued: set[str]) -> None:
        self._measured, self._queued = measured, queued

    def __contains__(self, item: object) -> bool:
        return item in self._measured or item in self._queued

    def __iter__(self) -> Iterator[str]:
        yield from self._measured
        yield from (d for d in self._queued if d not in self._measured)

    def __len__(self) -> int:
        return len(self._measured) + sum(1 for d in self._queued if d not in self._measured)


class ProposerNeeds(Protocol):
    """What asking the agent needs of the engine that drives it."""

    @property
    def scheduler(self) -> Scheduler | None: ...

    def say(self, message: str) -> None: ...


class Proposer:
    def __init__(
        self,
        engine: ProposerNeeds,
        *,
        config: Config,
        history: History,
        workspace: Workspace,
        agent: Agent,
        agent_kind: str,
        bus: EventBus,
        logs: Path,
    ) -> None:
        self.engine = engine
        self.config = config
        self.history = history
        self.workspace = workspace
        self.agent = agent
        self.agent_kind = agent_kind
        self.bus = bus
        self.logs = logs  # where each run's failing cases are kept
        self._summary_of: tuple[int, int] | None = None
        self._summary_text = ""
        self.exhausted: str | None = None  # why the agent has nothing left, once it is said
        self._exhausted_in_row = 0
        self._warned: set[str] = set()  # the agent's warnings said already
        self._failures_of: dict[int, str] = {}  # the failures shown, by experiment (a few)

    def _summary(self) -> str:
        """The whole history grouped by what was changed, for the agents that read prose (an
        LLM, a CLI agent); made again only when an experiment has finished since."""
        kind = self.agent_kind
        if not kind.startswith(_READS_SUMMARY):
            return ""
        history = self.history
        key = (history.finished, len(history.experiments))
        if key != self._summary_of:
            lower = self.config.metric.lower_is_better
            self._summary_text = summarise(history.experiments, lower)
            self._summary_of = key
        return self._summary_text

    def _failures(self) -> tuple[CaseFailures, ...]:
        """The failing cases of the best and of the last measured candidate (with what it
        broke), for the agents that read prose; each worked out once."""
        if not self.agent_kind.startswith(_READS_SUMMARY):
            return ()
        history = self.history
        last = next(
            (e for e in reversed(history.experiments) if e.status.measured),
            None,
        )
        shown = []
        if last is not None and last.source != "baseline" and last.status is not Status.KEPT:
            shown.append((last, "the last candidate"))
        if history.best is not None:
            shown.append((history.best, "the best"))
        found = []
        for exp, role in shown:
            text = self._failures_of.get(exp.id)
            if text is None:
                text = self._failures_text(exp, exp.source != "baseline")
                # The last few kept, the newest last (a dict keeps insertion order).
                self._failures_of = {**dict(list(self._failures_of.items())[-3:]), exp.id: text}
            if text:
                found.append(CaseFailures(exp.id, role, text))
        return tuple(found)

    def _failures_text(self, exp: Experiment, with_broken: bool) -> str:
        ledger, tag = self.history.ledger, self.history.tag
        broken: list[str] = []
        base = self.history.kept_by_commit(exp.base_commit) if with_broken else None
        if base is not None and base.id != exp.id:
            delta = case_delta(ledger, tag, exp.id, base.id)
            numbers = list(delta[1]) if delta else []
            names = ledger.case_names(tag, numbers[:NAMED])
            broken = [names.get(n, f"#{n}") for n in numbers]
        return failures_for_agent(self.logs / f"{exp.id}.failing.jsonl", broken)

    def blocked(self) -> str | None:
        """Why the agent may propose no more (it has nothing new; `[agent] max_cost_usd`, its
        queued proposals' cost counted before their verdicts)."""
        if self.exhausted is not None:
            return self.exhausted
        cap = self.config.agent.max_cost_usd
        if cap is None:
            return None
        scheduler = self.engine.scheduler
        spent = self.history.cost_usd + sum(
            i.pending.proposal.cost_usd
            for i in (scheduler.items if scheduler else [])
            if i.from_agent
        )
        if spent < cap:
            return None
        return (
            f"the agent has spent ${spent:.2f} of max_cost_usd ${cap:.2f}: no more proposals; "
            "raise [agent] max_cost_usd to go on"
        )

    def context(self, number: int) -> ProposalContext:
        """What the agent sees; `number` tells apart proposals made at the same moment."""
        config, history, scheduler = self.config, self.history, self.engine.scheduler
        editable = config.loop.editable
        text = self.workspace.read(history.tip, editable)
        experiments = history.experiments
        # The last few whole (their log and trace tails), the rest of the table light.
        recent = history.full_many(e.id for e in experiments[-RECENT_FOR_AGENT:])
        shown = [
            *experiments[-SHOWN:-RECENT_FOR_AGENT],
            *(recent[e.id] for e in experiments[-RECENT_FOR_AGENT:] if e.id in recent),
        ]
        # Proposals in flight, then those waiting: what the agent should not propose again.
        work = [*scheduler.claimed, *scheduler.items] if scheduler else []
        queued = [i.pending for i in work if i.pending.proposal.source not in _NOT_PROPOSALS]
        best = history.best
        return ProposalContext(
            experiment=history.unallocated + (scheduler.prepared if scheduler else 0),
            proposal=number,
            base_commit=history.tip,
            editable_path=editable,
            editable_text=text,
            program=read_program(config.root / config.loop.program),
            metric_name=config.metric.name,
            goal=config.metric.goal,
            best_metric=best.metric if best else None,
            history=history_for_agent(shown, best),
            notes=tuple(history.ledger.notes(history.tag)),
            running=tuple(p.proposal.description for p in queued),
            tag=history.tag,
            summary=self._summary(),
            failures=self._failures(),
            tried_digests=_Tried(
                history.tried_keys(),
                {digest(p.proposal.edits.get(editable, "")) for p in queued},
            ),
        )

    async def ask(self, context: ProposalContext) -> Proposal:
        """The agent's proposal; any exception becomes a proposal that failed, in words."""
        started = time.monotonic()
        try:
            proposal = await self.agent.propose(context)
        except asyncio.CancelledError:
            raise
        except Exception as problem:  # an agent's bug or outage is a recorded `invalid`
            proposal = Proposal(
                edits={}, description="the agent failed", failure=f"the agent failed: {problem!r}"
            )
        proposal.agent_seconds = proposal.agent_seconds or (time.monotonic() - started)
        return proposal

    def _count_exhausted(self, proposal: Proposal) -> None:
        """A few proposals in a row with nothing new: the agent's search is spent (a new best
        would have reset the count, by giving it a new place to search from)."""
        if proposal.final and self.exhausted is None:
            self.exhausted = (
                f"no more proposals: {proposal.failure}; the loop ends once the running "
                "experiments finish"
            )
            return
        self._exhausted_in_row = self._exhausted_in_row + 1 if proposal.exhausted else 0
        if self._exhausted_in_row >= EXHAUSTED_IN_ROW and self.exhausted is None:
            self.exhausted = (
                f"no more proposals: {proposal.failure} ({self._exhausted_in_row} times in a "
                "row); the loop ends once the running experiments finish"
            )

    async def propose(self, number: int) -> Pending:
        """One proposal for the queue. Nothing raised here stops the loop: whatever goes wrong
        while proposing (the ledger, git, the agent) becomes an `invalid` experiment."""
        editable = self.config.loop.editable
        try:
            context = await asyncio.to_thread(self.context, number)
        except Exception as problem:
            proposal = Proposal(
                edits={},
                description="no proposal",
                failure=f"preparing the agent's context failed: {problem!r}",
            )
            return Pending(proposal, self.history.tip, "")
        self.bus.emit(AgentActivity(context.experiment, f"{self.agent_kind}: proposing"))
        proposal = await self.ask(context)
        self._count_exhausted(proposal)
        for warning in proposal.warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                self.engine.say(warning)
        outcome = proposal.failure or proposal.description
        self.bus.emit(
            AgentActivity(
                context.experiment,
                f"{self.agent_kind}: {outcome} "
                f"({proposal.agent_seconds:.1f}s, ${proposal.cost_usd:.4f})",
            )
        )
        base = context.editable_text if editable else ""
        return Pending(proposal, self.history.tip, base)
