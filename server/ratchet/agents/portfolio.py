"""The portfolio agent: local moves around the best and Optuna's TPE, budget to what pays.

Two ways to propose share one Optuna study (so each learns from the other's results):
- local: one or two constants of the best nudged by a factor (a step for fractions), the
  way `mutate` does, but repeating the direction of the last local move that was kept;
- tpe: a model-based proposal over every constant at once.
Which one proposes is drawn by Thompson sampling on each arm's recent keep rate, with a floor
so neither starves. It also learns what not to try: a constant read only in print calls, or
changed alone three times without moving a deterministic metric, is left alone; a value
that crashed is not tried again, nor values beyond it in the same direction.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from ..config import Config
from ..experiment import HistoryEntry, ProposalContext
from .mutate import perturb
from .optuna import OptunaAgent, check_space
from .space import Dimension, Space, Value, parse_changes, print_only

ARMS = ("local", "tpe")
_WINDOW = 20  # recent proposals of an arm that its keep rate is estimated from
_FLOOR = 0.1  # each arm proposes at least this often
_NO_EFFECT_TRIES = 3
_SHRINK = 0.8  # the step shrinks by this after every _SHRINK_AFTER local misses in a row
_SHRINK_AFTER = 6


class PortfolioAgent(OptunaAgent):
    kind = "portfolio"
    label_arms = True
    failures_as_worst = True  # TPE then learns the region that crashes, not only its edge

    @classmethod
    def from_config(cls, config: Config) -> PortfolioAgent:
        check_space(config)
        return cls(config.root / ".ratchet", seed=config.agent.seed, space=config.agent.space)

    def narrow(self, study: optuna.Study, space: Space, context: ProposalContext) -> Space:
        dead = print_only(context.editable_text) | without_effect(study)
        kept = tuple(d for d in space.dimensions if d.name not in dead)
        return Space(space.literals, kept or space.dimensions)

    def draw(
        self,
        study: optuna.Study,
        space: Space,
        distributions: dict[str, BaseDistribution],
        context: ProposalContext,
        attempt: int,
    ) -> tuple[optuna.trial.Trial, str]:
        rng = random.Random(self._seed(context, attempt))
        arm = choose_arm(context.history, rng)
        if arm == "local":
            crashes = crashed_moves(context.history)
            scale = _SHRINK ** (local_misses(context.history) // _SHRINK_AFTER)
            values = local_move(space, last_kept_move(context.history), crashes, rng, scale)
            study.enqueue_trial(values, skip_if_exists=False)
        return study.ask(distributions), arm

    def _seed(self, context: ProposalContext, attempt: int) -> int:
        material = f"portfolio:{self.seed}:{context.experiment}:{context.proposal}:{attempt}"
        return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


def arm_of(entry: HistoryEntry) -> str | None:
    for arm in ARMS:
        if f"({arm})" in entry.description:
            return arm
    return None


def choose_arm(history: Iterable[HistoryEntry], rng: random.Random) -> str:
    """Thompson sampling on each arm's keep rate over its last _WINDOW proposals."""
    outcomes: dict[str, list[bool]] = {arm: [] for arm in ARMS}
    for entry in history:
        arm = arm_of(entry)
        if arm is not None and entry.status not in ("running", "proposed", "measured"):
            outcomes[arm].append(entry.status == "kept")
    if rng.random() < _FLOOR * len(ARMS):
        return rng.choice(ARMS)
    draws = {}
    for arm, results in outcomes.items():
        recent = results[-_WINDOW:]
        draws[arm] = rng.betavariate(1 + sum(recent), 1 + len(recent) - sum(recent))
    return max(ARMS, key=lambda arm: draws[arm])


def without_effect(study: optuna.Study) -> set[str]:
    """Constants changed alone _NO_EFFECT_TRIES times, each time measuring exactly what the
    best it was made from measured (a deterministic metric: a noisy one never repeats)."""
    tries: dict[str, int] = {}
    moved: set[str] = set()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        changed = trial.user_attrs.get("changed") or []
        base = trial.user_attrs.get("base_metric")
        if len(changed) != 1 or base is None or trial.value is None:
            continue
        name = changed[0]
        if abs(trial.value - base) <= 1e-12 * max(1.0, abs(base)):
            tries[name] = tries.get(name, 0) + 1
        else:
            moved.add(name)
    return {name for name, count in tries.items() if count >= _NO_EFFECT_TRIES} - moved


