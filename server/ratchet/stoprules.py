"""When the loop stops by itself: `[stop]` in ratchet.toml.

Each rule is a pure function of the loop's record (the ledger's light rows) and the config,
so it holds across restarts: a loop stopped by a rule stops again at once when restarted
unchanged, and goes on when the limit is raised. The engine asks after every finished
experiment and stops the loop with the one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import StopConfig
from .experiment import Experiment, Status

_FAILED = (Status.CRASHED, Status.TIMEOUT, Status.INVALID)
# What does not count as an experiment the agent made: a person's void, an interrupted run.
_NOT_COUNTED = (Status.VOIDED, Status.INTERRUPTED)


@dataclass(frozen=True)
class StopRules:
    stop: StopConfig
    lower_is_better: bool = True

    def check(self, experiments: Sequence[Experiment]) -> str | None:
        """Why the loop must stop now, in one line, or None."""
        finished = [e for e in experiments if e.status.is_final and e.status not in _NOT_COUNTED]
        rules: tuple[Callable[[list[Experiment]], str | None], ...] = (
            self._target,
            self._failures_in_row,
            self._no_keep,
            self._cost,
            self._gpu_hours,
        )
        for rule in rules:
            if reason := rule(finished):
                return reason
        return None

    def _no_keep(self, finished: list[Experiment]) -> str | None:
        limit = self.stop.no_keep_after
        if limit is None:
            return None
        since = 0
        for exp in reversed(finished):
            if exp.status is Status.KEPT:
                break
            since += 1
        if since < limit:
            return None
        return f"stopped: {since} experiments without a keep (stop.no_keep_after = {limit})"

    def _failures_in_row(self, finished: list[Experiment]) -> str | None:
        limit = self.stop.failures_in_row
        if limit is None:
            return None
        streak = 0
        for exp in reversed(finished):
            if exp.status not in _FAILED:
                break
            streak += 1
        if streak < limit:
            return None
        return (
            f"stopped: the last {streak} experiments crashed, timed out or were invalid; the "
            f"agent looks stuck (stop.failures_in_row = {limit})"
        )

    def _cost(self, finished: list[Experiment]) -> str | None:
        cap = self.stop.max_cost_usd
        spent = sum(e.cost_usd for e in finished)
        if cap is None or spent < cap:
            return None
        return f"stopped: the agent has spent ${spent:.2f} (stop.max_cost_usd = {cap:g})"

    def _gpu_hours(self, finished: list[Experiment]) -> str | None:
        cap = self.stop.max_gpu_hours
        hours = sum(e.run_s for e in finished) / 3600
        if cap is None or hours < cap:
            return None
        return f"stopped: experiments have run {hours:.2f} GPU-hours (stop.max_gpu_hours = {cap:g})"

    def _target(self, finished: list[Experiment]) -> str | None:
        target = self.stop.target
        if target is None:
            return None
        kept = [e for e in finished if e.status is Status.KEPT and e.metric is not None]
        if not kept:
            return None
        pick = min if self.lower_is_better else max
        best = pick(kept, key=lambda e: e.metric or 0.0)
        assert best.metric is not None
        reached = best.metric <= target if self.lower_is_better else best.metric >= target
        if not reached:
            return None
        return (
            f"stopped: exp {best.id} reached {best.metric:.6g}, the target "
            f"(stop.target = {target:g})"
        )


def stop_reason(
    experiments: Sequence[Experiment], stop: StopConfig, lower_is_better: bool = True
) -> str | None:
    """StopRules(stop, lower_is_better).check(experiments)."""
    return StopRules(stop, lower_is_better).check(experiments)
