"""When the loop stops by itself: `[stop]` in ratchet.toml.

Each rule is a pure function of the loop's record (the ledger's light rows) and the config,
so it holds across restarts: a loop stopped by a rule stops again at once when restarted
unchanged, and goes on when the limit is raised. The engine asks after every finished
experiment and stops the loop with the one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .config import StopConfig
from .experiment import Experiment, Status

_FAILED = (Status.CRASHED, Status.TIMEOUT, Status.INVALID)
# What does not count as an experiment the agent made: a person's void, an interrupted run, a
# run lost to its host (measured again, as the experiment that counts).
_NOT_COUNTED = (Status.VOIDED, Status.INTERRUPTED, Status.LOST)


@dataclass(frozen=True)
class Totals:
    """What the whole record adds up to (the History keeps it current per experiment)."""

    cost_usd: float
    run_s: float
    best: Experiment | None  # the last keep: the ratchet keeps only what beats the best


@dataclass(frozen=True)
class StopRules:
    stop: StopConfig
    lower_is_better: bool = True

    def check(self, experiments: Sequence[Experiment], totals: Totals | None = None) -> str | None:
        """Why the loop must stop now, in one line, or None. Reads the record from its end
        and no further than a rule's limit; `totals` saves a pass over the whole record."""
        if totals is None:
            counted = list(_counted(experiments))
            kept = (e for e in counted if e.status is Status.KEPT and e.metric is not None)
            totals = Totals(
                sum(e.cost_usd for e in counted), sum(e.run_s for e in counted), next(kept, None)
            )
        for reason in (
            self._target(totals.best),
            self._failures_in_row(experiments),
            self._no_keep(experiments),
            self._cost(totals),
            self._gpu_hours(totals),
        ):
            if reason:
                return reason
        return None

    def _no_keep(self, experiments: Sequence[Experiment]) -> str | None:
        limit = self.stop.no_keep_after
        if limit is None:
            return None
        since = _streak(experiments, lambda e: e.status is not Status.KEPT, limit)
        if since < limit:
            return None
        return f"stopped: {since} experiments without a keep (stop.no_keep_after = {limit})"

    def _failures_in_row(self, experiments: Sequence[Experiment]) -> str | None:
        limit = self.stop.failures_in_row
        if limit is None:
            return None
        streak = _streak(experiments, lambda e: e.status in _FAILED, limit)
        if streak < limit:
            return None
        return (
            f"stopped: the last {streak} experiments crashed, timed out or were invalid; the "
            f"agent looks stuck (stop.failures_in_row = {limit})"
        )

    def _cost(self, spent: Totals) -> str | None:
        cap = self.stop.max_cost_usd
        if cap is None or spent.cost_usd < cap:
            return None
        return f"stopped: the agent has spent ${spent.cost_usd:.2f} (stop.max_cost_usd = {cap:g})"

    def _gpu_hours(self, spent: Totals) -> str | None:
        cap = self.stop.max_gpu_hours
        hours = spent.run_s / 3600
        if cap is None or hours < cap:
            return None
        return f"stopped: experiments have run {hours:.2f} GPU-hours (stop.max_gpu_hours = {cap:g})"

    def _target(self, best: Experiment | None) -> str | None:
        target = self.stop.target
        if target is None or best is None or best.metric is None:
            return None
        reached = best.metric <= target if self.lower_is_better else best.metric >= target
        if not reached:
            return None
        return (
            f"stopped: exp {best.id} reached {best.metric:.6g}, the target "
            f"(stop.target = {target:g})"
        )


def _counted(experiments: Sequence[Experiment]) -> Iterator[Experiment]:
    """The finished experiments the agent made, newest first."""
    for exp in reversed(experiments):
        if exp.status.is_final and exp.status not in _NOT_COUNTED:
            yield exp


def _streak(
    experiments: Sequence[Experiment], holds: Callable[[Experiment], bool], limit: int
) -> int:
    """How many of the newest counted experiments in a row `holds` for, up to `limit`."""
    streak = 0
    for exp in _counted(experiments):
        if not holds(exp) or streak >= limit:
            break
        streak += 1
    return streak


def stop_reason(
    experiments: Sequence[Experiment], stop: StopConfig, lower_is_better: bool = True
) -> str | None:
    """StopRules(stop, lower_is_better).check(experiments)."""
    return StopRules(stop, lower_is_better).check(experiments)
