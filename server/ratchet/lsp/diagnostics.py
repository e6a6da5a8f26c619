"""Words for results, and ratchet.toml and locked-file mistakes as diagnostics (source
`ratchet`). Proposals and crashes on the editable file are in marks.py. Pure functions."""

from __future__ import annotations

from collections.abc import Callable

from lsprotocol import types

from ..config import ConfigError
from ..experiment import Experiment
from .textops import utf16_units

SOURCE = "ratchet"


def format_value(value: float) -> str:
    return f"{value:.6g}"


def change_percent(value: float, base: float) -> str | None:
    """`−0.47%` / `+1.20%`: the relative change, with a true minus sign."""
    if base == 0:
        return None
    percent = 100.0 * (value - base) / abs(base)
    return f"{percent:+.2f}%".replace("-", "−")


def summary(exp: Experiment, base: float | None, metric_name: str) -> str:
    """`kept: val_bpb 0.9979 → 0.9932 (−0.47%)`, or `crashed: <why>`."""
    status = str(exp.status)
    if exp.status.measured and exp.metric is not None:
        if base is None:
            return f"{status}: {metric_name} {format_value(exp.metric)}"
        text = f"{status}: {metric_name} {format_value(base)} → {format_value(exp.metric)}"
        percent = change_percent(exp.metric, base)
        return f"{text} ({percent})" if percent else text
    reason = exp.reason
    if reason.startswith(status + ":"):
        reason = reason[len(status) + 1 :].strip()
    return f"{status}: {reason or 'no reason recorded'}"


def holdout_words(exp: Experiment, base: Experiment | None, metric_name: str) -> str:
    """`holdout 0.65 beside score 0.94 (exp 3: holdout 0.35, score 0.56)`: the sealed
    holdout (measured on a new best only) beside the dev number, and the best's before it;
    "" where it has none."""
    if exp.holdout is None:
        return ""
    text = f"holdout {format_value(exp.holdout)}"
    if exp.metric is not None:
        text += f" beside {metric_name} {format_value(exp.metric)}"
    if base is not None and base.id != exp.id and base.holdout is not None:
        dev = f", {metric_name} {format_value(base.metric)}" if base.metric is not None else ""
        text += f" (exp {base.id}: holdout {format_value(base.holdout)}{dev})"
    return text


def config_diagnostic(
    error: ConfigError, source_text: str, units: Callable[[str], int] = utf16_units
) -> types.Diagnostic:
    """A ratchet.toml mistake as an Error at its exact range (ConfigError is 1-based)."""
    lines = source_text.splitlines() or [""]
    line = max(0, min(error.line - 1, len(lines) - 1))
    text = lines[line]
    start = max(0, error.col - 1)
    end = max(start + 1, (error.end_col or len(text) + 1) - 1)
    end = min(end, len(text)) if text else 0
    start = min(start, end)
    return types.Diagnostic(
        range=types.Range(
            types.Position(line, units(text[:start])), types.Position(line, units(text[:end]))
        ),
        message=error.message,
        severity=types.DiagnosticSeverity.Error,
        source=SOURCE,
        code="config",
        data={"kind": "config"},
    )


def locked_diagnostic(path: str, message: str) -> types.Diagnostic:
    """A locked file changed while a loop runs: an Error on the file's first line."""
    return types.Diagnostic(
        range=types.Range(types.Position(0, 0), types.Position(1, 0)),
        message=message,
        severity=types.DiagnosticSeverity.Error,
        source=SOURCE,
        code="locked-changed",
        data={"kind": "locked", "path": path},
    )
