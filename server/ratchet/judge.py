"""Keep, discard, or measure again: a candidate is kept only when it beats the best by more
than the noise.

The noise is the run-to-run spread of the metric, estimated from the baseline's repeated
runs (and every later repeat). A candidate is measured once; if it looks no better it is
discarded at once, else it is run again — up to `max_runs` — and kept only when the mean of
its runs beats the mean of the best's runs by more than max(min_delta, z x standard error).
With no noise estimate (one baseline run) or a deterministic metric, one run decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Action = Literal["keep", "discard", "rerun"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str

    @property
    def keep(self) -> bool:
        return self.action == "keep"


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def estimate_noise(groups: list[list[float]]) -> float | None:
    """Pooled run-to-run standard deviation over repeated measurements; None if nothing was
    measured twice."""
    squares, freedom = 0.0, 0
    for runs in groups:
        if len(runs) >= 2:
            centre = mean(runs)
            squares += sum((v - centre) ** 2 for v in runs)
            freedom += len(runs) - 1
    if freedom == 0:
        return None
    noise = math.sqrt(squares / freedom)
    scale = max(abs(v) for runs in groups for v in runs)
    return 0.0 if noise <= 1e-9 * scale else noise  # a deterministic metric's rounding


@dataclass(frozen=True)
class Judge:
    lower_is_better: bool
    min_delta: float = 0.0
    z: float = 1.0
    max_runs: int = 5
    screen: float = 0.25
    review_above: float | None = None  # a gain over the best beyond this many % waits for a person

    def improvement(self, candidate: float, best: float) -> float:
        """How much better the candidate is (positive = better), in the metric's units."""
        return best - candidate if self.lower_is_better else candidate - best

    def assess(self, candidate: list[float], best: list[float], noise: float | None) -> Decision:
        """The next step for a candidate with these runs against the best's runs."""
        value, reference = mean(candidate), mean(best)
        gain = self.improvement(value, reference)
        delta = value - reference
        if not noise or noise <= 1e-9 * abs(reference):
            # Unknown, or a deterministic metric (its spread is rounding): one run decides.
            if gain > self.min_delta:
                return Decision("keep", f"kept: {delta:+.6g} beats the best {reference:.6g}")
            if gain > 0:
                return Decision(
                    "discard", f"discarded: {delta:+.6g} is within min_delta {self.min_delta:g}"
                )
            return Decision(
                "discard", f"discarded: {delta:+.6g}, not better than the best {reference:.6g}"
            )
        error = noise * math.sqrt(1 / len(candidate) + 1 / len(best))
        runs = f"{len(candidate)} run{'s' if len(candidate) > 1 else ''}"
        if gain <= 0:
            return Decision(
                "discard",
                f"discarded: {delta:+.6g} over {runs}, not better than the best {reference:.6g}",
            )
        if gain <= self.screen * error:
            return Decision(
                "discard",
                f"discarded: {delta:+.6g} over {runs}, only "
                f"{gain / noise:.1f} x noise ({noise:.3g})",
            )
        threshold = max(self.min_delta, self.z * error)
        if len(candidate) < self.max_runs:
            return Decision("rerun", f"promising: {delta:+.6g} after {runs}; measuring again")
        if gain > threshold:
            return Decision(
                "keep",
                f"kept: {delta:+.6g} over {runs}, {gain / noise:.1f} x noise "
                f"({noise:.3g}), beyond {threshold:.3g}",
            )
        return Decision(
            "discard",
            f"discarded: {delta:+.6g} over {runs} is within the noise "
            f"band {threshold:.3g} ({gain / noise:.1f} x noise {noise:.3g})",
        )

    def needs_review(self, value: float, best: float) -> str | None:
        """Why a keep this large should wait for a person, or None."""
        if self.review_above is None:
            return None
        gain = self.gain_percent(value, best)
        if gain is not None and gain > self.review_above:
            return (
                f"held for review: a {gain:.1f}% gain is beyond review_above "
                f"{self.review_above:g}%; apply it by hand if it is real"
            )
        return None

    def gain_percent(self, value: float, baseline: float) -> float | None:
        if baseline == 0:
            return None
        return 100.0 * self.improvement(value, baseline) / abs(baseline)
