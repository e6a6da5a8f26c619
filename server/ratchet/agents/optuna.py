"""The optuna agent: Optuna's TPE (or CMA-ES, or random search) over the file's constants.

Each experiment is one trial. The study lives next to the ledger (`.ratchet/optuna.db`,
Optuna's own RDB storage), so a loop killed mid-way resumes it with nothing lost. Results are
learnt from the history the engine shows: a trial remembers the digest of the file it wrote
and the experiment number it was proposed for; once that experiment is final, the trial is
told its mean metric, or failed if it crashed, timed out or was invalid.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState

from ..config import CONFIG_NAME, Config, ConfigError, SpaceOverride
from ..errors import RatchetError
from ..experiment import HistoryEntry, Proposal, ProposalContext
from ..novelty import digest
from .space import (
    Dimension,
    Space,
    Value,
    build_space,
    edge_warnings,
    find_literals,
    nothing_to_tune,
    parse_changes,
)

_ATTEMPTS = 16
_MEASURED = ("kept", "discarded")
_UNFINISHED = ("proposed", "awaiting_review", "running")
_LOST_AFTER = 16  # a trial whose experiment is this far behind and nowhere in the history

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distribution(dim: Dimension) -> BaseDistribution:
    if dim.kind == "choice":
        return CategoricalDistribution(list(dim.choices))
    step = dim.step
    if dim.kind == "int" and (step is None or float(step).is_integer()):
        low, high = int(-(-dim.low // 1)), int(dim.high // 1)
        return IntDistribution(low, max(low, high), log=dim.log, step=int(step or 1))
    return FloatDistribution(dim.low, dim.high, log=dim.log, step=step)


def study_storage(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'optuna.db'}"


def check_space(config: Config) -> None:
    """A `[agent.space.NAME]` naming no constant of the editable file is a located mistake."""
    if not config.agent.space:
        return
    try:
        source = (config.root / config.loop.editable).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    names = {lit.name for lit in find_literals(source)}
    for name in config.agent.space:
        if name not in names:
            header = f"[agent.space.{name}]"
            lines = config.source.splitlines()
            line = next((i for i, text in enumerate(lines, 1) if header in text), 1)
            col = lines[line - 1].find(header) + 1 if lines else 1
            known = ", ".join(sorted(names)) or "none"
            raise ConfigError(
                CONFIG_NAME,
                line,
                max(col, 1),
                f"{header} names no module-level constant of {config.loop.editable} "
                f"(its constants: {known}); fix the name or remove the section",
                max(col, 1) + len(header),
            )


class OptunaAgent:
    kind = "optuna"
    label_arms = False  # whether descriptions say which arm proposed (the portfolio's do)
    failures_as_worst = False  # crashes are failed trials (the contract for optuna)

    def __init__(
        self,
        folder: Path,
        sampler: str = "tpe",
        seed: int = 0,
        space: dict[str, SpaceOverride] | None = None,
        startup_trials: int = 5,
        storage: optuna.storages.BaseStorage | None = None,
    ) -> None:
        self.folder = folder
        self.sampler_name = sampler
        self.seed = seed
        self.overrides = space or {}
        self.startup_trials = startup_trials
        self.storage = storage  # None: `.ratchet/optuna.db` (another: benchmarks)
        self._lock = threading.Lock()  # one ask/tell sequence at a time on the study
        # Kept open for the loop's life: Optuna's storage then caches finished trials, so a
        # proposal reads only what changed instead of the whole study (about 5 s at 10,000 trials).
        self._study: optuna.Study | None = None

    @classmethod
    def from_config(cls, config: Config) -> OptunaAgent:
        check_space(config)
        if config.agent.sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
            raise RatchetError(
                '[agent] sampler = "cmaes" needs the cmaes package: '
                "`pip install 'ratchet[optuna]'`, or use sampler = \"tpe\""
            )
        return cls(
            config.root / ".ratchet",
            sampler=config.agent.sampler,
            seed=config.agent.seed,
            space=config.agent.space,
        )

    async def propose(self, context: ProposalContext) -> Proposal:
        started = time.monotonic()
        proposal = await asyncio.to_thread(self._propose, context)
        proposal.agent_seconds = time.monotonic() - started
        return proposal

    def _propose(self, context: ProposalContext) -> Proposal:
        if context.repair_of is not None:
            return Proposal({}, "cannot repair offline", failure=_NO_REPAIR.format(kind=self.kind))
        space = build_space(context.editable_text, self.overrides)
        if not space.dimensions:
            return Proposal(
                {},
                "nothing to tune",
                failure=nothing_to_tune(self.kind, context.editable_path, context.editable_text),
                exhausted=True,
                final=True,
            )
        with self._lock:
            study = self.study(context)
            space = settle(study, space, self.overrides)
            study.sampler = self.sampler(context, space)
            learn(study, context.history, context.experiment, self.failures_as_worst)
            add_incumbent(study, space, context)
            return self._ask(study, space, context)

    def study(self, context: ProposalContext) -> optuna.Study:
        """The loop's study, loaded from the storage once and then kept open."""
        name = f"ratchet-{context.tag or 'loop'}"
        if self._study is not None and self._study.study_name == name:
            return self._study
        direction = (
            StudyDirection.MINIMIZE if context.goal == "minimize" else StudyDirection.MAXIMIZE
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._study = optuna.create_study(
                storage=self.storage if self.storage is not None else study_storage(self.folder),
                study_name=name,
                direction=direction,
                sampler=optuna.samplers.RandomSampler(),  # replaced once the space is known
                load_if_exists=True,
            )
        return self._study

    def sampler(self, context: ProposalContext, space: Space) -> optuna.samplers.BaseSampler:
        # A fresh seed per experiment: a resumed loop goes on where it was, and proposals made
        # at once for parallel slots differ.
        material = f"{self.seed}:{context.experiment}:{context.proposal}"
        seed = int.from_bytes(hashlib.sha256(material.encode()).digest()[:4], "big")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)  # x0: deprecated, kept until v6
            if self.sampler_name == "cmaes":
                values = space.values()
                numbers = {
                    d.name: values[d.name]
                    for d in space.dimensions
                    if d.kind != "choice" and d.contains(values[d.name])
                }
                return optuna.samplers.CmaEsSampler(
                    x0=numbers or None,
                    seed=seed,
                    n_startup_trials=1,
                    warn_independent_sampling=False,
                    independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                )
            if self.sampler_name == "random":
                return optuna.samplers.RandomSampler(seed=seed)
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=self.startup_trials,
                multivariate=True,
            )

    def _ask(self, study: optuna.Study, space: Space, context: ProposalContext) -> Proposal:
        space = self.narrow(study, space, context)
        edges = edge_warnings(space, self.overrides, self.kind)
        distributions = {d.name: distribution(d) for d in space.dimensions}
        known = {e.digest: e for e in context.history if e.digest}
        tries = []
        for attempt in range(_ATTEMPTS):
            trial, arm = self.draw(study, space, distributions, context, attempt)
            text, described = space.rewrite(context.editable_text, trial.params)
            file = digest(text)
            tries.append(described or "(no change)")
            if not described or file in context.tried_digests or described in context.running:
                # Nothing new to run: the trial is told what is known of that file, if
                # anything, so the sampler learns instead of drawing it again.
                value = context.best_metric if not described else _metric(known.get(file))
                _tell(study, trial.number, value)
                continue
            changed = list(parse_changes(described))
            attrs: dict[str, Any] = {
                "experiment": context.experiment,
                "digest": file,
                "description": described,
                "arm": arm,
                "base_metric": context.best_metric,
                "changed": changed,
            }
            for key, attr in attrs.items():
                trial.set_user_attr(key, attr)
            return Proposal(
                edits={context.editable_path: text},
                description=f"{described} ({arm})" if self.label_arms else described,
                trace=[
                    {
                        "role": "agent",
                        "kind": self.kind,
                        "arm": arm,
                        "trial": trial.number,
                        "space": [d.describe() for d in space.dimensions],
                        "tries": tries,
                    }
                ],
                warnings=edges,
            )
        return Proposal(
            {},
            "no new values found",
            failure=f"the {self.kind} agent drew {_ATTEMPTS} values already measured or "
            "running; widen the ranges under [agent.space.NAME] or stop the loop",
            exhausted=True,
            warnings=edges,
        )

    def narrow(self, study: optuna.Study, space: Space, context: ProposalContext) -> Space:
        """The constants searched this time (the portfolio leaves out those without effect)."""
        return space

    def draw(
        self,
        study: optuna.Study,
        space: Space,
        distributions: dict[str, BaseDistribution],
        context: ProposalContext,
        attempt: int,
    ) -> tuple[optuna.trial.Trial, str]:
        """A new trial and the name of what proposed it."""
        return study.ask(distributions), self.sampler_name

    async def close(self) -> None:
        self._study = None


