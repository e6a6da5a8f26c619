"""The portfolio's model arm: a quadratic fitted to what was measured near the best, and its
minimum inside a trust region.

Hyperparameters near their optimum mostly sit in a bowl on their own scales (a rate on its
logarithm), often a tilted or stretched one (the best rate grows with the batch): a quadratic
in every constant and every pair captures that, where steps of one constant at a time crawl
along the valley. The fit is least squares over the measured points nearest the best (a
little ridge while there are fewer points than terms), in units of each constant's range, so
noise averages out instead of being chased. The proposal is the model's lowest point among
random points of a box around the best, each moving at most `few` constants (a proposal a
person can read: a tilted valley needs two), whose half-width (the trust radius) doubles after the
model's proposal was kept and halves after a miss, replayed from the history.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

import numpy as np

from ..experiment import HistoryEntry
from .pattern import OUTCOMES, beyond_a_crash, from_unit, label, numeric, to_unit
from .space import Space, Value

FIRST_RADIUS = 0.15
LARGEST_RADIUS = 0.5
SMALLEST_RADIUS = 0.05
_CANDIDATES = 2000
_RIDGE = 1e-6


def trust_radius(history: Iterable[HistoryEntry]) -> float:
    radius = FIRST_RADIUS
    for entry in history:
        if label(entry) != "model" or entry.status not in OUTCOMES:
            continue
        radius = min(2 * radius, LARGEST_RADIUS) if entry.status == "kept" else radius / 2
    return max(radius, SMALLEST_RADIUS)


def features(x: np.ndarray) -> np.ndarray:
    """1, each coordinate, and each product of two (squares included), per row."""
    n = x.shape[1]
    columns = [np.ones(len(x)), *x.T]
    columns += [x[:, i] * x[:, j] for i in range(n) for j in range(i, n)]
    return np.stack(columns, axis=1)


def model_move(
    space: Space,
    points: Sequence[tuple[dict[str, Value], float]],
    history: Sequence[HistoryEntry],
    avoid: dict[str, list[tuple[Value, Value]]],
    rng: random.Random,
    lower_is_better: bool = True,
    few: int | None = None,
) -> dict[str, Value] | None:
    """The best's values moved to the fitted quadratic's minimum in the trust region; None
    while too few points are known, or when the model sees nothing better nearby."""
    dims = [d for d in space.dimensions if numeric(d)]
    n = len(dims)
    if n == 0 or len(points) < n + 2:
        return None
    best = space.values()
    centre = np.array([to_unit(d, best[d.name]) for d in dims])
    rows, targets = [], []
    for params, value in points:
        row = [to_unit(d, params.get(d.name, best[d.name])) for d in dims]
        rows.append(row)
        targets.append(value if lower_is_better else -value)
    x = np.array(rows) - centre
    y = np.array(targets)
    terms = 1 + n + n * (n + 1) // 2
    nearest = np.argsort(np.linalg.norm(x, axis=1))[: max(2 * terms, n + 2)]
    x, y = x[nearest], y[nearest]
    scale = float(np.std(y)) or 1.0
    a = features(x)
    ridge = _RIDGE if len(x) >= terms else 1e-2
    penalty = ridge * np.eye(terms)
    penalty[0, 0] = 0.0
    coefficients = np.linalg.solve(a.T @ a + penalty, a.T @ (y / scale))
    radius = trust_radius(history)
    generator = np.random.default_rng(rng.getrandbits(32))
    low, high = np.maximum(-radius, -centre), np.minimum(radius, 1 - centre)
    candidates = generator.uniform(low, high, size=(_CANDIDATES, n))
    if few is not None and few < n:  # all but `few` coordinates of each candidate at the best
        keep = np.argsort(generator.random((_CANDIDATES, n)), axis=1)[:, :few]
        mask = np.zeros((_CANDIDATES, n), dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        candidates = np.where(mask, candidates, 0.0)
    predicted = features(candidates) @ coefficients
    here = float(coefficients[0])  # the model at the best itself (the centre)
    for index in np.argsort(predicted)[:20]:
        if predicted[index] >= here:
            return None
        values = dict(best)
        for dim, unit in zip(dims, candidates[index] + centre, strict=True):
            values[dim.name] = from_unit(dim, float(unit))
        changed = [d.name for d in dims if values[d.name] != best[d.name]]
        crashes = any(
            beyond_a_crash(best[name], values[name], avoid.get(name, [])) for name in changed
        )
        if changed and not crashes:
            return values
    return None
