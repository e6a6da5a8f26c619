"""The terminal's view of the loop: renders engine events with rich (live in a terminal,
one plain line per event otherwise, for logs and CI)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .engine import Engine
from .events import (
    Event,
    ExperimentFinished,
    ExperimentProposed,
    ExperimentStarted,
    LoopStateChanged,
    OutputLine,
)
from .experiment import Experiment, Status

STATUS_STYLE = {
    Status.KEPT: "bold green",
    Status.DISCARDED: "dim",
    Status.CRASHED: "red",
    Status.TIMEOUT: "red",
    Status.INVALID: "yellow",
    Status.VOIDED: "magenta",
    Status.INTERRUPTED: "yellow",
    Status.REJECTED: "dim",
    Status.LOST: "yellow",
    Status.ABORTED: "dim",
}


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _elapsed(exp: Experiment) -> float:
    """A finished experiment's run time; a running one's time so far (not 0:00)."""
    if exp.status is Status.RUNNING and exp.started_at:
        return max(0.0, time.time() - exp.started_at)
    return exp.run_s


def format_metric(value: float | None) -> str:
    return "—" if value is None else f"{value:.6f}"


def experiments_table(
    experiments: list[Experiment], metric_name: str, limit: int | None = None
) -> Table:
    table = Table(show_edge=False, header_style="bold")
    start = max(0, len(experiments) - limit) if limit else 0
    # `[metric] holdout`, measured on new bests: a column only where the rows shown hold one.
    holdout = any(e.holdout is not None for e in experiments[start:])
    for column, justify in (
        ("exp", "right"),
        ("status", "left"),
        (metric_name, "right"),
        ("Δ best", "right"),
        *((("holdout", "right"),) if holdout else ()),
        ("time", "right"),
        ("commit", "left"),
        ("description", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column != "description")
    # The best just before the window, found backwards: the rows built are only those shown.
    best: float | None = next(
        (e.metric for e in reversed(experiments[:start]) if e.status is Status.KEPT), None
    )
    rows = []
    for exp in experiments[start:]:
        delta = "" if exp.metric is None or best is None else f"{exp.metric - best:+.6f}"
        if exp.status is Status.KEPT:
            best = exp.metric
        # Text, not markup: a reason holds `[agent.space.NAME]`, an agent's words anything.
        description = Text(exp.description)
        if exp.reason and exp.status not in (Status.KEPT, Status.DISCARDED):
            description.append(f"  {exp.reason}", style="dim")
        rows.append(
            (
                str(exp.id),
                Text(str(exp.status), style=STATUS_STYLE.get(exp.status, "")),
                format_metric(exp.metric),
                delta,
                *(
                    (format_metric(exp.holdout) if exp.holdout is not None else "",)
                    if holdout
                    else ()
                ),
                clock(_elapsed(exp)),
                (exp.commit or "")[:7],
                description,
            )
        )
    for row in rows:
        table.add_row(*row)
    return table


class LoopView:
    """Subscribes to the engine and keeps the terminal current."""

    def __init__(self, engine: Engine, console: Console, live: bool = True) -> None:
        self.engine = engine
        self.console = console
        self.use_live = live
        self.live: Live | None = None
        self._last_refresh = 0.0

    def __enter__(self) -> LoopView:
        if self.console.is_terminal and self.use_live:
            self.live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=False
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._render(final=True))
            self.live.__exit__(*exc)

    def on_event(self, event: Event) -> None:
        if self.live is not None:
            now = time.monotonic()
            if not isinstance(event, OutputLine) or now - self._last_refresh > 0.25:
                self._last_refresh = now
                self.live.update(self._render())
            return
        self._print_plain(event)

    def _print_plain(self, event: Event) -> None:
        if isinstance(event, ExperimentStarted):
            self.console.print(
                f"exp {event.id} running: {event.description}", highlight=False, markup=False
            )
        elif isinstance(event, ExperimentProposed) and event.awaiting_review:
            self.console.print(
                f"exp {event.id} awaits review: {event.description}", highlight=False, markup=False
            )
        elif isinstance(event, ExperimentFinished):
            exp = event.experiment
            self.console.print(
                f"exp {exp.id} {exp.status}: {self.engine.config.metric.name} "
                f"{format_metric(exp.metric)} ({clock(exp.run_s)}) {exp.reason}",
                highlight=False,
                markup=False,
            )
        elif isinstance(event, LoopStateChanged) and event.message:
            self.console.print(f"[{event.state}] {event.message}", highlight=False, markup=False)

    def _render(self, final: bool = False) -> Group:
        status = self.engine.status()
        metric = self.engine.config.metric.name
        header = Text.assemble(
            ("ratchet ", "bold"),
            (f"{status['tag']} ", "cyan"),
            (f"{status['state']}  ", ""),
            (f"best {metric} {format_metric(status['best'])}", "bold green"),
            (f"  {status['kept']}/{status['total']} kept", ""),
        )
        if status["gainPercent"] is not None:
            header.append(f"  ({status['gainPercent']:+.2f}% vs baseline)")
        parts: list[Any] = [header]
        if not final:
            for running in status["running"]:
                parts.append(
                    Text.assemble(
                        ("▶ ", "yellow"),
                        f"exp {running['id']} · {clock(running['elapsed'])}/"
                        f"{clock(running['budget'])} · {running['description']}",
                        ("\n  " + running["lastLine"][-120:], "dim"),
                    )
                )
        parts.append(
            experiments_table(self.engine.experiments(), metric, limit=None if final else 12)
        )
        return Group(*parts)
