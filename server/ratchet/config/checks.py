"""The checks across keys, and against the files the keys name; each error is located.

One key's own value is checked as it is read (values.py); what needs two keys, or the
folder, is checked here once the typed sections exist.
"""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import replace
from pathlib import Path
from typing import Any

from .model import LLM_KINDS, Config, LoopConfig, MetricConfig, SpaceOverride
from .source import ConfigError, Source, nearest
from .values import Invalid, boolean, format_duration, number, positive


def checked(config: Config, where: Source) -> Config:
    """The config once its keys agree; paths come back normalised."""
    agent, runner = config.agent, config.runner
    if agent.tune and agent.kind not in (None, *LLM_KINDS):
        raise where.error(
            where.key("agent", "tune"),
            '`tune` pairs a tuner with an LLM agent; set kind to "anthropic", "command" or '
            '"claude-code", or remove `tune`',
        )
    loop = _loop(config.root, config.loop, where)
    if agent.kind == "command" and not agent.run:
        message = 'the command agent needs `run`, e.g. run = "claude -p {prompt_file}"'
        raise where.error(where.key("agent", "kind"), message)
    if runner.kind == "ssh" and not runner.hosts:
        message = 'the ssh runner needs `hosts`, e.g. hosts = ["user@gpu-box:22"]'
        raise where.error(where.key("runner", "kind"), message)
    if runner.kind == "ray" and not runner.address:
        message = 'the ray runner needs `address`, e.g. address = "http://127.0.0.1:8265"'
        raise where.error(where.key("runner", "kind"), message)
    _evaluator(config.root, config.metric, loop.editable, where)
    if config.metric.file and runner.kind != "local":
        raise _at(
            where,
            "file",
            f"`file` is read on this machine after the run, and the {runner.kind} runner "
            "runs elsewhere: use the local runner, or an `evaluate` function",
        )
    metric = _metric_paths(config.root, config.metric, loop.editable, where)
    return replace(config, loop=loop, metric=metric)


def normal(relative: str) -> str:
    return posixpath.normpath(relative.replace("\\", "/"))


def _inside(root: Path, relative: str) -> bool:
    resolved = (root / relative).resolve()
    return resolved == root.resolve() or root.resolve() in resolved.parents


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


def _loop(root: Path, loop: LoopConfig, where: Source) -> LoopConfig:
    def fail(name: str, message: str) -> ConfigError:
        return where.error(where.value("loop", name), message)

    named = (("editable", [loop.editable]), ("program", [loop.program]), ("locked", loop.locked))
    for name, paths in named:
        for relative in paths:
            if Path(relative).is_absolute() or not _inside(root, relative):
                raise fail(
                    name,
                    f"`{relative}` is outside the repository; "
                    "give a path relative to the folder of ratchet.toml",
                )
    # `./train.py` and `train.py` name one file: the guard compares normalised paths.
    editable, locked = normal(loop.editable), tuple(normal(p) for p in loop.locked)
    if not (root / editable).is_file():
        raise fail(
            "editable",
            f"the editable file `{editable}` does not exist; " + _did_you_mean_file(root, editable),
        )
    if (root / editable).is_symlink():
        raise fail("editable", f"`{editable}` is a symbolic link; name the real file")
    if editable in locked:
        raise fail(
            "locked",
            f"`{editable}` is both editable and locked; "
            "the editable file cannot be locked, remove it from `locked`",
        )
    for relative in locked:
        if not (root / relative).exists():
            raise fail(
                "locked",
                f"the locked file `{relative}` does not exist; "
                "create it or remove it from `locked`",
            )
    if loop.timeout_s < loop.budget_s:
        raise fail(
            "timeout",
            f"timeout ({format_duration(loop.timeout_s)}) is shorter than the "
            f"budget ({format_duration(loop.budget_s)}); make it at least the budget, "
            "or remove it for 2 x budget",
        )
    return replace(loop, editable=editable, locked=locked)


def _at(where: Source, name: str, message: str) -> ConfigError:
    """An error on the value of `[metric] name`."""
    return where.error(where.value("metric", name), message)


