"""The baseline: exp 0, measured before anything is judged; and a new one when the loop's
hardware or rules change, said once and run first, rather than waiting for hardware that is
not there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .config import Config
from .experiment import Experiment, Pending, Proposal, Status
from .history import History
from .runners.base import Slot
from .slots import Slots
from .workspace import Workspace

# One experiment, guarded, measured, judged and recorded (Trial.experiment).
RunExperiment = Callable[[Pending, Slot, list[Slot]], Awaitable[Experiment]]


class BaselinesNeeds(Protocol):
    """What the baseline needs of the engine that drives it."""

    def say(self, message: str) -> None: ...


@dataclass(frozen=True)
class Failed:
    """A baseline gave no metric: nothing can be judged without it, so the loop stops."""

    error: str  # said as the loop's error; "" when it was stopped (interrupted, cancelled)


class Baselines:
    def __init__(
        self,
        engine: BaselinesNeeds,
        *,
        config: Config,
        history: History,
        workspace: Workspace,
        slots: Slots,
    ) -> None:
        self.engine = engine
        self.config = config
        self.history = history
        self.workspace = workspace
        self.slots = slots
        self.again = False  # a baseline is being measured again
        # Set but while a baseline is measured: nothing is judged before it is known.
        self.ready = asyncio.Event()
        self.ready.set()

    async def first(
        self, experiment: RunExperiment, slots: list[Slot], exp_id: int
    ) -> Failed | None:
        """Exp 0, the unmodified file, measured `baseline_runs` times (in parallel on the
        slots it was given). Agent experiments may run meanwhile; their verdicts wait for it."""
        try:
            pending = await self.pending("baseline", exp_id)
            exp = await experiment(pending, slots[0], slots[1:])
        finally:
            self.ready.set()
        if exp.status is Status.KEPT:
            return None
        if exp.status in (Status.INTERRUPTED, Status.CANCELLED):
            return Failed("")
        return Failed(
            f"the baseline (exp {exp.id}) did not give a metric: {exp.reason}. Fix the "
            "command or the file, commit, then `ratchet forget` this loop and run again "
            "(or run with a new --tag)."
        )

    async def pending(self, description: str, exp_id: int | None = None) -> Pending:
        tip = self.history.tip
        text = await asyncio.to_thread(self.workspace.read, tip, self.config.loop.editable)
        proposal = Proposal(edits={}, description=description, source="baseline")
        return Pending(proposal, tip, text, reserved_id=exp_id)

    async def measure_again(self, why: str) -> Pending | None:
        """The baseline measured again, on the hardware present or under new rules: said once,
        and run before anything else is judged. Returns it, for the caller to queue first
        (None: it is already on its way)."""
        if self.again:
            return None
        self.again = True
        here = self.slots.any_hardware()
        self.engine.say(
            f"{why}: the baseline is measured again on {machine(here)} before anything else"
        )
        self.ready.clear()
        return await self.pending("baseline, measured again: " + why)

    async def done(self, exp: Experiment) -> Failed | None:
        """A baseline ended. Kept: its hardware is the loop's reference, part of its record.
        Measured again and failed: returned, for the loop to stop and say why."""
        was_again = self.again
        self.again = False
        failed = None
        if exp.status is Status.KEPT:
            ledger, tag = self.history.ledger, self.history.tag
            await asyncio.to_thread(ledger.set_loop, tag, hardware=exp.hardware)
        elif was_again and exp.status not in (Status.INTERRUPTED, Status.CANCELLED):
            failed = Failed(f"measuring the baseline again (exp {exp.id}) failed: {exp.reason}")
        self.ready.set()
        return failed


def machine(hardware: dict[str, Any]) -> str:
    return str(hardware.get("gpu") or hardware.get("cpu") or "this machine")
