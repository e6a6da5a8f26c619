"""One work queue, one proposer, one worker per slot.

Every piece of work is an item of one queue: the baseline, re-runs of interrupted
experiments, a person's edit, a revert, a re-measure, the agent's proposals. Each has a
priority and, where it matters, the hardware it must run on. Any change of the queue's state
wakes every waiting worker and the proposer; a worker takes an item that fits its slot, or
learns that the queue is closed: stopping, or nothing is left and nothing more can come (the
quota is used, the proposer is done, nothing is in flight that could add work). No wait here
lasts past the next change of state, and every change of state wakes the waiters.

The scheduler knows nothing of git, agents or runners: the engine gives it three callables.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .experiment import Pending
from .runners.base import Slot

# Lower runs first. Re-measures finish experiments already started; a person's work and the
# re-runs of interrupted experiments come before the agent's next proposal.
REMEASURE, PERSON, AGENT = 0, 1, 2

Execute = Callable[["WorkItem", Slot], Awaitable[bool]]  # True when it ran (counts)
Propose = Callable[[int], Awaitable[Pending]]  # never raises: a failure is a Pending too
Fits = Callable[["WorkItem", Slot], bool]
Blocked = Callable[[], str | None]  # why the agent may propose no more, or None

_sequence = itertools.count()


@dataclass
class WorkItem:
    pending: Pending
    priority: int
    counted: bool = True  # counts against `max_experiments`
    durable: int | None = None  # its row in the ledger's queue, deleted when recorded
    order: int = field(default_factory=lambda: next(_sequence))

    @property
    def from_agent(self) -> bool:
        return self.priority == AGENT


class Scheduler:
    def __init__(
        self,
        slots: list[Slot],
        *,
        execute: Execute,
        propose: Propose,
        fits: Fits,
        blocked: Blocked,
        pipeline: bool = True,
    ) -> None:
        self.slots = slots
        self._execute = execute
        self._propose = propose
        self._fits = fits
        self._blocked = blocked
        self.pipeline = pipeline
        self.items: list[WorkItem] = []
        self.claimed: list[WorkItem] = []  # taken by a slot, in the order taken, until done
        self._changed = asyncio.Event()
        self.stopping = False
        self.paused = False
        self.quota: int | None = None  # counted experiments this run may start
        self.started = 0
        self.in_flight = 0
        self.agent_in_flight = 0
        self.proposing = 0
        self.prepared = 0  # the agent's proposals waiting in the queue
        self.proposer_open = False
        self.proposals = 0  # proposals asked of the agent, ever (tells apart those made at once)
        self.proposer_message: str | None = None
        self._proposing: set[asyncio.Task[None]] = set()  # cancelled by stop: none waits

    # --- changes of state: each one wakes every waiter ---------------------------------------

    def _notify(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def put(self, item: WorkItem) -> None:
        self.items.append(item)
        self.items.sort(key=lambda i: (i.priority, i.order))
        if item.from_agent:
            self.prepared += 1
        self._notify()

    def stop(self) -> None:
        """Closes the queue, and cancels the proposals being made: a stop never waits for an
        agent (a model's answer, a CLI agent's minutes)."""
        self.stopping = True
        for task in self._proposing:
            task.cancel()
        self._notify()

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self._notify()

    def drop_agent_items(self) -> list[WorkItem]:
        """The agent's prepared proposals, taken out (the loop ends: they are not kept)."""
        dropped = [i for i in self.items if i.from_agent]
        self.items = [i for i in self.items if not i.from_agent]
        self.prepared = 0
        self._notify()
        return dropped

    # --- workers -----------------------------------------------------------------------------

    def _quota_allows(self, extra: int = 0) -> bool:
        return self.quota is None or self.started + extra < self.quota

    def _runnable(self, item: WorkItem) -> bool:
        return not item.counted or self._quota_allows()

    def _pick(self, slot: Slot) -> WorkItem | None:
        if self.paused or self.stopping:
            return None
        for item in self.items:
            if self._runnable(item) and self._fits(item, slot):
                return item
        return None

    def more_can_come(self) -> bool:
        """Whether waiting can still bring work: an item some slot can take, work in flight
        (a result may queue a re-measure), or a proposal the agent may still make."""
        if self.paused and not self.stopping:
            return True
        if self.stopping:
            return False
        if any(self._runnable(i) and any(self._fits(i, s) for s in self.slots) for i in self.items):
            return True
        return bool(self.in_flight or self.proposing or self._may_propose_more())

    def _may_propose_more(self) -> bool:
        return self.proposer_open and self._quota_allows(self.prepared + self.proposing)

    async def take(self, slot: Slot) -> WorkItem | None:
        """The next item for this slot, or None when the queue is closed."""
        while True:
            item = self._pick(slot)
            if item is not None:
                self.items.remove(item)
                self.claimed.append(item)
                self.in_flight += 1
                self.started += item.counted
                if item.from_agent:
                    self.prepared -= 1
                    self.agent_in_flight += 1
                self._notify()
                return item
            if not self.more_can_come():
                self._notify()
                return None
            await self._changed.wait()

    async def work(self, slot: Slot) -> None:
        while (item := await self.take(slot)) is not None:
            ran = False
            try:
                ran = await self._execute(item, slot)
            finally:
                self.claimed.remove(item)
                self.in_flight -= 1
                if item.from_agent:
                    self.agent_in_flight -= 1
                if not ran:
                    self.started -= item.counted  # dropped before it ran: not counted
                self._notify()

    # --- the proposer ------------------------------------------------------------------------

    def _ahead(self) -> int:
        """Proposals prepared or being made now. With pipelining the agent stays one proposal
        per slot ahead; without it, it waits for each result."""
        waiting = self.prepared + self.proposing
        return waiting if self.pipeline else waiting + self.agent_in_flight

    def _should_propose(self) -> bool:
        return (
            not self.stopping
            and not self.paused
            and self.proposer_open
            and self._ahead() < len(self.slots)
            and self._quota_allows(self.prepared + self.proposing)
        )

    async def propose_forever(self) -> None:
        """Keeps the queue stocked with the agent's proposals, as many made at once as there
        are free places ahead, until the quota, a cap or a stop closes it."""
        async with asyncio.TaskGroup() as proposals:
            while self.proposer_open and not self.stopping:
                if not self._should_propose():
                    if not self.more_can_come():
                        break
                    await self._changed.wait()
                    continue
                if (reason := self._blocked()) is not None:
                    if self.proposing:  # their cost counts before the verdict
                        await self._changed.wait()
                        continue
                    self.proposer_message = reason
                    break
                self.proposals += 1
                self.proposing += 1
                task = proposals.create_task(self._propose_one(self.proposals))
                self._proposing.add(task)
                task.add_done_callback(self._proposing.discard)
        self.proposer_open = False
        self._notify()

    async def _propose_one(self, number: int) -> None:
        try:
            pending = await self._propose(number)
        finally:
            self.proposing -= 1
            self._notify()
        if self.stopping or pending.proposal.final:
            return  # a final proposal closed the proposer (it says why): nothing to record
        self.put(WorkItem(pending, AGENT))
