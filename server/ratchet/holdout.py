"""`[metric] holdout` on each new best (the baseline too), once, after its verdict is
recorded: its number is the experiment's `holdout` column, which `log`, `show`, the report and
`finalize` show a person. It selects nothing and reaches no agent: not the history, the
summary, a log tail or a trace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from .config import Config
from .errors import RatchetError
from .events import EventBus, HoldoutMeasured
from .experiment import Experiment, Status
from .history import History
from .inflight import InFlight, Running
from .measure import Measurer
from .runners.base import RunControl, Slot
from .runners.processes import LOOP_VARIABLE, SEED_VARIABLE
from .workspace import Workspace


class Holdout:
    def __init__(
        self,
        *,
        config: Config,
        history: History,
        workspace: Workspace,
        measurer: Measurer,
        in_flight: InFlight,
        logs: Path,
        loop_id: str,
        bus: EventBus,
        say: Callable[[str], None],
    ) -> None:
        self.config = config
        self.history = history
        self.workspace = workspace
        self.measurer = measurer
        self.in_flight = in_flight
        self.logs = logs
        self.loop_id = loop_id
        self.bus = bus
        self.say = say

    async def measure(self, exp: Experiment, slot: Slot) -> None:
        """The holdout of a kept experiment, where the loop has one; its number recorded."""
        if not self.config.metric.holdout or exp.commit is None or exp.status is not Status.KEPT:
            return
        control = RunControl()
        budget = self.config.loop.budget_s
        key = (exp.id, -1)  # stop reaches it like a run; no event tells an adapter about it
        running = Running(
            exp.id, f"holdout of exp {exp.id}", slot.name, budget, time.monotonic(), control
        )
        log_path = self.logs / f"{exp.id}.log"
        editable = self.config.loop.editable
        with self.in_flight.run(key, running):
            try:
                text = await asyncio.to_thread(self.workspace.read, exp.commit, editable)
                value = await self.measurer.holdout(
                    experiment=exp.id,
                    commit=exp.commit,
                    slot=slot,
                    text=text,
                    log_path=log_path,
                    control=control,
                    env={LOOP_VARIABLE: self.loop_id, SEED_VARIABLE: "0"},
                )
            except RatchetError:
                raise
            except Exception as error:  # the holdout never ends the loop
                problem = f"{type(error).__name__}: {error}"
                self.say(f"the holdout of exp {exp.id} could not run: {problem}")
                value = None
        if value is None and not control.stopped.is_set():
            self.say(
                f"the holdout of exp {exp.id} gave no number; its log: "
                f"{log_path.with_suffix('.holdout.log')}"
            )
        exp.holdout = value
        await asyncio.to_thread(self.history.set_holdout, exp.id, value)
        self.bus.emit(HoldoutMeasured(exp.id, value))  # an attached editor reads the row again
