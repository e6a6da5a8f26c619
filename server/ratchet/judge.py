"""Keep or discard: a candidate is kept only when it beats the best by more than the margin."""

from __future__ import annotations

from dataclasses import dataclass

from .experiment import Verdict


@dataclass(frozen=True)
class Judge:
    lower_is_better: bool
    min_delta: float = 0.0

    def improvement(self, candidate: float, best: float) -> float:
        """How much better the candidate is (positive = better), in the metric's units."""
        return best - candidate if self.lower_is_better else candidate - best

    def decide(self, candidate: float, best: float) -> Verdict:
        gain = self.improvement(candidate, best)
        delta = candidate - best
        if gain > self.min_delta:
            return Verdict(True, f"kept: {delta:+.6g} beats the best {best:.6g}")
        if gain > 0:
            return Verdict(False, f"discarded: {delta:+.6g} is within min_delta {self.min_delta:g}")
        return Verdict(False, f"discarded: {delta:+.6g}, not better than the best {best:.6g}")

    def gain_percent(self, value: float, baseline: float) -> float | None:
        if baseline == 0:
            return None
        return 100.0 * self.improvement(value, baseline) / abs(baseline)