_NO_REPAIR = (
    "cannot repair offline: the {kind} agent only changes constant values and cannot fix a "
    "crash; the crashed values are recorded as a failed trial and avoided"
)


def settle(study: optuna.Study, space: Space, overrides: dict[str, SpaceOverride]) -> Space:
    """The ranges fixed when each constant was first seen (stored with the study), so they do
    not drift with the best; ranges declared in ratchet.toml always win."""
    stored: dict[str, Any] = study.user_attrs.get("space", {})
    dimensions = []
    for dim in space.dimensions:
        if dim.name not in overrides and dim.name in stored:
            kind, low, high, log, step, choices = stored[dim.name]
            dim = Dimension(dim.name, kind, low, high, log, step, tuple(choices))
        dimensions.append(dim)
    fresh = {
        d.name: [d.kind, d.low, d.high, d.log, d.step, list(d.choices)]
        for d in space.dimensions
        if d.name not in stored
    }
    if fresh:
        study.set_user_attr("space", stored | fresh)
    return Space(space.literals, tuple(dimensions))


def _metric(entry: HistoryEntry | None) -> float | None:
    if entry is None or entry.status not in _MEASURED:
        return None
    return entry.metric


def _tell(study: optuna.Study, number: int, value: float | None) -> None:
    if value is None:
        study.tell(number, state=TrialState.FAIL)
    else:
        study.tell(number, value)


