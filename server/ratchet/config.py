"""ratchet.toml → a validated, typed Config.

Every mistake becomes a ConfigError that knows its file, line and column, so the CLI can
print `ratchet.toml:3:11: ...` and the language server can put a diagnostic on the range.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "ratchet.toml"


@dataclass(eq=False)
class ConfigError(Exception):
    """A mistake in ratchet.toml, located at 1-based line and column."""

    path: str
    line: int
    col: int
    message: str
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


@dataclass(frozen=True)
class LoopConfig:
    editable: str
    locked: tuple[str, ...]
    program: str
    command: str
    budget_s: float
    timeout_s: float
    review: str  # "auto" | "propose"
    pipeline: bool = True  # the agent prepares the next proposal while experiments run
    grace_s: float | None = None  # over the budget before the run is stopped (None: budget / 2)

    @property
    def grace(self) -> float:
        """Seconds past the budget a run may take (start-up, its own final evaluation)."""
        return self.budget_s / 2 if self.grace_s is None else self.grace_s

    @property
    def deadline_s(self) -> float:
        """When the harness stops the command: budget + grace, or the timeout if sooner."""
        return min(self.timeout_s, self.budget_s + self.grace)


@dataclass(frozen=True)
class Guard:
    """`memory_gb = "<= 40"`: a secondary number a keep must hold, or it is discarded."""

    name: str
    op: str  # "<=" | "<" | ">=" | ">"
    limit: float

    def broken(self, secondary: dict[str, float]) -> str | None:
        """Why these numbers break the guard, in words; None when they hold it."""
        value = secondary.get(self.name)
        if value is None:
            return f"guard `{self}`: the run printed no `{self.name}`"
        held = {
            "<=": value <= self.limit,
            "<": value < self.limit,
            ">=": value >= self.limit,
            ">": value > self.limit,
        }[self.op]
        return None if held else f"guard `{self}` broken ({self.name} {value:.6g})"

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.limit:g}"


@dataclass(frozen=True)
class MetricConfig:
    name: str
    goal: str  # "minimize" | "maximize"
    pattern: str | None
    eval: str | None
    min_delta: float
    trace: str | None
    holdout: str | None = None
    progress: str | None = None  # a `name` or a regex with one group: the live learning curve
    progress_goal: str = "minimize"
    abort_after: float = 0.25  # fraction of the budget before early abort may act
    abort_margin: float = 0.1  # worse than the best run's curve by this fraction: aborted
    artefacts: tuple[str, ...] = ()  # files the command leaves that the evaluator may read
    eval_only: tuple[str, ...] = ()  # committed files only the evaluator sees (labels)
    # Committed files only the holdout sees: in no run's folder, no evaluator's clean room,
    # no agent's view; only in the holdout's own clean room.
    holdout_only: tuple[str, ...] = ()
    eval_timeout_s: float | None = None  # the evaluator's own limit (None: the budget)
    guards: tuple[Guard, ...] = ()  # secondary numbers a keep must also hold
    # `evaluate = "evaluator.py:evaluate"`: a function of the program's path returning a dict,
    # called in the clean room with the program confined (evaluate_call.py)
    evaluate: str | None = None
    python: str | None = None  # the interpreter `evaluate` is called with (None: python3)
    file: str | None = None  # a JSON file of metrics the evaluator (or command) writes
    key: str | None = None  # the metric's key in `file` or in `evaluate`'s dict (None: name)
    # Per-case evidence (cases.py): the file of case lines the evaluator writes (None: its
    # output), and the cases (ids or patterns) a keep must not make worse.
    cases: str | None = None
    protect: tuple[str, ...] = ()

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
    baseline_runs: int
    z: float
    max_runs: int
    screen: float
    review_above: float | None
    remeasure_every: int
    same_hardware: bool = True  # winners from other GPU models are re-measured on the baseline's
    rule: str = "sequential"  # "fixed" | "sequential" (judge.py)
    confirm_runs: int = (
        5  # sequential without controls: a best kept on fewer runs is measured again
    )
    controls: bool = True  # the best measured again beside its candidates (judge.py)


@dataclass(frozen=True)
class SpaceOverride:
    """`[agent.space.NAME]`: how the classical agents search one constant."""

    low: float | None = None
    high: float | None = None
    log: bool | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    freeze: bool = False


@dataclass(frozen=True)
class StopConfig:
    """`[stop]`: when the loop stops by itself. Each rule is optional and is evaluated over
    the record, so raising a limit lets a stopped loop go on."""

    no_keep_after: int | None = None  # experiments in a row without a keep
    failures_in_row: int | None = None  # crashes, timeouts or invalids in a row
    max_cost_usd: float | None = None  # the agent's spend
    max_gpu_hours: float | None = None  # run time of all experiments
    target: float | None = None  # the best reaches this metric value


@dataclass(frozen=True)
class AgentConfig:
    kind: str | None  # AGENT_KINDS; None: anthropic if its key is set, else portfolio
    model: str
    run: str | None
    seed: int
    api_key_env: str
    base_url: str | None
    max_cost_usd: float | None
    max_tokens: int
    timeout_s: float
    repair_attempts: int
    repair_window_s: float
    sampler: str = "tpe"  # the optuna agent's: "tpe" | "cmaes" | "random"
    space: dict[str, SpaceOverride] = field(default_factory=dict)
    tune: str | None = None  # "optuna" | "portfolio": a classical tuner between an LLM's edits
    tune_ratio: int = 3  # tuning proposals per LLM proposal
    # the command agent's own sandbox: its config folders (~ expanded), extra variables
    sandbox_read: tuple[str, ...] = ()
    sandbox_write: tuple[str, ...] = ()
    sandbox_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunnerConfig:
    kind: str  # "local" | "ssh" | "ray"
    gpus: tuple[int, ...]
    hosts: tuple[str, ...]
    identity_file: str | None
    known_hosts: str | None
    remote_dir: str
    address: str | None
    max_slots: int | None


@dataclass(frozen=True)
class TrackConfig:
    """[track]: where each experiment is also logged (issue 14)."""

    mlflow: str | None = None  # an MLflow tracking URI: http://..., sqlite:///..., file:...
    experiment: str | None = None  # the MLflow experiment's name (default: ratchet/<tag>)


@dataclass(frozen=True)
class SandboxConfig:
    """What a run may see and reach ([sandbox]); kind "none" is an explicit opt-out."""

    kind: str = "bwrap"  # "bwrap" | "none"
    network: bool = False
    read: tuple[str, ...] = ()  # extra read-only folders (~ expanded)
    write: tuple[str, ...] = ()  # extra writable folders: caches
    env: tuple[str, ...] = ()  # variables passed to the run (never the agent's key)
    hosts: tuple[str, ...] = ()  # "host:port" a run may reach through Ratchet's proxy
    max_processes: int = 512  # a fork bomb stops here


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


# --- durations ------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """`90s`, `5m`, `1h`, `250ms` or a bare number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "90s", "5m" or "1h"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(
            f'{value!r} is not a duration: write a number and a unit, such as "90s", "5m" or "1h"'
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError('a duration must be more than zero, such as "90s" or "5m"')
    return seconds


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


# --- the schema -------------------------------------------------------------------------


class _Invalid(ValueError):
    """A value of the right key that is wrong; the message says how to fix it."""


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("expected a non-empty string in quotes")
    return value


def _optional_string(value: Any) -> str | None:
    return _string(value)


def _string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_string(value),)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid('expected a list of strings, such as ["prepare.py"]')
    return tuple(value)