def _evaluator(root: Path, metric: MetricConfig, editable: str, where: Source) -> None:
    """`evaluate`, `file` and `key` (issue 23): which combinations mean something."""
    evaluate, file = metric.evaluate, metric.file
    if evaluate and metric.eval:
        raise _at(
            where,
            "evaluate",
            "give either `eval` (a command whose output or file holds the metric) or "
            "`evaluate` (a function Ratchet calls), not both",
        )
    if evaluate and file:
        raise _at(
            where,
            "file",
            "`evaluate` returns the metric; `file` is for an evaluator command that writes "
            "it: remove one of them",
        )
    if metric.pattern and (evaluate or file):
        source = "`evaluate`" if evaluate else "`file`"
        message = f"`pattern` reads the output, but the metric comes from {source}"
        raise _at(where, "pattern", message + "; remove `pattern`")
    if metric.key and not (evaluate or file):
        raise _at(
            where,
            "key",
            "`key` names the metric in `file` or in `evaluate`'s dict; add one of them, or "
            "remove `key`",
        )
    if metric.python and not evaluate:
        message = "`python` runs `evaluate`; add `evaluate`, or remove `python`"
        raise _at(where, "python", message)
    if file and (Path(file).is_absolute() or not _inside(root, file)):
        raise _at(where, "file", f"`{file}` is outside the project; give a relative path")
    if not evaluate:
        return
    path = normal(evaluate.rsplit(":", 1)[0])
    if Path(path).is_absolute() or not _inside(root, path):
        raise _at(where, "evaluate", f"`{path}` is outside the project; give a relative path")
    if path == editable:
        raise _at(
            where,
            "evaluate",
            f"`{path}` is the editable file; the evaluator must be a file the agent cannot "
            "change (list it in [loop] locked)",
        )
    if not (root / path).is_file():
        raise _at(
            where,
            "evaluate",
            f"the evaluator `{path}` does not exist; " + _did_you_mean_file(root, path),
        )


def _metric_paths(root: Path, metric: MetricConfig, editable: str, where: Source) -> MetricConfig:
    """The files [metric] names: inside the project, holdout files seen by the holdout alone."""
    for name in ("artefacts", "eval_only", "holdout_only"):
        _inside_project(root, name, getattr(metric, name), where)
    holdout_only = tuple(normal(p) for p in metric.holdout_only)
    if holdout_only and not metric.holdout:
        raise _at(
            where,
            "holdout_only",
            "`holdout_only` names the holdout's files, but there is no `holdout` command; "
            'add one (e.g. holdout = "python evaluate.py --split test") or remove holdout_only',
        )
    for relative in holdout_only:
        # The command or the evaluator must see these, so no holdout file may be one.
        if relative == editable or relative in metric.eval_only:
            which = "the editable file" if relative == editable else "also in `eval_only`"
            raise _at(
                where,
                "holdout_only",
                f"`{relative}` is {which}; a holdout file is seen by the holdout alone",
            )
    _inside_project(root, "cases", (metric.cases,) if metric.cases else (), where)
    return replace(
        metric,
        holdout_only=holdout_only,
        file=normal(metric.file) if metric.file else None,
        cases=normal(metric.cases) if metric.cases else None,
    )


def _inside_project(root: Path, name: str, paths: tuple[str, ...], where: Source) -> None:
    for relative in paths:
        if Path(relative).is_absolute() or not _inside(root, relative):
            raise _at(where, name, f"`{relative}` is outside the project; give a relative path")


# --- [agent.space.NAME] ----------------------------------------------------------------------

_SPACE_CHECKS = {"low": number, "high": number, "log": boolean, "step": positive, "freeze": boolean}
_SPACE_KEYS = ["low", "high", "log", "step", "choices", "freeze"]


def space(tables: dict[str, Any], where: Source) -> dict[str, SpaceOverride]:
    """Each `[agent.space.NAME]` checked, with errors located on the offending key."""
    return {name: _override(name, keys, where) for name, keys in tables.items()}


def _override(name: str, keys: dict[str, Any], where: Source) -> SpaceOverride:
    table = f"agent.space.{name}"

    def fail(key: str, message: str) -> ConfigError:
        return where.error(where.value(table, key), f"[{table}] {message}")

    for key in keys:
        if key not in _SPACE_KEYS:
            message = f"unknown key `{key}` in [{table}]; {nearest(key, _SPACE_KEYS)}"
            raise where.error(where.key(table, key), message)
    got: dict[str, Any] = {}
    for key, check in _SPACE_CHECKS.items():
        if key in keys:
            try:
                got[key] = check(keys[key])
            except Invalid as problem:
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
