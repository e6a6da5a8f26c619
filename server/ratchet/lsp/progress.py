"""Work-done progress for each running experiment: begin with its description, reports with
the share of the budget elapsed and the last line of output (a few per second at most, however
fast the experiment prints), end with the result. Cancelling from the client stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from lsprotocol import types

from .editor import Editor

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 0.25  # at most four reports a second per experiment
LINE_LIMIT = 160


class _Bar:
    def __init__(self, editor: Editor, experiment: int, description: str, budget_s: float):
        self.editor = editor
        self.experiment = experiment
        self.description = description
        self.budget_s = max(budget_s, 1e-9)
        self.token = f"ratchet/exp/{experiment}/{uuid.uuid4().hex[:8]}"
        self.started = time.monotonic()
        self.last_line = ""
        self.end_message = ""
        self.runs = 1
        self.done = asyncio.Event()
        self._sent: tuple[int, str] | None = None

    def percentage(self) -> int:
        return min(100, int(100 * (time.monotonic() - self.started) / self.budget_s))

    async def run(self) -> None:
        progress = self.editor.progress
        try:
            await progress.create_async(self.token)
        except Exception as error:  # the client refused or went away: no bar, no harm
            log.info("no progress bar for exp %s: %s", self.experiment, error)
            return
        try:
            progress.begin(
                self.token,
                types.WorkDoneProgressBegin(
                    title=f"Ratchet: experiment {self.experiment}",
                    message=self.description,
                    percentage=0,
                    cancellable=True,
                ),
            )
            while not self.done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.done.wait(), REPORT_INTERVAL_S)
                if self.done.is_set():
                    break
                now = (self.percentage(), self.last_line[:LINE_LIMIT])
                if now != self._sent:
                    self._sent = now
                    progress.report(
                        self.token,
                        types.WorkDoneProgressReport(
                            message=now[1] or self.description, percentage=now[0]
                        ),
                    )
            progress.end(self.token, types.WorkDoneProgressEnd(message=self.end_message))
        finally:
            progress.tokens.pop(self.token, None)


class ProgressReporter:
    """One progress bar per running experiment, keyed by experiment and by token."""

    def __init__(self, editor: Editor, on_cancel: Callable[[int], None]) -> None:
        self.editor = editor
        self.on_cancel = on_cancel
        self._bars: dict[int, _Bar] = {}
        self._tokens: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.editor.supports_progress

    def started(self, experiment: int, description: str, budget_s: float) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(experiment)
        if bar is not None:  # measured again (a re-run, or the baseline's repeats): same bar
            bar.runs += 1
            bar.started = time.monotonic()
            bar.last_line = f"run {bar.runs}: {description}"
            return
        bar = _Bar(self.editor, experiment, description, budget_s)
        self._bars[experiment] = bar
        self._tokens[bar.token] = experiment
        task = asyncio.get_running_loop().create_task(bar.run())
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, bar))

    def line(self, experiment: int, text: str) -> None:
        bar = self._bars.get(experiment)
        if bar is not None:
            bar.last_line = text

    def finished(self, experiment: int, message: str) -> None:
        bar = self._bars.pop(experiment, None)
        if bar is not None:
            bar.end_message = message
            bar.done.set()

    def finish_all(self, message: str) -> None:
        for experiment in list(self._bars):
            self.finished(experiment, message)

    def cancelled(self, token: types.ProgressToken) -> bool:
        """The client cancelled a bar: stop its experiment (it is recorded interrupted)."""
        experiment = self._tokens.get(str(token))
        if experiment is None or experiment not in self._bars:
            return False
        self.on_cancel(experiment)
        return True

    def _done(self, task: asyncio.Task[None], bar: _Bar) -> None:
        self._tasks.discard(task)
        self._tokens.pop(bar.token, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("progress of exp %s failed", bar.experiment, exc_info=task.exception())
