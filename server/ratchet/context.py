"""What an agent is shown of the loop's past: a bounded history table, with the log tails of
recent crashes and the run traces of recent experiments ("traces are everything")."""

from __future__ import annotations

from pathlib import Path

from .experiment import Experiment, HistoryEntry, Status

HISTORY_SIZE = 60  # experiments shown to the agent
RECENT = 10  # the last experiments whose log tails and traces are shown
LOG_TAIL_FOR_AGENT = 30  # lines


def history(experiments: list[Experiment], best: Experiment | None) -> tuple[HistoryEntry, ...]:
    entries = []
    recent = len(experiments) - RECENT
    for exp in experiments[-HISTORY_SIZE:]:
        delta = None
        if exp.metric is not None and best is not None and best.metric is not None:
            delta = exp.metric - best.metric
        log_tail = ""
        if exp.status in (Status.CRASHED, Status.TIMEOUT) and exp.id >= recent:
            log_tail = "\n".join(exp.log_tail.splitlines()[-LOG_TAIL_FOR_AGENT:])
        description = f"{exp.description} ({exp.reason})" if exp.reason else exp.description
        entries.append(
            HistoryEntry(
                exp.id,
                str(exp.status),
                exp.metric,
                delta,
                description,
                log_tail,
                exp.trace_tail if exp.id >= recent else "",
                exp.digest,
            )
        )
    return tuple(entries)


def read_program(path: Path) -> str:
    """program.md as it is now: re-read before every proposal, so a person can steer."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
