"""The portfolio's local arm: a pattern search around the best, each constant on its own scale.

Steps are measured in units of a constant's range (of its logarithm, for a log-scale one), so
a rate and a width move alike. Each constant's step is replayed from the history of local
moves that changed it alone (the agent keeps no state of its own, so a resumed loop goes on
where it was): a kept move doubles the step and keeps its direction; a miss tries the other
direction at the same step; a miss both ways halves it, and the minimum of the parabola
through those two misses and the best is tried next (successive parabolic interpolation). A
way blocked by the range's bound or by a value that crashed counts as a miss. A constant whose
step has shrunk below its resolution has converged and is left alone.

After each keep, the next local proposal is a pattern move (Hooke and Jeeves): the best plus
the displacement of its last keeps together. Where the way down runs across two constants at
once (a valley along A + B), steps of one constant at a time crawl and the pattern follows it;
once every constant has converged alone, pairs are moved together to find such a valley.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..experiment import HistoryEntry
from .space import Dimension, Space, Value, parse_changes

FIRST_STEP = 0.1  # a tenth of the range: about x2 on a rate's default log range, like mutate
LARGEST_STEP = 0.4
RESOLUTION = 0.004  # a float's step below this share of its range: converged
# What a move earned: kept, or a miss (an interrupted or voided run says nothing of the move).
OUTCOMES = ("kept", "discarded", "crashed", "timeout", "invalid", "aborted")
_FAILED = ("crashed", "timeout", "invalid")


@dataclass
class Step:
    size: float = FIRST_STEP
    direction: int = 0  # +1 or -1 to try next; 0: either
    missed: int = 0  # the direction missed at this size: bit 1 up, bit 2 down
    # the misses each way around the current best, (move, metric); after both, the minimum
    # of the parabola through them and the best is tried next (successive interpolation)
    probes: dict[int, tuple[float, float]] = field(default_factory=dict)
    vertex: float | None = None


def numeric(dim: Dimension) -> bool:
    return dim.kind != "choice" and dim.high > dim.low


def to_unit(dim: Dimension, value: Value) -> float:
    """Where the value lies in its range: 0 at low, 1 at high (on the log scale if log)."""
    assert not isinstance(value, bool | str)
    if dim.log and dim.low > 0 and value > 0:
        return math.log(value / dim.low) / math.log(dim.high / dim.low)
    return (value - dim.low) / (dim.high - dim.low)


def from_unit(dim: Dimension, unit: float) -> Value:
    unit = min(max(unit, 0.0), 1.0)
    if dim.log and dim.low > 0:
        value = dim.low * (dim.high / dim.low) ** unit
    else:
        value = dim.low + unit * (dim.high - dim.low)
    if dim.step:
        value = dim.low + round((value - dim.low) / dim.step) * dim.step
    if dim.kind == "int":
        return int(min(max(round(value), math.ceil(dim.low)), math.floor(dim.high)))
    return min(max(float(f"{value:.4g}"), dim.low), dim.high)


_LABEL = re.compile(r" \((local pattern|local parabola|local|model|tpe)\)")


def label(entry: HistoryEntry) -> str:
    """What proposed an experiment (`local`, `local pattern`, `model`, `tpe`...), from the
    description the portfolio wrote (the history adds the judge's reason after it)."""
    found = _LABEL.search(entry.description)
    return found.group(1) if found else ""


def unit_moves(space: Space, entry: HistoryEntry) -> dict[str, float]:
    """An experiment's changes in units of each constant's range."""
    dims = {d.name: d for d in space.dimensions if numeric(d)}
    moves = {}
    for name, (old, new) in parse_changes(entry.description).items():
        dim = dims.get(name)
        if dim is None or isinstance(old, bool | str) or isinstance(new, bool | str):
            continue
        if dim.log and (old <= 0 or new <= 0):
            continue
        moves[name] = to_unit(dim, new) - to_unit(dim, old)
    return moves


def replay_steps(
    space: Space, history: Iterable[HistoryEntry], lower_is_better: bool = True
) -> dict[str, Step]:
    """Each numeric constant's next step, from the local moves that changed it alone."""
    steps = {d.name: Step() for d in space.dimensions if numeric(d)}
    sign_of_goal = 1.0 if lower_is_better else -1.0
    base: float | None = None  # the best's metric when the moves below were made
    for entry in history:
        if entry.status not in OUTCOMES:
            continue
        if entry.status == "kept" and entry.metric is not None:
            for step in steps.values():
                step.probes = {}  # measured around another best: no longer comparable
        moves = unit_moves(space, entry)
        if len(moves) == 1 and label(entry).startswith("local") and next(iter(moves.values())):
            [(name, move)] = moves.items()
            _replay(steps[name], move, entry, base, sign_of_goal)
        elif entry.status == "kept":
            for name, move in moves.items():  # moved with others: not converged where it is now
                step = steps[name]
                step.size, step.direction, step.missed = max(step.size, abs(move)), 0, 0
        if entry.status == "kept" and entry.metric is not None:
            base = entry.metric * sign_of_goal
    return steps


def _replay(step: Step, move: float, entry: HistoryEntry, base: float | None, goal: float) -> None:
    sign = 1 if move > 0 else -1
    step.vertex = None
    if entry.status == "kept" and label(entry) == "local parabola":
        step.size, step.direction, step.missed = abs(move) / 2, 0, 0  # at the minimum found
        return
    if entry.status == "kept":
        step.size, step.direction, step.missed = min(2 * abs(move), LARGEST_STEP), sign, 0
        return
    if base is not None and entry.metric is not None:
        step.probes[sign] = (move, entry.metric * goal)
    if not step.missed & _bit(-sign):  # the other way is untried at this size: try it next
        step.size, step.direction, step.missed = abs(move), -sign, _bit(sign)
        return
    step.size, step.direction, step.missed = min(step.size, abs(move)) / 2, 0, 0
    if base is not None and len(step.probes) == 2:
        step.vertex = vertex((0.0, base), step.probes[1], step.probes[-1])


def _bit(sign: int) -> int:
    return 1 if sign > 0 else 2


def vertex(*points: tuple[float, float]) -> float | None:
    """The minimum of the parabola through three (move, metric) points; None if it has none."""
    (a, fa), (b, fb), (c, fc) = sorted(points)
    if not a < b < c:
        return None
    first, second = (fb - fa) / (b - a), (fc - fb) / (c - b)
    curvature = (second - first) / (c - a)
    if curvature <= 0:
        return None
    return (a + b) / 2 - first / (2 * curvature)  # where p'(x) = first + k (2x - a - b) is 0


def pattern_due(history: Sequence[HistoryEntry]) -> bool:
    """Whether the latest local keep is newer than the latest pattern move tried."""
    for entry in reversed(history):
        if label(entry) == "local pattern":
            return False
        if entry.status == "kept" and label(entry).startswith("local"):
            return True
    return False


def pattern_move(
    space: Space,
    history: Sequence[HistoryEntry],
    avoid: dict[str, list[tuple[Value, Value]]],
    rng: random.Random,
) -> dict[str, Value] | None:
    """The best plus the displacement of its last one to three local keeps, or None when that
    moves fewer than two constants or onto a value that crashed."""
    # Local keeps only: a TPE proposal's jump is a guess, not a direction.
    kept = [e for e in history if e.status == "kept" and label(e).startswith("local")][-3:]
    if not kept:
        return None
    count = rng.randint(1, len(kept))
    total: dict[str, float] = {}
    for entry in kept[-count:]:
        for name, move in unit_moves(space, entry).items():
            total[name] = total.get(name, 0.0) + move
    if sum(1 for move in total.values() if move) < 2:
        return None  # along one constant, its own doubling step goes that way already
    values = space.values()
    dims = {d.name: d for d in space.dimensions}
    moved = False
    for name, move in total.items():
        new = from_unit(dims[name], to_unit(dims[name], values[name]) + move)
        if beyond_a_crash(values[name], new, avoid.get(name, [])):
            return None
        moved = moved or new != values[name]
        values[name] = new
    return values if moved else None


def explore_move(
    space: Space,
    steps: dict[str, Step],
    avoid: dict[str, list[tuple[Value, Value]]],
    rng: random.Random,
    jitter: bool = False,
) -> tuple[dict[str, Value] | None, str]:
    """The best with one constant moved by its step (a choice switched), or None when every
    constant has converged; and its label, `local parabola` for an interpolated minimum.
    With `jitter` (the planned move was measured already), the direction is drawn and the
    size varied by up to half."""
    values = space.values()
    dims = {d.name: d for d in space.dimensions}
    plans = {}
    for name, step in steps.items():
        plan = _plan(dims[name], values[name], step, avoid.get(name, []))
        if plan is not None:
            plans[name] = plan
    choices = [d.name for d in space.dimensions if d.kind == "choice" and len(d.choices) > 1]
    names = list(plans) + choices
    if not names:
        return pair_move(space, steps, avoid, rng), "local"
    weights = [plans[n][1] if n in plans else FIRST_STEP for n in names]
    name = rng.choices(names, weights)[0]
    dim = dims[name]
    if name not in plans:
        values[name] = rng.choice([c for c in dim.choices if c != values[name]])
        return values, "local"
    signs, size = plans[name]
    step = steps[name]
    if step.vertex is not None and not jitter:
        new = _moved(dim, values[name], step.vertex)
        if new != values[name] and not beyond_a_crash(values[name], new, avoid.get(name, [])):
            values[name] = new
            return values, "local parabola"
    sign = step.direction if step.direction in signs and not jitter else rng.choice(signs)
    new = _moved(dim, values[name], sign * size * (rng.uniform(0.5, 1.5) if jitter else 1.0))
    if new == values[name] or beyond_a_crash(values[name], new, avoid.get(name, [])):
        return None, "local"
    values[name] = new
    return values, "local"


def _plan(
    dim: Dimension, value: Value, step: Step, crashes: list[tuple[Value, Value]]
) -> tuple[list[int], float] | None:
    """The directions open to a constant's next step, and its size; None once converged. A
    way blocked by a bound or a crash counts as missed, so a constant at the edge of its range
    halves its step inwards instead of trying the same step forever."""
    size, missed = step.size, step.missed
    while size >= resolution(dim, value):
        free = []
        for sign in (1, -1):
            new = _moved(dim, value, sign * size)
            if not missed & _bit(sign) and new != value and not beyond_a_crash(value, new, crashes):
                free.append(sign)
        if free:
            return free, size
        size, missed = size / 2, 0
    return None


def pair_move(
    space: Space,
    steps: dict[str, Step],
    avoid: dict[str, list[tuple[Value, Value]]],
    rng: random.Random,
) -> dict[str, Value] | None:
    """Two constants moved at once, each by its own step (at least twice its resolution)
    varied by up to half, each way at random: once every constant has converged alone, what
    is left is a valley running across constants (A + B), which a pair may find and the
    pattern move then follow."""
    numbers = [d for d in space.dimensions if numeric(d) and d.name in steps]
    if len(numbers) < 2:
        return None
    values = space.values()
    for dim in rng.sample(numbers, 2):
        value = values[dim.name]
        size = max(steps[dim.name].size, 2 * resolution(dim, value)) * rng.uniform(0.5, 1.5)
        new = _moved(dim, value, rng.choice((1, -1)) * size)
        if beyond_a_crash(value, new, avoid.get(dim.name, [])):
            return None
        values[dim.name] = new
    return values


def resolution(dim: Dimension, value: Value) -> float:
    """The smallest step that still changes the value, in units of the range."""
    if dim.kind != "int":
        return RESOLUTION
    assert not isinstance(value, bool | str)
    here = to_unit(dim, value)
    neighbours = [v for v in (value - 1, value + 1) if dim.low <= v <= dim.high]
    nearest = [abs(to_unit(dim, v) - here) for v in neighbours]
    return min(nearest, default=RESOLUTION) * 0.99


def _moved(dim: Dimension, value: Value, move: float) -> Value:
    new = from_unit(dim, to_unit(dim, value) + move)
    if dim.kind == "int" and new == value:  # a step under one unit still moves by one
        assert not isinstance(value, bool | str)
        new = int(min(max(value + (1 if move > 0 else -1), dim.low), dim.high))
    return new


def crashed_moves(history: Iterable[HistoryEntry]) -> dict[str, list[tuple[Value, Value]]]:
    """For each constant, the (from, to) of single-constant changes that crashed."""
    crashes: dict[str, list[tuple[Value, Value]]] = {}
    for entry in history:
        if entry.status in _FAILED:
            moves = parse_changes(entry.description)
            if len(moves) == 1:
                for name, move in moves.items():
                    crashes.setdefault(name, []).append(move)
    return crashes


def beyond_a_crash(current: Value, new: Value, crashes: list[tuple[Value, Value]]) -> bool:
    """Whether `new` is a value that crashed, or beyond one in the direction it was reached."""
    for before, bad in crashes:
        if new == bad:
            return True
        numbers = (before, bad, new)
        if any(isinstance(v, bool | str) for v in numbers):
            continue
        if (bad > before and new >= bad) or (bad < before and new <= bad):  # type: ignore[operator]
            return True
    return False