def learn(
    study: optuna.Study,
    history: tuple[HistoryEntry, ...],
    experiment: int,
    failures_as_worst: bool = False,
) -> None:
    """Tells every open trial whose experiment is final its result. A crash is a failed
    trial, or with `failures_as_worst` the worst value seen (so TPE learns to avoid it)."""
    by_digest = {e.digest: e for e in history if e.digest}
    by_id = {e.id: e for e in history}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        entry = by_digest.get(attrs.get("digest", ""))
        numbered = by_id.get(attrs.get("experiment", -1))
        if (
            entry is None
            and numbered
            and numbered.description.startswith(attrs.get("description", "\0"))
        ):
            entry = numbered
        if entry is None:
            if experiment - int(attrs.get("experiment", experiment)) > _LOST_AFTER:
                study.tell(trial.number, state=TrialState.FAIL)  # it never ran
            continue
        if entry.status in _UNFINISHED:
            continue
        outcome = _outcome(entry)
        if outcome is None and failures_as_worst:
            outcome = _worst(study)
        _tell(study, trial.number, outcome)


def _worst(study: optuna.Study) -> float | None:
    values = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    if not values:
        return None
    return max(values) if study.direction == StudyDirection.MINIMIZE else min(values)


def _outcome(entry: HistoryEntry) -> float | None:
    # An early abort is a measured "clearly worse": its partial metric, when it has one, is
    # better information than nothing; every other failure is a failed trial.
    if entry.status in _MEASURED or (entry.status == "aborted" and entry.metric is not None):
        return entry.metric
    return None


def add_incumbent(study: optuna.Study, space: Space, context: ProposalContext) -> None:
    """The current best as a finished trial (once per file): the sampler starts from what is
    known, the baseline first."""
    if context.best_metric is None:
        return
    mark = digest(context.editable_text)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if any(t.user_attrs.get("digest") == mark for t in trials):
        return
    values: dict[str, Value] = space.values()
    if not all(d.contains(values[d.name]) for d in space.dimensions):
        return  # a value outside its declared range cannot be a trial
    distributions = {d.name: distribution(d) for d in space.dimensions}
    params: dict[str, Any] = dict(values)
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=distributions,
            value=context.best_metric,
            user_attrs={"digest": mark, "incumbent": True},
        )
    )
