"""Typed events the engine emits. The CLI renders them; the language server translates them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .experiment import Experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class ExperimentProposed(Event):
    id: int
    description: str
    diff: str
    old_text: str
    new_text: str
    awaiting_review: bool


@dataclass(frozen=True)
class ExperimentStarted(Event):
    id: int
    description: str
    budget_s: float
    slot: str


@dataclass(frozen=True)
class OutputLine(Event):
    id: int
    line: str
    elapsed_s: float


@dataclass(frozen=True)
class ExperimentFinished(Event):
    """Any final state: kept, discarded, crashed, timeout, invalid, voided, interrupted..."""

    experiment: Experiment
    best: float | None
    baseline: float | None
    new_best: bool


@dataclass(frozen=True)
class HoldoutMeasured(Event):
    """A new best's holdout, measured after its verdict was recorded: for a person's views."""

    id: int
    holdout: float | None


@dataclass(frozen=True)
class LoopStateChanged(Event):
    state: str  # idle | running | paused | awaiting_review | stopping | error
    message: str = ""


@dataclass(frozen=True)
class AgentActivity(Event):
    """A line of what the agent is doing (for a live trace view)."""

    id: int
    text: str


@dataclass(frozen=True)
class LockedFileChanged(Event):
    path: str


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers; one failing subscriber never stops the loop."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("an event subscriber failed on %s", type(event).__name__)