_GUARD = re.compile(r"\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*")


def _guards(value: Any) -> tuple[Guard, ...]:
    if not isinstance(value, dict):
        raise _Invalid('expected a table such as { memory_gb = "<= 40", num_steps = ">= 100" }')
    guards = []
    for name, rule in value.items():
        match = _GUARD.fullmatch(rule) if isinstance(rule, str) else None
        try:
            limit = float(match.group(2).replace("_", "")) if match else None
        except ValueError:
            limit = None
        if match is None or limit is None or not math.isfinite(limit):
            raise _Invalid(
                f'the guard on `{name}` must read like "<= 40" or ">= 100" '
                "(<=, <, >= or > and a number)"
            )
        guards.append(Guard(name, match.group(1), limit))
    return tuple(guards)


_FUNCTION = re.compile(r"([^:]+\.py):([A-Za-z_][A-Za-z0-9_]*)")


def _function(value: Any) -> str:
    text = _string(value).strip()
    if not _FUNCTION.fullmatch(text):
        raise _Invalid(
            'expected a Python file and a function in it, such as "evaluator.py:evaluate"'
        )
    return text


def _int_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise _Invalid("expected a list of GPU indices, such as [0, 1], or [] for one CPU slot")
    if len(set(value)) != len(value):
        raise _Invalid("a GPU is listed twice; list each GPU index once")
    return tuple(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Invalid("expected a finite number, such as 0.001")
    return float(value)


def _non_negative(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise _Invalid("expected a number of zero or more")
    return number


def _positive(value: Any) -> float:
    number = _number(value)
    if number <= 0:
        raise _Invalid("expected a number greater than zero")
    return number


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("expected true or false (without quotes)")
    return value


def _fraction(value: Any) -> float:
    number = _number(value)
    if not 0 <= number < 1:
        raise _Invalid("expected a fraction from 0 up to (not including) 1, such as 0.25")
    return number


def _integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Invalid(f"expected a whole number of at least {minimum}")
        return value

    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            listed = " or ".join(f'"{o}"' for o in options)
            raise _Invalid(f"{value!r} is not allowed here; use {listed}")
        return str(value)

    return check


def _duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise _Invalid(str(error)) from None


def _regex(value: Any) -> str:
    text = _string(value)
    try:
        compiled = re.compile(text)
    except re.error as error:
        raise _Invalid(f"not a valid regular expression ({error})") from None
    if compiled.groups != 1:
        raise _Invalid(
            f"the pattern has {compiled.groups} capturing groups; it needs exactly one, around "
            "the number (write others as (?:...)), e.g. 'bpb=([0-9.]+)'"
        )
    return text


def _host_list(value: Any) -> tuple[str, ...]:
    hosts = _string_list(value)
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise _Invalid(f'{host!r} is not host:port; write e.g. ["api.example.com:443"]')
    return hosts


def _tables(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _Invalid("write one section per constant, such as [agent.space.LR] with low = 1e-4")
    return value


AGENT_KINDS = ("mutate", "optuna", "portfolio", "anthropic", "command", "claude-code")
# The agents that are language models (read program.md, the summary; may pair with a tuner).
LLM_KINDS = ("anthropic", "command", "claude-code")
_REQUIRED = object()

# section → key → (validator, default); _REQUIRED marks keys that must be present.
_SCHEMA: dict[str, dict[str, tuple[Callable[[Any], Any], Any]]] = {
    "loop": {
        "editable": (_string, _REQUIRED),
        "locked": (_string_list, ()),
        "program": (_string, "program.md"),
        "command": (_string, _REQUIRED),
        "budget": (_duration, 300.0),
        "timeout": (_duration, None),
        "review": (_choice("auto", "propose"), "auto"),
        "pipeline": (_boolean, True),
        "grace": (_duration, None),
    },
    "metric": {
        "name": (_string, _REQUIRED),
        "goal": (_choice("minimize", "maximize"), "minimize"),
        "pattern": (_regex, None),
        "eval": (_optional_string, None),
        "min_delta": (_non_negative, 0.0),
        "trace": (_optional_string, None),
        "holdout": (_optional_string, None),
        "progress": (_string, None),
        "progress_goal": (_choice("minimize", "maximize"), "minimize"),
        "abort_after": (_fraction, 0.25),
        "abort_margin": (_non_negative, 0.1),
        "artefacts": (_string_list, ()),
        "eval_only": (_string_list, ()),
        "holdout_only": (_string_list, ()),
        "eval_timeout": (_duration, None),
        "guards": (_guards, ()),
        "evaluate": (_function, None),
        "python": (_string, None),
        "file": (_string, None),
        "key": (_string, None),
        "cases": (_string, None),
        "protect": (_string_list, ()),
    },
    "judge": {
        "baseline_runs": (_integer(1), 3),
        "z": (_non_negative, 1.0),
        "max_runs": (_integer(1), 5),
        "screen": (_non_negative, 0.25),
        "review_above": (_positive, None),
        "remeasure_every": (_integer(0), 0),
        "same_hardware": (_boolean, True),
        "rule": (_choice("fixed", "sequential"), "sequential"),
        "confirm_runs": (_integer(1), 5),
        "controls": (_boolean, True),
    },
    "agent": {
        "kind": (_choice(*AGENT_KINDS), None),
        "model": (_string, "claude-sonnet-4-6"),
        "run": (_string, None),
        "seed": (_integer(0), 0),
        "api_key_env": (_string, "ANTHROPIC_API_KEY"),
        "base_url": (_string, None),
        "max_cost_usd": (_positive, None),
        "max_tokens": (_integer(256), 8192),
        "timeout": (_duration, 600.0),
        "repair_attempts": (_integer(0), 1),
        "repair_window": (_duration, 30.0),
        "sampler": (_choice("tpe", "cmaes", "random"), "tpe"),
        "space": (_tables, {}),
        "tune": (_choice("optuna", "portfolio"), None),
        "tune_ratio": (_integer(1), 3),
        "sandbox_read": (_string_list, ()),
        "sandbox_write": (_string_list, ()),
        "sandbox_env": (_string_list, ()),
    },
    "runner": {
        "kind": (_choice("local", "ssh", "ray"), "local"),
        "gpus": (_int_list, ()),
        "hosts": (_string_list, ()),
        "identity_file": (_string, None),
        "known_hosts": (_string, None),
        "remote_dir": (_string, "~/.ratchet-remote"),
        "address": (_string, None),
        "max_slots": (_integer(1), None),
    },
    "stop": {
        "no_keep_after": (_integer(1), None),
        "failures_in_row": (_integer(1), None),
        "max_cost_usd": (_positive, None),
        "max_gpu_hours": (_positive, None),
        "target": (_number, None),
    },
    # [track]: an external tracker each experiment is also logged to.
    "track": {
        "mlflow": (_string, None),
        "experiment": (_string, None),
    },
    "sandbox": {
        "kind": (_choice("bwrap", "none"), "bwrap"),
        "network": (_boolean, False),
        "read": (_string_list, ()),
        "write": (_string_list, ()),
        "env": (_string_list, ()),
        "hosts": (_host_list, ()),
        "max_processes": (_integer(16), 512),
    },
}


# --- locating keys in the source text ------------------------------------------------------

_TABLE_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]")
_KEY_LINE = re.compile(r"^(\s*)([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*=\s*")


def _normal(relative: str) -> str:
    return posixpath.normpath(relative.replace("\\", "/"))


@dataclass(frozen=True)
class Span:
    line: int  # 1-based
    col: int  # 1-based, first character
    end_col: int  # 1-based, one past the last character


class _Locator:
    """Finds where a table or a key of ratchet.toml is written, for located errors."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines()
        self.tables: dict[str, Span] = {}
        self.keys: dict[tuple[str, str], Span] = {}
        self.values: dict[tuple[str, str], Span] = {}
        table = ""
        for number, text in enumerate(self.lines, start=1):
            stripped = text.split("#", 1)[0] if not text.lstrip().startswith(("'", '"')) else text
            if header := _TABLE_HEADER.match(stripped):
                table = header.group(1).strip().strip("\"'")
                start = text.index("[") + 1
                self.tables.setdefault(table, Span(number, start, len(text.rstrip()) + 1))
                continue
            if key := _KEY_LINE.match(text):
                name = key.group(2).strip("\"'")
                col = len(key.group(1)) + 1
                self.keys.setdefault((table, name), Span(number, col, col + len(key.group(2))))
                value_start = key.end() + 1
                value_text = text[key.end() :].split(" #", 1)[0].rstrip()
                self.values.setdefault(
                    (table, name), Span(number, value_start, value_start + max(1, len(value_text)))
                )

    def key(self, table: str, name: str) -> Span:
        return self.keys.get((table, name)) or self.table(table)

    def value(self, table: str, name: str) -> Span:
        return self.values.get((table, name)) or self.table(table)

    def table(self, table: str) -> Span:
        return self.tables.get(table) or Span(1, 1, 2)


def _error(path: str, span: Span, message: str) -> ConfigError:
    return ConfigError(path, span.line, span.col, message, span.end_col)


# --- loading ---------------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def _parse_toml(source: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        line, col = (int(position.group(1)), int(position.group(2))) if position else (1, 1)
        plain = _TOML_POSITION.sub("", message).strip().rstrip(".")
        raise ConfigError(
            path, line, col, f"this is not valid TOML ({plain}); check quotes, brackets and '='"
        ) from None


def _nearest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if close:
        return f'did you mean "{close[0]}"?'
    return "valid keys here are " + ", ".join(options)


def load_config(root: Path, config_path: Path | None = None) -> Config:
    """Reads and validates ratchet.toml in `root`; raises ConfigError on any mistake."""
    path = config_path or root / CONFIG_NAME
    shown = path.name
    if not path.is_file():
        raise ConfigError(
            shown, 1, 1, f"no {CONFIG_NAME} in {root}: run `ratchet init` there to write one"
        )
    try:
        source = path.read_text(encoding="utf-8-sig")  # a BOM (some Windows editors) is no key
    except UnicodeDecodeError:
        raise ConfigError(shown, 1, 1, "the file is not UTF-8 text; save it as UTF-8") from None
    return parse_config(source, root, shown)


def parse_config(source: str, root: Path, shown: str = CONFIG_NAME) -> Config:
    """Validates the text of a ratchet.toml whose folder is `root`."""
    data = _parse_toml(source, shown)
    where = _Locator(source)

    for table, value in data.items():
        if table not in _SCHEMA:
            raise _error(
                shown,
                where.table(table),
                f"unknown section [{table}]; {_nearest(table, list(_SCHEMA))}",
            )
        if not isinstance(value, dict):
            raise _error(
                shown,
                where.key("", table),
                f"`{table}` must be a section written [{table}], not a single value",
            )
    for table in ("loop", "metric"):
        if table not in data:
            raise ConfigError(
                shown, 1, 1, f"the [{table}] section is missing; add it (see `ratchet init`)"
            )

    values: dict[str, dict[str, Any]] = {}
    for table, keys in _SCHEMA.items():
        given = data.get(table, {})
        for name in given:
            if name not in keys:
                raise _error(
                    shown,
                    where.key(table, name),
                    f"unknown key `{name}` in [{table}]; {_nearest(name, list(keys))}",
                )
        values[table] = {}
        for name, (validate, default) in keys.items():
            if name not in given:
                if default is _REQUIRED:
                    raise _error(
                        shown,
                        where.table(table),
                        f"[{table}] needs `{name}`; add a line such as {_example(table, name)}",
                    )
                values[table][name] = default
                continue
            try:
                values[table][name] = validate(given[name])
            except _Invalid as problem:
                raise _error(shown, where.value(table, name), f"`{name}`: {problem}") from None

    return _build(root, values, where, shown, source)


def _example(table: str, name: str) -> str:
    examples = {
        ("loop", "editable"): 'editable = "train.py"',
        ("loop", "command"): 'command = "python train.py"',
        ("metric", "name"): 'name = "val_bpb"',
    }
    return examples.get((table, name), f"{name} = ...")


def _did_you_mean_file(root: Path, relative: str) -> str:
    """The nearest file name in the folder the path names, or what to do."""
    folder = (root / relative).parent
    names = (
        [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        if folder.is_dir()
        else []
    )
    close = difflib.get_close_matches(Path(relative).name, names, n=1, cutoff=0.6)
    if close:
        suggestion = (Path(relative).parent / close[0]).as_posix()
        return f'did you mean "{suggestion}"?'
    return "create it or fix the path"


def _inside(root: Path, relative: str) -> bool:
    resolved = (root / relative).resolve()
    return resolved == root.resolve() or root.resolve() in resolved.parents


def _build(
    root: Path, v: dict[str, dict[str, Any]], where: _Locator, shown: str, source: str
) -> Config:
    if v["agent"]["tune"] and v["agent"]["kind"] not in (None, *LLM_KINDS):
        raise _error(
            shown,
            where.key("agent", "tune"),
            '`tune` pairs a tuner with an LLM agent; set kind to "anthropic", "command" or '
            '"claude-code", or remove `tune`',
        )
    loop, metric, judge, agent, runner, sandbox = (
        v["loop"],
        v["metric"],
        v["judge"],
        v["agent"],
        v["runner"],
        v["sandbox"],
    )

    def fail(table: str, name: str, message: str) -> ConfigError:
        return _error(shown, where.value(table, name), message)

    for name, paths in (
        ("editable", [loop["editable"]]),
        ("program", [loop["program"]]),
        ("locked", list(loop["locked"])),
    ):
        for relative in paths:
            if Path(relative).is_absolute() or not _inside(root, relative):
                raise fail(
                    "loop",
                    name,
                    f"`{relative}` is outside the repository; "
                    "give a path relative to the folder of ratchet.toml",
                )
    # `./train.py` and `train.py` name one file: the guard compares normalised paths.
    editable = _normal(loop["editable"])
    loop["locked"] = [_normal(p) for p in loop["locked"]]
    if not (root / editable).is_file():
        raise fail(
            "loop",
            "editable",
            f"the editable file `{editable}` does not exist; " + _did_you_mean_file(root, editable),
        )
    if (root / editable).is_symlink():
        raise fail("loop", "editable", f"`{editable}` is a symbolic link; name the real file")
    if editable in loop["locked"]:
        raise fail(
            "loop",
            "locked",
            f"`{editable}` is both editable and locked; "
            "the editable file cannot be locked, remove it from `locked`",
        )
    for relative in loop["locked"]:
        if not (root / relative).exists():
            raise fail(
                "loop",
                "locked",
                f"the locked file `{relative}` does not exist; "
                "create it or remove it from `locked`",
            )

    budget = loop["budget"]
    timeout = loop["timeout"] if loop["timeout"] is not None else 2 * budget
    if timeout < budget:
        raise fail(
            "loop",
            "timeout",
            f"timeout ({format_duration(timeout)}) is shorter than the "
            f"budget ({format_duration(budget)}); make it at least the budget, "
            "or remove it for 2 x budget",
        )

    agent_kind = agent["kind"]
    if agent_kind == "command" and not agent["run"]:
        raise _error(
            shown,
            where.key("agent", "kind"),
            'the command agent needs `run`, e.g. run = "claude -p {prompt_file}"',
        )
    if runner["kind"] == "ssh" and not runner["hosts"]:
        raise _error(
            shown,
            where.key("runner", "kind"),
            'the ssh runner needs `hosts`, e.g. hosts = ["user@gpu-box:22"]',
        )
    if runner["kind"] == "ray" and not runner["address"]:
        raise _error(
            shown,
            where.key("runner", "kind"),
            'the ray runner needs `address`, e.g. address = "http://127.0.0.1:8265"',
        )

    _check_evaluator(root, metric, editable, where, shown)
    if metric["file"] and runner["kind"] != "local":
        raise fail(
            "metric",
            "file",
            f"`file` is read on this machine after the run, and the {runner['kind']} runner "
            "runs elsewhere: use the local runner, or an `evaluate` function",
        )

    return Config(
        root=root,
        loop=LoopConfig(
            editable=editable,
            locked=tuple(loop["locked"]),
            program=loop["program"],
            command=loop["command"],
            budget_s=budget,
            timeout_s=timeout,
            review=loop["review"],
            pipeline=loop["pipeline"],
            grace_s=loop["grace"],
        ),
        metric=MetricConfig(
            name=metric["name"],
            goal=metric["goal"],
            pattern=metric["pattern"],
            eval=metric["eval"],
            min_delta=metric["min_delta"],
            trace=metric["trace"],
            holdout=metric["holdout"],
            progress=metric["progress"],
            progress_goal=metric["progress_goal"],
            abort_after=metric["abort_after"],
            abort_margin=metric["abort_margin"],
            artefacts=_relative_paths(metric["artefacts"], root, fail, "artefacts"),
            eval_only=_relative_paths(metric["eval_only"], root, fail, "eval_only"),
            holdout_only=_holdout_only(metric, editable, root, fail),
            eval_timeout_s=metric["eval_timeout"],
            guards=metric["guards"],
            evaluate=metric["evaluate"],
            python=metric["python"],
            file=_normal(metric["file"]) if metric["file"] else None,
            key=metric["key"],
            cases=_normal(_relative_paths((metric["cases"],), root, fail, "cases")[0])
            if metric["cases"]
            else None,
            protect=metric["protect"],
        ),
        judge=JudgeConfig(
            baseline_runs=judge["baseline_runs"],
            z=judge["z"],
            max_runs=judge["max_runs"],
            screen=judge["screen"],
            review_above=judge["review_above"],
            remeasure_every=judge["remeasure_every"],
            same_hardware=judge["same_hardware"],
            rule=judge["rule"],
            confirm_runs=judge["confirm_runs"],
            controls=judge["controls"],
        ),
        agent=AgentConfig(
            kind=agent_kind,
            model=agent["model"],
            run=agent["run"],
            seed=agent["seed"],
            api_key_env=agent["api_key_env"],
            base_url=agent["base_url"],
            max_cost_usd=agent["max_cost_usd"],
            max_tokens=agent["max_tokens"],
            timeout_s=agent["timeout"],
            repair_attempts=agent["repair_attempts"],
            repair_window_s=agent["repair_window"],
            sampler=agent["sampler"],
            space=_space(agent["space"], where, shown),
            tune=agent["tune"],
            tune_ratio=agent["tune_ratio"],
            sandbox_read=agent["sandbox_read"],
            sandbox_write=agent["sandbox_write"],
            sandbox_env=agent["sandbox_env"],
        ),
        runner=RunnerConfig(
            kind=runner["kind"],
            gpus=runner["gpus"],
            hosts=runner["hosts"],
            identity_file=runner["identity_file"],
            known_hosts=runner["known_hosts"],
            remote_dir=runner["remote_dir"],
            address=runner["address"],
            max_slots=runner["max_slots"],
        ),
        source=source,
        stop=StopConfig(**v["stop"]),
        track=TrackConfig(**v["track"]),
        sandbox=SandboxConfig(**sandbox),  # the table's keys are the fields
    )


def _check_evaluator(
    root: Path,
    metric: dict[str, Any],
    editable: str,
    where: _Locator,
    shown: str,
) -> None:
    """`evaluate`, `file` and `key` (issue 23): which combinations mean something."""

    def fail(name: str, message: str) -> ConfigError:
        return _error(shown, where.value("metric", name), message)

    evaluate = metric["evaluate"]
    if evaluate and metric["eval"]:
        raise fail(
            "evaluate",
            "give either `eval` (a command whose output or file holds the metric) or "
            "`evaluate` (a function Ratchet calls), not both",
        )
    if evaluate and metric["file"]:
        raise fail(
            "file",
            "`evaluate` returns the metric; `file` is for an evaluator command that writes "
            "it: remove one of them",
        )
    if metric["pattern"] and (evaluate or metric["file"]):
        raise fail(
            "pattern",
            "`pattern` reads the output, but the metric comes from "
            + ("`evaluate`" if evaluate else "`file`")
            + "; remove `pattern`",
        )
    if metric["key"] and not (evaluate or metric["file"]):
        raise fail(
            "key",
            "`key` names the metric in `file` or in `evaluate`'s dict; add one of them, or "
            "remove `key`",
        )
    if metric["python"] and not evaluate:
        raise fail("python", "`python` runs `evaluate`; add `evaluate`, or remove `python`")
    if metric["file"]:
        relative = metric["file"]
        if Path(relative).is_absolute() or not _inside(root, relative):
            raise fail("file", f"`{relative}` is outside the project; give a relative path")
    if not evaluate:
        return
    path = _normal(evaluate.rsplit(":", 1)[0])
    if Path(path).is_absolute() or not _inside(root, path):
        raise fail("evaluate", f"`{path}` is outside the project; give a relative path")
    if path == editable:
        raise fail(
            "evaluate",
            f"`{path}` is the editable file; the evaluator must be a file the agent cannot "
            "change (list it in [loop] locked)",
        )
    if not (root / path).is_file():
        raise fail(
            "evaluate",
            f"the evaluator `{path}` does not exist; " + _did_you_mean_file(root, path),
        )


def _relative_paths(
    paths: tuple[str, ...], root: Path, fail: Callable[[str, str, str], ConfigError], key: str
) -> tuple[str, ...]:
    for relative in paths:
        if Path(relative).is_absolute() or not _inside(root, relative):
            raise fail("metric", key, f"`{relative}` is outside the project; give a relative path")
    return paths


def _holdout_only(
    metric: dict[str, Any], editable: str, root: Path, fail: Callable[[str, str, str], ConfigError]
) -> tuple[str, ...]:
    """`[metric] holdout_only`: relative paths, for a holdout command, none the editable file
    or an evaluator's file (those the command or the evaluator must see)."""
    paths = tuple(
        _normal(p) for p in _relative_paths(metric["holdout_only"], root, fail, "holdout_only")
    )
    if paths and not metric["holdout"]:
        raise fail(
            "metric",
            "holdout_only",
            "`holdout_only` names the holdout's files, but there is no `holdout` command; "
            'add one (e.g. holdout = "python evaluate.py --split test") or remove holdout_only',
        )
    for relative in paths:
        if relative == editable or relative in metric["eval_only"]:
            which = "the editable file" if relative == editable else "also in `eval_only`"
            raise fail(
                "metric",
                "holdout_only",
                f"`{relative}` is {which}; a holdout file is seen by the holdout alone",
            )
    return paths


# --- [agent.space.NAME] ----------------------------------------------------------------------

_SPACE_KEYS = ("low", "high", "log", "step", "choices", "freeze")


def _space(tables: dict[str, Any], where: _Locator, shown: str) -> dict[str, SpaceOverride]:
    """Each `[agent.space.NAME]` checked, with errors located on the offending key."""
    return {name: _override(name, keys, where, shown) for name, keys in tables.items()}


def _override(name: str, keys: dict[str, Any], where: _Locator, shown: str) -> SpaceOverride:
    table = f"agent.space.{name}"

    def fail(key: str, message: str) -> ConfigError:
        span = where.value(table, key) if key else where.table(table)
        return _error(shown, span, f"[{table}] {message}")

    for key in keys:
        if key not in _SPACE_KEYS:
            raise _error(
                shown,
                where.key(table, key),
                f"unknown key `{key}` in [{table}]; {_nearest(key, list(_SPACE_KEYS))}",
            )
    checks: dict[str, Callable[[Any], Any]] = {
        "low": _number,
        "high": _number,
        "log": _boolean,
        "step": _positive,
        "freeze": _boolean,
    }
    got: dict[str, Any] = {}
    for key, check in checks.items():
        if key in keys:
            try:
                got[key] = check(keys[key])
            except _Invalid as problem:
                raise fail(key, f"`{key}`: {problem}") from None
    choices = keys.get("choices", [])
    if "choices" in keys and (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, int | float | str | bool) for c in choices)
    ):
        raise fail("choices", "`choices`: expected a non-empty list of values, such as [32, 64]")
    if choices and ({"low", "high", "log", "step"} & set(got)):
        raise fail("choices", "give either `choices` or a range (`low`, `high`), not both")
    low, high = got.get("low"), got.get("high")
    if low is not None and high is not None and not low < high:
        raise fail("high", f"`high` ({high:g}) must be above `low` ({low:g}); swap them")
    if got.get("log") and low is not None and low <= 0:
        raise fail("low", f"a log range needs `low` above zero, not {low:g}; or set log = false")
    if got.get("log") and "step" in got:
        raise fail("step", "a log range cannot have a `step`; remove one of them")
    return SpaceOverride(choices=tuple(choices), **got)
