"""The portfolio's local and model arms: steps replayed from the history, an edge that halves
inwards, the parabola through two misses, the pattern along the last keeps, and a quadratic
model that follows a tilted valley."""

from __future__ import annotations

import math
import random

import pytest
from ratchet.agents.pattern import (
    explore_move,
    label,
    pattern_move,
    replay_steps,
    to_unit,
    vertex,
)
from ratchet.agents.space import Space, build_space
from ratchet.agents.surrogate import FIRST_RADIUS, model_move, trust_radius
from ratchet.experiment import HistoryEntry

SOURCE = "LR = 0.01\nA = 1.5\nB = 2.0\n"


def entry(n: int, status: str, description: str, metric: float | None = 1.0) -> HistoryEntry:
    return HistoryEntry(n, status, metric, None, description)


def unit(space: Space, name: str, value: float) -> float:
    dim = next(d for d in space.dimensions if d.name == name)
    return to_unit(dim, value)


def test_the_label_is_the_agents_own_not_the_judges_reason() -> None:
    described = entry(1, "discarded", "LR 0.01 → 0.02 (local parabola) (discarded: +0.1 (x))")
    assert label(described) == "local parabola"
    assert label(entry(2, "kept", "LR 0.01 → 0.02 (kept: better)")) == ""


def test_a_kept_step_doubles_a_miss_turns_and_a_miss_both_ways_halves() -> None:
    space = build_space(SOURCE, {})
    up = f"LR 0.01 → {0.01 * 1.5:.4g} (local)"
    kept = replay_steps(space, [entry(0, "kept", "baseline", 1.0), entry(1, "kept", up, 0.9)])
    move = unit(space, "LR", 0.015) - unit(space, "LR", 0.01)
    assert kept["LR"].direction == 1 and kept["LR"].size == pytest.approx(2 * move, rel=1e-3)
    missed = replay_steps(space, [entry(0, "kept", "baseline"), entry(1, "discarded", up, 1.2)])
    assert missed["LR"].direction == -1  # the other way next, at the same size
    assert missed["LR"].size == pytest.approx(move, rel=1e-3)
    down = f"LR 0.01 → {0.01 / 1.5:.4g} (local)"
    both = [entry(0, "kept", "baseline"), entry(1, "discarded", up, 1.2)]
    both.append(entry(2, "discarded", down, 1.3))
    halved = replay_steps(space, both)["LR"]
    assert halved.direction == 0 and halved.size == pytest.approx(move / 2, rel=2e-2)
    assert halved.vertex is not None and -move < halved.vertex < move


def test_the_parabola_through_two_misses_and_the_best_is_tried_next() -> None:
    # f(u) = (u - 0.3)^2 around the best at u = 0.5: misses at 0.6 and 0.4, minimum at 0.3.
    def f(x: float) -> float:
        return (x - 0.3) ** 2

    assert vertex((0.5, f(0.5)), (0.6, f(0.6)), (0.4, f(0.4))) == pytest.approx(0.3)
    assert vertex((0.0, 0.0), (0.1, -1.0), (-0.1, -1.0)) is None  # a cap has no minimum
    space = build_space(SOURCE, {})
    lr = next(d for d in space.dimensions if d.name == "LR")
    base = math.log(0.01 / lr.low) / math.log(lr.high / lr.low)
    up, down = 0.01 * (lr.high / lr.low) ** 0.1, 0.01 * (lr.high / lr.low) ** -0.1
    history = [
        entry(0, "kept", "baseline", f(base)),
        entry(1, "discarded", f"LR 0.01 → {up:.4g} (local)", f(base + 0.1)),
        entry(2, "discarded", f"LR 0.01 → {down:.4g} (local)", f(base - 0.1)),
    ]
    steps = replay_steps(space, history)
    only_lr = {"LR": steps["LR"]}
    values, how = explore_move(space, only_lr, {}, random.Random(0))
    assert how == "local parabola" and values is not None
    lr_value = values["LR"]
    assert isinstance(lr_value, float)
    assert to_unit(lr, lr_value) == pytest.approx(0.3, abs=2e-3)


