"""Every key of ratchet.toml, declared once: its field, type, default and check.

A field reads `name: Annotated[type, Key(check)] = default`. load.py reads a table by walking
these fields, so a new key is one line here. A field without a default is a required key (its
Key has the example line to suggest), but for [loop] timeout, which the loader derives.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_type_hints

from .values import (
    Guard,
    boolean,
    choice,
    duration,
    fraction,
    function,
    gpu_list,
    guard_table,
    host_list,
    integer,
    non_negative,
    number,
    positive,
    regex,
    string,
    string_list,
    tables,
)

AGENT_KINDS = ("mutate", "optuna", "portfolio", "anthropic", "command", "claude-code")
# The agents that are language models (read program.md, the summary; may pair with a tuner).
LLM_KINDS = ("anthropic", "command", "claude-code")


@dataclass(frozen=True)
class Key:
    """How a field is written in ratchet.toml."""

    check: Callable[[Any], Any]  # what TOML gave → the field's value, or values.Invalid
    name: str | None = None  # the key, where it differs from the field (`budget` → budget_s)
    example: str | None = None  # a required key's line, suggested when it is missing


@dataclass(frozen=True, kw_only=True)  # keyword-only: required keys stand among defaults
class LoopConfig:
    editable: Annotated[str, Key(string, example='editable = "train.py"')]
    locked: Annotated[tuple[str, ...], Key(string_list)] = ()
    program: Annotated[str, Key(string)] = "program.md"
    command: Annotated[str, Key(string, example='command = "python train.py"')]
    budget_s: Annotated[float, Key(duration, "budget")] = 300.0
    # No default here: an absent timeout is 2 x budget (load.py), not a constant.
    timeout_s: Annotated[float, Key(duration, "timeout")]
    review: Annotated[str, Key(choice("auto", "propose"))] = "auto"
    # The agent prepares the next proposal while experiments run.
    pipeline: Annotated[bool, Key(boolean)] = True
    # Over the budget before the run is stopped (None: budget / 2).
    grace_s: Annotated[float | None, Key(duration, "grace")] = None

    @property
    def grace(self) -> float:
        """Seconds past the budget a run may take (start-up, its own final evaluation)."""
        return self.budget_s / 2 if self.grace_s is None else self.grace_s

    @property
    def deadline_s(self) -> float:
        """When the harness stops the command: budget + grace, or the timeout if sooner."""
        return min(self.timeout_s, self.budget_s + self.grace)


_GOAL = choice("minimize", "maximize")


@dataclass(frozen=True)
class MetricConfig:
    name: Annotated[str, Key(string, example='name = "val_bpb"')]
    goal: Annotated[str, Key(_GOAL)] = "minimize"
    pattern: Annotated[str | None, Key(regex)] = None
    eval: Annotated[str | None, Key(string)] = None
    min_delta: Annotated[float, Key(non_negative)] = 0.0
    trace: Annotated[str | None, Key(string)] = None
    holdout: Annotated[str | None, Key(string)] = None
    # A `name` or a regex with one group: the live learning curve.
    progress: Annotated[str | None, Key(string)] = None
    progress_goal: Annotated[str, Key(_GOAL)] = "minimize"
    # The fraction of the budget before early abort may act.
    abort_after: Annotated[float, Key(fraction)] = 0.25
    # Worse than the best run's curve by this fraction: aborted.
    abort_margin: Annotated[float, Key(non_negative)] = 0.1
    # Files the command leaves that the evaluator may read.
    artefacts: Annotated[tuple[str, ...], Key(string_list)] = ()
    # Committed files only the evaluator sees (labels).
    eval_only: Annotated[tuple[str, ...], Key(string_list)] = ()
    # Committed files only the holdout sees: in no run's folder, no evaluator's clean room,
    # no agent's view; only in the holdout's own clean room.
    holdout_only: Annotated[tuple[str, ...], Key(string_list)] = ()
    # The evaluator's own limit (None: the budget).
    eval_timeout_s: Annotated[float | None, Key(duration, "eval_timeout")] = None
    # Secondary numbers a keep must also hold.
    guards: Annotated[tuple[Guard, ...], Key(guard_table)] = ()
    # `evaluate = "evaluator.py:evaluate"`: a function of the program's path returning a dict,
    # called in the clean room with the program confined (evaluate_call.py).
    evaluate: Annotated[str | None, Key(function)] = None
    # The interpreter `evaluate` is called with (None: python3).
    python: Annotated[str | None, Key(string)] = None
    # A JSON file of metrics the evaluator (or command) writes.
    file: Annotated[str | None, Key(string)] = None
    # The metric's key in `file` or in `evaluate`'s dict (None: name).
    key: Annotated[str | None, Key(string)] = None
    # Per-case evidence (cases.py): the file of case lines the evaluator writes (None: its
    # output), and the cases (ids or patterns) a keep must not make worse.
    cases: Annotated[str | None, Key(string)] = None
    protect: Annotated[tuple[str, ...], Key(string_list)] = ()

    @property
    def judged_apart(self) -> bool:
        """The metric comes from a step after the command: `eval` or `evaluate`."""
        return self.eval is not None or self.evaluate is not None

    @property
    def metric_key(self) -> str:
        return self.key or self.name

    @property
    def lower_is_better(self) -> bool:
        return self.goal == "minimize"


@dataclass(frozen=True)
class JudgeConfig:
    baseline_runs: Annotated[int, Key(integer(1))] = 3
    z: Annotated[float, Key(non_negative)] = 1.0
    max_runs: Annotated[int, Key(integer(1))] = 5
    screen: Annotated[float, Key(non_negative)] = 0.25
    review_above: Annotated[float | None, Key(positive)] = None
    remeasure_every: Annotated[int, Key(integer(0))] = 0
    # Winners from other GPU models are re-measured on the baseline's.
    same_hardware: Annotated[bool, Key(boolean)] = True
    rule: Annotated[str, Key(choice("fixed", "sequential"))] = "sequential"  # judge.py
    # Sequential without controls: a best kept on fewer runs is measured again.
    confirm_runs: Annotated[int, Key(integer(1))] = 5
    # The best measured again beside its candidates (judge.py).
    controls: Annotated[bool, Key(boolean)] = True


@dataclass(frozen=True)
class SpaceOverride:
    """`[agent.space.NAME]`: how the classical agents search one constant (checks.space)."""

    low: float | None = None
    high: float | None = None
    log: bool | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    freeze: bool = False


@dataclass(frozen=True)
class AgentConfig:
    # None: anthropic if its key is set, else portfolio.
    kind: Annotated[str | None, Key(choice(*AGENT_KINDS))] = None
    model: Annotated[str, Key(string)] = "claude-sonnet-4-6"
    run: Annotated[str | None, Key(string)] = None
    seed: Annotated[int, Key(integer(0))] = 0
    api_key_env: Annotated[str, Key(string)] = "ANTHROPIC_API_KEY"
    base_url: Annotated[str | None, Key(string)] = None
    max_cost_usd: Annotated[float | None, Key(positive)] = None
    max_tokens: Annotated[int, Key(integer(256))] = 8192
    timeout_s: Annotated[float, Key(duration, "timeout")] = 600.0
    repair_attempts: Annotated[int, Key(integer(0))] = 1
    repair_window_s: Annotated[float, Key(duration, "repair_window")] = 30.0
    # The optuna agent's sampler.
    sampler: Annotated[str, Key(choice("tpe", "cmaes", "random"))] = "tpe"
    # Read as tables; load.py turns each into a SpaceOverride with errors on its keys.
    space: Annotated[dict[str, SpaceOverride], Key(tables)] = field(default_factory=dict)
    # A classical tuner between an LLM's edits, and its proposals per LLM proposal.
    tune: Annotated[str | None, Key(choice("optuna", "portfolio"))] = None
    tune_ratio: Annotated[int, Key(integer(1))] = 3
    # The command agent's own sandbox: its config folders (~ expanded), extra variables.
    sandbox_read: Annotated[tuple[str, ...], Key(string_list)] = ()
    sandbox_write: Annotated[tuple[str, ...], Key(string_list)] = ()
    sandbox_env: Annotated[tuple[str, ...], Key(string_list)] = ()


@dataclass(frozen=True)
class RunnerConfig:
    kind: Annotated[str, Key(choice("local", "ssh", "ray"))] = "local"
    gpus: Annotated[tuple[int, ...], Key(gpu_list)] = ()
    hosts: Annotated[tuple[str, ...], Key(string_list)] = ()
    identity_file: Annotated[str | None, Key(string)] = None
    known_hosts: Annotated[str | None, Key(string)] = None
    remote_dir: Annotated[str, Key(string)] = "~/.ratchet-remote"
    address: Annotated[str | None, Key(string)] = None
    max_slots: Annotated[int | None, Key(integer(1))] = None


@dataclass(frozen=True)
class StopConfig:
    """`[stop]`: when the loop stops by itself. Each rule is optional and is evaluated over
    the record, so raising a limit lets a stopped loop go on."""

    # Experiments in a row without a keep; crashes, timeouts or invalids in a row.
    no_keep_after: Annotated[int | None, Key(integer(1))] = None
    failures_in_row: Annotated[int | None, Key(integer(1))] = None
    max_cost_usd: Annotated[float | None, Key(positive)] = None  # the agent's spend
    max_gpu_hours: Annotated[float | None, Key(positive)] = None  # all experiments' run time
    target: Annotated[float | None, Key(number)] = None  # the best reaches this metric value


@dataclass(frozen=True)
class TrackConfig:
    """[track]: where each experiment is also logged (issue 14)."""

    # An MLflow tracking URI (http://..., sqlite:///..., file:...), the experiment's name
    # (None: ratchet/<tag>).
    mlflow: Annotated[str | None, Key(string)] = None
    experiment: Annotated[str | None, Key(string)] = None


@dataclass(frozen=True)
class SandboxConfig:
    """What a run may see and reach ([sandbox]); kind "none" is an explicit opt-out."""

    kind: Annotated[str, Key(choice("bwrap", "none"))] = "bwrap"
    network: Annotated[bool, Key(boolean)] = False
    read: Annotated[tuple[str, ...], Key(string_list)] = ()  # extra read-only folders (~)
    write: Annotated[tuple[str, ...], Key(string_list)] = ()  # extra writable folders: caches
    env: Annotated[tuple[str, ...], Key(string_list)] = ()  # never the agent's key
    # "host:port" a run may reach through Ratchet's proxy.
    hosts: Annotated[tuple[str, ...], Key(host_list)] = ()
    max_processes: Annotated[int, Key(integer(16))] = 512  # a fork bomb stops here


@dataclass(frozen=True)
class Config:
    root: Path
    loop: LoopConfig
    metric: MetricConfig
    judge: JudgeConfig
    agent: AgentConfig
    runner: RunnerConfig
    source: str = field(default="", repr=False)
    stop: StopConfig = field(default_factory=StopConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    @property
    def slots(self) -> int:
        return max(1, len(self.runner.gpus))


# The [sections] of ratchet.toml, in order: Config's fields but the two that are no table.
SECTIONS: dict[str, type[Any]] = {
    name: kind for name, kind in get_type_hints(Config).items() if name not in ("root", "source")
}
