"""A metric's run-to-run noise: the pooled standard deviation of experiments measured more
than once, robust to one experiment whose level shifted between its runs."""

from __future__ import annotations

import math

from .track import mean

CAP_FREEDOM = 4  # the fewest degrees of freedom of the others that cap one group


def _cap(freedom: int) -> float:
    """The 99.5% quantile of chi-square over its degrees of freedom (Wilson-Hilferty): a
    group's variance above this many times the others' is not noise but a shift."""
    k = 2 / (9 * freedom)
    return (1 - k + 2.576 * math.sqrt(k)) ** 3


def group_spread(runs: list[float]) -> tuple[float, int] | None:
    """One experiment's sum of squared deviations and degrees of freedom (None: one run)."""
    if len(runs) < 2:
        return None
    centre = mean(runs)
    return sum((v - centre) ** 2 for v in runs), len(runs) - 1


def estimate_noise(groups: list[list[float]]) -> float | None:
    """Pooled run-to-run standard deviation over repeated measurements; None if nothing was
    measured twice. Each group's variance is capped at the 99.5% chance level of the pooled
    variance of the other groups, so one group with a shift inside it cannot swamp it."""
    stats = [spread for runs in groups if (spread := group_spread(runs)) is not None]
    scale = max((abs(v) for runs in groups for v in runs), default=0.0)
    return pooled_noise(stats, scale)


def pooled_noise(stats: list[tuple[float, int]], scale: float) -> float | None:
    """estimate_noise from each group's spread (group_spread) and the metric's scale."""
    if not stats:
        return None
    total_squares = sum(squares for squares, _ in stats)
    total_freedom = sum(freedom for _, freedom in stats)
    squares_kept = 0.0
    for squares, freedom in stats:
        others = total_freedom - freedom
        # Others that vary, measured with a few degrees of freedom, set a cap (two groups
        # alone would each cap the other: one close pair would read the noise as none).
        if others >= CAP_FREEDOM and total_squares > squares:
            # Leave-one-out: the others' variance sets the cap for this group.
            cap = _cap(freedom) * (total_squares - squares) / others * freedom
            squares = min(squares, cap)
        squares_kept += squares
    noise = math.sqrt(squares_kept / total_freedom)
    return 0.0 if noise <= 1e-9 * scale else noise  # a deterministic metric's rounding