def test_a_constant_at_its_bound_halves_its_step_inwards_instead_of_repeating_it() -> None:
    # LR at the top of its range; the last step down missed. Up is blocked by the bound, so
    # that counts as a miss too: the next step goes down at half the size, not the same one.
    space = build_space(SOURCE, {})
    lr = next(d for d in space.dimensions if d.name == "LR")
    top = f"LR = {lr.high:.4g}\nA = 1.5\nB = 2.0\n"
    at_top = Space(build_space(top, {}).literals, space.dimensions)
    down = lr.high * (lr.low / lr.high) ** 0.2
    history = [
        entry(0, "kept", "baseline", 1.0),
        entry(1, "discarded", f"LR {lr.high:.4g} → {down:.4g} (local)", 2.0),
    ]
    steps = {"LR": replay_steps(at_top, history)["LR"]}
    values, _ = explore_move(at_top, steps, {}, random.Random(0))
    assert values is not None
    new = values["LR"]
    assert isinstance(new, float)
    assert to_unit(lr, new) == pytest.approx(1 - 0.1, abs=2e-3)


def test_after_keeps_of_two_constants_the_pattern_moves_both_again() -> None:
    space = build_space("LR = 0.01\nA = 1.5\nB = 2.0\n", {})
    history = [
        entry(0, "kept", "baseline", 1.0),
        entry(1, "kept", "A 1.6 → 1.5 (local)", 0.9),
        entry(2, "kept", "B 2.2 → 2.0 (local)", 0.8),
    ]
    moved = [pattern_move(space, history, {}, random.Random(seed)) for seed in range(20)]
    both = [v for v in moved if v is not None]
    assert both, "a pattern along two constants' keeps"
    for values in both:
        a, b = values["A"], values["B"]
        assert isinstance(a, float) and isinstance(b, float)
        assert a < 1.5 and b < 2.0 and values["LR"] == 0.01


def test_the_model_follows_a_tilted_valley_that_single_steps_cannot() -> None:
    # f = (a + b - 1)^2 + 30 (a - b)^2 in units of the ranges, started on the valley floor
    # away from the minimum at (0.5, 0.5): moving a or b alone only climbs its walls.
    source = "A = 0.4\nB = 0.4\n"
    space = build_space(source, {})
    dims = {d.name: d for d in space.dimensions}

    def f(a: float, b: float) -> float:
        ua, ub = to_unit(dims["A"], a), to_unit(dims["B"], b)
        return (ua + ub - 1) ** 2 + 30 * (ua - ub) ** 2

    rng = random.Random(3)
    points = [({"A": 0.4, "B": 0.4}, f(0.4, 0.4))]
    for _ in range(12):
        a, b = 0.4 * (1 + rng.uniform(-0.1, 0.1)), 0.4 * (1 + rng.uniform(-0.1, 0.1))
        points.append(({"A": a, "B": b}, f(a, b)))
    history = [entry(0, "kept", "baseline", f(0.4, 0.4))]
    values = model_move(space, points, history, {}, random.Random(0))
    assert values is not None
    a, b = values["A"], values["B"]
    assert isinstance(a, float) and isinstance(b, float)
    assert f(a, b) < 0.5 * f(0.4, 0.4)  # along the valley, both together
    assert model_move(space, points[:3], history, {}, random.Random(0)) is None  # too few


def test_the_trust_radius_doubles_after_a_kept_model_move_and_halves_after_a_miss() -> None:
    kept = [entry(1, "kept", "A 1 → 2 (model)")]
    assert trust_radius(kept) == pytest.approx(2 * FIRST_RADIUS)
    missed = [entry(1, "discarded", "A 1 → 2 (model) (discarded: worse)")]
    assert trust_radius(missed) < FIRST_RADIUS
    assert trust_radius([entry(1, "discarded", "A 1 → 2 (local)")]) == FIRST_RADIUS