def _moves(entry: HistoryEntry) -> dict[str, tuple[Value, Value]]:
    return parse_changes(entry.description)


def last_kept_move(history: tuple[HistoryEntry, ...]) -> dict[str, tuple[Value, Value]]:
    """The last local move, if it was kept: worth one more step the same way."""
    for entry in reversed(history):
        if arm_of(entry) == "local" and entry.status not in ("running", "proposed"):
            return _moves(entry) if entry.status == "kept" else {}
    return {}


def crashed_moves(history: Iterable[HistoryEntry]) -> dict[str, list[tuple[Value, Value]]]:
    """For each constant, the (from, to) of single-constant changes that crashed."""
    crashes: dict[str, list[tuple[Value, Value]]] = {}
    for entry in history:
        if entry.status in ("crashed", "timeout", "invalid"):
            moves = _moves(entry)
            if len(moves) == 1:
                for name, move in moves.items():
                    crashes.setdefault(name, []).append(move)
    return crashes


def local_misses(history: tuple[HistoryEntry, ...]) -> int:
    """Local moves since the last one kept: the more, the closer to a local optimum, so the
    smaller the next step (the 1/5th success rule of evolution strategies, roughly)."""
    misses = 0
    for entry in reversed(history):
        if arm_of(entry) != "local" or entry.status in ("running", "proposed"):
            continue
        if entry.status == "kept":
            break
        misses += 1
    return misses


def local_move(
    space: Space,
    momentum: dict[str, tuple[Value, Value]],
    crashes: dict[str, list[tuple[Value, Value]]],
    rng: random.Random,
    scale: float = 1.0,
) -> dict[str, Value]:
    """The best's values with one or two constants nudged, by steps times `scale`."""
    values = space.values()
    dims = {d.name: d for d in space.dimensions}
    repeat = [name for name in momentum if name in dims]
    if not (repeat and rng.random() < 0.5):
        momentum = {}
        repeat = rng.sample(list(dims), k=min(len(dims), rng.choice((1, 1, 2))))
    for name in repeat:
        dim = dims[name]
        for _ in range(8):
            new = _nudge(dim, values[name], momentum.get(name), rng, scale)
            if new != values[name] and not _crashes(values[name], new, crashes.get(name, [])):
                values[name] = new
                break
    return values


def _crashes(current: Value, new: Value, crashes: list[tuple[Value, Value]]) -> bool:
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


def _nudge(
    dim: Dimension,
    value: Value,
    momentum: tuple[Value, Value] | None,
    rng: random.Random,
    scale: float,
) -> Value:
    if dim.kind == "choice":
        others = [c for c in dim.choices if c != value]
        return rng.choice(others) if others else value
    assert not isinstance(value, bool | str)
    if momentum is not None and not isinstance(momentum[0], bool | str) and momentum[0]:
        old, new = momentum
        assert not isinstance(old, bool | str) and not isinstance(new, bool | str)
        candidate = value * (new / old) if dim.log else value + (new - old)
    elif dim.kind == "int" and abs(value) < 8:
        # A small count (depth, heads): one or two either way; factors would skip values.
        candidate = value + rng.choice((-2, -1, 1, 2))
    else:
        # mutate's own steps (x0.5 .. x2, on 4 significant digits), shrunk after misses.
        step = perturb(value, rng)
        if scale < 1.0 and value:
            step = value * (step / value) ** scale
        candidate = step
        if dim.kind == "int" and round(candidate) == value:
            candidate = value + (1 if candidate > value else -1)
    candidate = min(max(candidate, dim.low), dim.high)
    if dim.step:
        candidate = dim.low + round((candidate - dim.low) / dim.step) * dim.step
    if dim.kind == "int" and (dim.step is None or float(dim.step).is_integer()):
        return int(min(max(round(candidate), math.ceil(dim.low)), math.floor(dim.high)))
    return min(max(float(f"{candidate:.4g}"), dim.low), dim.high)
