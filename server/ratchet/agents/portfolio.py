"""The portfolio agent, the default offline one: three ways to propose, budget to what pays.

They share one Optuna study (so each learns from the others' results):
- local: one constant of the best moved by its own adaptive step, the parabola through its
  misses, or after a keep a pattern move along the last keeps (agents/pattern.py);
- model: the minimum of a quadratic fitted near the best, in a trust region
  (agents/surrogate.py);
- tpe: Optuna's model-based proposal for one or two constants drawn at random, the others
  held at the best's values (a move a person can read, never a jump of every knob at once).
Which one proposes is drawn by Thompson sampling on each arm's recent keep rate, with a floor
so none starves. It also learns what not to try: a constant read only in print calls, or
changed alone three times without moving a deterministic metric, is left alone; a value
that crashed is not tried again, nor values beyond it in the same direction.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Iterable

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from ..config import Config
from ..experiment import HistoryEntry, ProposalContext, Status
from .optuna import OptunaAgent, check_space
from .pattern import crashed_moves, explore_move, label, pattern_due, pattern_move, replay_steps
from .space import Space, Value, print_only
from .surrogate import model_move

ARMS = ("local", "model", "tpe")
_WINDOW = 20  # recent proposals of an arm that its keep rate is estimated from
_FLOOR = 0.05  # each arm proposes at least this often
_NO_EFFECT_TRIES = 3
_LOCAL_TRIES = 4  # attempts at a new local move before TPE proposes instead
FEW = 2  # the most constants the tpe and model arms move away from the best at once


class PortfolioAgent(OptunaAgent):
    kind = "portfolio"
    label_arms = True
    failures_as_worst = True  # TPE then learns the region that crashes, not only its edge

    @classmethod
    def from_config(cls, config: Config) -> PortfolioAgent:
        check_space(config)
        return cls(config.root / ".ratchet", seed=config.agent.seed, space=config.agent.space)

    def narrow(self, study: optuna.Study, space: Space, context: ProposalContext) -> Space:
        dead = print_only(context.editable_text, context.metric_name) | without_effect(study)
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
        if arm == "model" and attempt == 0:
            values = model_move(
                space,
                measured_points(study, context.history),
                context.history,
                crashed_moves(context.history),
                rng,
                context.goal == "minimize",
                few=FEW,
            )
            if values is not None:
                study.enqueue_trial(values, skip_if_exists=False)
                return study.ask(distributions), "model"
            arm = "local"
        if arm == "local" and attempt < _LOCAL_TRIES:
            lower = context.goal == "minimize"
            values, arm = local_move(space, context.history, rng, attempt, lower)
            if values is not None:
                study.enqueue_trial(values, skip_if_exists=False)
                return study.ask(distributions), arm
        return few_knobs_ask(study, space, distributions, rng), "tpe"

    def _seed(self, context: ProposalContext, attempt: int) -> int:
        material = f"portfolio:{self.seed}:{context.experiment}:{context.proposal}:{attempt}"
        return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


def few_knobs_ask(
    study: optuna.Study,
    space: Space,
    distributions: dict[str, BaseDistribution],
    rng: random.Random,
) -> optuna.trial.Trial:
    """A TPE trial that moves one or two constants drawn at random, every other held at the
    best's value (one outside its declared range is left to TPE, which brings it in)."""
    values = space.values()
    names = [d.name for d in space.dimensions]
    free = set(rng.sample(names, k=min(len(names), rng.randint(1, FEW))))
    fixed = {
        d.name: values[d.name]
        for d in space.dimensions
        if d.name not in free and d.contains(values[d.name])
    }
    sampler = study.sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.PartialFixedSampler(fixed, sampler)
        try:
            return study.ask(distributions)
        finally:
            study.sampler = sampler


def measured_points(
    study: optuna.Study, history: tuple[HistoryEntry, ...]
) -> list[tuple[dict[str, Value], float]]:
    """The values and metric of every experiment in the history that was measured (a crash,
    told to TPE as the worst value, is left out), and of the best."""
    measured = {e.digest for e in history if e.digest and Status(e.status).measured}
    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        mark = trial.user_attrs.get("digest")
        if trial.value is not None and (mark in measured or trial.user_attrs.get("incumbent")):
            points.append((dict(trial.params), float(trial.value)))
    return points


def arm_of(entry: HistoryEntry) -> str | None:
    arm = label(entry).split(" ")[0]
    return arm if arm in ARMS else None


def local_move(
    space: Space,
    history: tuple[HistoryEntry, ...],
    rng: random.Random,
    attempt: int = 0,
    lower_is_better: bool = True,
) -> tuple[dict[str, Value] | None, str]:
    """The local arm's next values and how they were found: a pattern move after a keep,
    else one constant's step (varied when the planned move was measured already)."""
    crashes = crashed_moves(history)
    if attempt == 0 and pattern_due(history):
        values = pattern_move(space, history, crashes, rng)
        if values is not None:
            return values, "local pattern"
    steps = replay_steps(space, history, lower_is_better)
    return explore_move(space, steps, crashes, rng, jitter=attempt > 0)


def choose_arm(history: Iterable[HistoryEntry], rng: random.Random) -> str:
    """Thompson sampling on each arm's keep rate over its last _WINDOW proposals."""
    outcomes: dict[str, list[bool]] = {arm: [] for arm in ARMS}
    for entry in history:
        arm = arm_of(entry)
        if arm is not None and entry.status not in ("running", "proposed"):
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
