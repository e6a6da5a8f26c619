"""Experiments, proposals and mistakes → LSP diagnostics (source `ratchet`).

Everything is located by content in the text the user has now, so a result stays on the
lines its change touched while the user edits around it, and is dropped once those lines
no longer match. Pure functions: the session gathers the inputs and publishes the output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lsprotocol import types

from ..config import ConfigError
from ..experiment import Experiment, Status
from .textops import Block, Lines, blocks_between, find_crash, locate, parse_blocks, utf16_units

SOURCE = "ratchet"
MAX_PER_LINE = 5  # results shown on one line, newest (and most important) first
MAX_DIAGNOSTICS = 200
MAX_BLOCKS = 5  # located blocks of one experiment

_SEVERITY = {
    Status.KEPT: types.DiagnosticSeverity.Information,
    Status.DISCARDED: types.DiagnosticSeverity.Hint,
    Status.REJECTED: types.DiagnosticSeverity.Hint,
    Status.INTERRUPTED: types.DiagnosticSeverity.Hint,
    Status.CRASHED: types.DiagnosticSeverity.Error,
}


@dataclass(frozen=True)
class PendingProposal:
    """A proposal waiting for accept or reject (from ExperimentProposed)."""

    id: int
    description: str
    diff: str
    old_text: str
    new_text: str


def format_value(value: float) -> str:
    return f"{value:.6g}"


def change_percent(value: float, base: float) -> str | None:
    """`−0.47%` / `+1.20%`: the relative change, with a true minus sign."""
    if base == 0:
        return None
    percent = 100.0 * (value - base) / abs(base)
    return f"{percent:+.2f}%".replace("-", "−")


def base_metrics(experiments: Iterable[Experiment]) -> dict[int, float | None]:
    """Each experiment's base value: the metric of the kept experiment it was made from."""
    by_commit = {e.commit: e.metric for e in experiments if e.status is Status.KEPT and e.commit}
    return {e.id: by_commit.get(e.base_commit) for e in experiments}


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


def _result_message(head: str, exp: Experiment) -> str:
    """The head line, the description, and for a measured result the judge's reason in words
    (`kept: -0.0031 over 5 runs, 3.4 x noise`)."""
    message = f"{head}\n{exp.description}"
    if exp.status.measured and exp.reason:
        message += f"\n{exp.reason}"
    return message


def _range(lines: Lines, start: int, end: int, units: Callable[[str], int]) -> types.Range:
    if not len(lines):
        return types.Range(types.Position(0, 0), types.Position(0, 0))
    start = min(start, len(lines) - 1)
    last = min(max(end - 1, start), len(lines) - 1)
    return types.Range(types.Position(start, 0), types.Position(last, units(lines.raw[last])))


def _located(blocks: list[Block], lines: Lines) -> list[tuple[int, int]]:
    found = []
    for block in blocks:
        where = locate(block, lines)
        if where is not None and (where.start, where.end) not in found:
            found.append((where.start, where.end))
        if len(found) >= MAX_BLOCKS:
            break
    return found


def editable_diagnostics(
    text: str,
    experiments: list[Experiment],
    proposals: Iterable[PendingProposal],
    metric_name: str,
    editable: str,
    texts: dict[int, str],
    units: Callable[[str], int] = utf16_units,
) -> list[types.Diagnostic]:
    """Diagnostics for the editable file as the user has it now (`text`)."""
    lines = Lines(text)
    out: list[tuple[int, types.Diagnostic]] = []  # (priority, diagnostic); lower shows first

    for proposal in proposals:
        message = (
            f"exp {proposal.id} proposed: {proposal.description} — waiting for review: "
            f"accept to run it, or reject\n\n{proposal.diff}"
        )
        data = {"kind": "proposal", "experiment": proposal.id}
        for start, end in _located(blocks_between(proposal.old_text, proposal.new_text), lines):
            out.append(
                (
                    0,
                    types.Diagnostic(
                        range=_range(lines, start, end, units),
                        message=message,
                        severity=types.DiagnosticSeverity.Warning,
                        source=SOURCE,
                        code="proposed",
                        data=data,
                    ),
                )
            )

    bases = base_metrics(experiments)
    for exp in sorted(experiments, key=lambda e: e.id, reverse=True):
        if not exp.status.is_final or exp.source == "baseline" or not exp.diff:
            continue
        head = f"exp {exp.id} {summary(exp, bases.get(exp.id), metric_name)}"
        data = {"kind": "result", "experiment": exp.id, "status": str(exp.status)}
        crash = find_crash(exp.log_tail, editable) if exp.status is Status.CRASHED else None
        if crash is not None and exp.id in texts:
            crash_lines = texts[exp.id].splitlines()
            if 0 < crash.line <= len(crash_lines):
                where = lines.find([crash_lines[crash.line - 1]], crash.line - 1)
                if where is not None:
                    message = f"exp {exp.id} crashed: {crash.message or exp.reason}"
                    out.append(
                        (
                            1,
                            types.Diagnostic(
                                range=_range(lines, where, where + 1, units),
                                message=f"{message}\n{exp.description}",
                                severity=types.DiagnosticSeverity.Error,
                                source=SOURCE,
                                code="crashed",
                                data={**data, "kind": "crash"},
                            ),
                        )
                    )
                    continue
        severity = _SEVERITY.get(exp.status, types.DiagnosticSeverity.Warning)
        priority = 1 if exp.status is Status.CRASHED else 2 if exp.status is Status.KEPT else 3
        for start, end in _located(parse_blocks(exp.diff), lines):
            out.append(
                (
                    priority,
                    types.Diagnostic(
                        range=_range(lines, start, end, units),
                        message=_result_message(head, exp),
                        severity=severity,
                        source=SOURCE,
                        code=str(exp.status),
                        data=data,
                    ),
                )
            )

    shown: list[types.Diagnostic] = []
    per_line: dict[int, int] = {}
    for _, diagnostic in sorted(out, key=lambda item: item[0]):  # stable: newest first
        line = diagnostic.range.start.line
        if per_line.get(line, 0) >= MAX_PER_LINE:
            continue
        per_line[line] = per_line.get(line, 0) + 1
        shown.append(diagnostic)
        if len(shown) >= MAX_DIAGNOSTICS:
            break
    return shown


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
