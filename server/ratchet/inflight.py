"""What runs now: each run in flight, as status views show it and as a stop reaches it, and
the experiments a person cancelled (never run again by themselves)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .runners.base import RunControl


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

    def shown(self, now: float) -> dict[str, object]:
        """As status views show it."""
        return {
            "id": self.id,
            "description": self.description,
            "slot": self.slot,
            "elapsed": round(now - self.started, 1),
            "budget": self.budget_s,
            "lastLine": self.last_line,
        }


class InFlight:
    def __init__(self) -> None:
        self.runs: dict[tuple[int, int], Running] = {}  # (experiment, run) in flight
        self.cancelled: set[int] = set()  # experiments a person stopped: not run again

    @contextmanager
    def run(self, key: tuple[int, int], running: Running) -> Iterator[Running]:
        """One run, seen and reachable while it is in flight."""
        self.runs[key] = running
        try:
            yield running
        finally:
            self.runs.pop(key, None)

    def shown(self, now: float) -> list[dict[str, object]]:
        return [running.shown(now) for running in self.runs.values()]

    def cancel(self, experiment: int, reason: str) -> bool:
        """Stops one experiment's runs on purpose: it ends `cancelled`, never run again."""
        runs = [r for (exp_id, _), r in self.runs.items() if exp_id == experiment]
        if runs:
            self.cancelled.add(experiment)
        for running in runs:
            running.control.stop(reason)
        return bool(runs)

    def stop_all(self, reason: str) -> None:
        for running in self.runs.values():
            running.control.stop(reason)

    def clear(self) -> None:
        """The loop wound down: nothing of it is in flight."""
        self.runs.clear()
