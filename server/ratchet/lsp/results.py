"""The experiments as the editor shows them: the rows (light, kept current by the loop's
deltas), the pending proposals, one cached `Result` per shown experiment, the texts code
actions need, and where all of it sits in the editable file now.

Cost does not grow with the record: a finished experiment costs one row and at most one
Result; a keystroke re-places only the kept and recent experiments, off the event loop; code
actions, hints and lenses read the last placement.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types

from ..control import wire
from ..experiment import Experiment, Status
from ..history import light
from . import marks, names
from .placement import Placed, Result, WaitingProposal, place, result_of, shown_ids
from .project import Project

log = logging.getLogger(__name__)

PUBLISH_DELAY_S = 0.03
RECENT_TEXTS = 60  # experiments whose code is fetched ahead, for code actions
KEPT_TEXTS = 100


class Results:
    def __init__(self, project: Project, changed: Callable[[], None]) -> None:
        self.project = project
        self.changed = changed  # the status may have changed
        self.rows: dict[int, Experiment] = {}  # light rows, by id (ids ascend)
        self.proposals: dict[int, WaitingProposal] = {}
        self.results: dict[int, Result] = {}
        self.texts: dict[int, str] = {}
        self._kept_rows: dict[str, Experiment] = {}  # kept commit → its light row
        self._kept: list[int] = []  # kept experiments with a commit, ascending
        self._version = 0  # counts changes to the rows
        self._summary: tuple[int, str, dict[str, Any]] | None = None
        self._text: str | None = None
        self._raw: list[str] = []
        self.placed: list[Placed] = []
        self._handle: asyncio.TimerHandle | None = None
        self._refresh = False

    # --- the rows ----------------------------------------------------------------------------

    async def reload(self) -> None:
        """Every row again from the ledger: at open, and when a loop attaches or ends."""
        reader = self.project.reader
        if reader is None:
            return
        rows = await asyncio.to_thread(reader.experiments)
        if reader is not self.project.reader:
            return
        if any(r.tag != reader.tag for r in self.rows.values()):
            self.results.clear()
            self.texts.clear()
        self.rows = {r.id: _light(r) for r in rows}
        self._kept_rows = {r.commit: r for r in rows if r.status is Status.KEPT and r.commit}
        self._kept = [r.id for r in rows if r.status is Status.KEPT and r.commit]
        self._version += 1
        await self.fill()
        self.schedule(refresh=True)
        self.changed()

    def update(self, exp: Experiment) -> None:
        """One experiment changed (a delta from the loop): its row, its Result, the client."""
        known = self.rows.get(exp.id)
        if known is not None and known.status.is_final and not exp.status.is_final:
            return  # a late read of it while it ran: the final row stands
        light = _light(exp)
        self.rows[exp.id] = light
        self._version += 1
        if exp.status is Status.KEPT and exp.commit:
            self._kept_rows[exp.commit] = light
            if exp.id not in self._kept:
                bisect.insort(self._kept, exp.id)
        if exp.status.is_final:
            self.proposals.pop(exp.id, None)
            self.results.pop(exp.id, None)
            self.project.spawn(self._after_finish(exp))
        self.project.editor.notify(names.EXPERIMENT_NOTIFICATION, wire.row(light, light=True))
        self.schedule(refresh=True)

    async def fetch(self, experiment: int) -> None:
        """An experiment changed state in the loop (proposed, started): its row again."""
        reader = self.project.reader
        if reader is None:
            return
        exp = await asyncio.to_thread(reader.experiment, experiment)
        if exp is not None and reader is self.project.reader:
            self.update(exp)

    async def _after_finish(self, exp: Experiment) -> None:
        await self.fill(exp if exp.diff or not exp.commit else None)

    def kept(self) -> list[Experiment]:
        return [self.rows[i] for i in self._kept]

    def best_id(self) -> int | None:
        if not self._kept or self.rows[self._kept[-1]].source == "baseline":
            return None
        return self._kept[-1]

    def summary(self, goal: str) -> dict[str, Any]:
        """The status's record fields from the rows in memory (no ledger read): what the
        status shows while no loop is attached. Made once per change of the rows."""
        if self._summary is not None and self._summary[:2] == (self._version, goal):
            return self._summary[2]
        kept = self.kept()
        best = kept[-1] if kept else None
        baseline = next((e for e in kept if e.source == "baseline"), None)
        gain = None
        if best and baseline and best.metric is not None and baseline.metric:
            better = (
                baseline.metric - best.metric
                if goal == "minimize"
                else best.metric - baseline.metric
            )
            gain = 100.0 * better / abs(baseline.metric)
        final = [e for e in self.rows.values() if e.status.is_final]
        summary = {
            "best": best.metric if best else None,
            "bestId": best.id if best else None,
            "baseline": baseline.metric if baseline else None,
            "gainPercent": gain,
            "kept": sum(1 for e in kept if e.source != "baseline"),
            "total": len(final),
            "crashed": sum(1 for e in final if e.status in (Status.CRASHED, Status.TIMEOUT)),
            "costUsd": round(sum(e.cost_usd for e in self.rows.values()), 4),
        }
        self._summary = (self._version, goal, summary)
        return summary

    def base_of(self, exp: Experiment) -> Experiment | None:
        """The kept row `exp` was made from (its metric, its holdout)."""
        return self._kept_rows.get(exp.base_commit)

    # --- what is fetched ahead ---------------------------------------------------------------

    async def fill(self, full: Experiment | None = None, extra: tuple[int, ...] = ()) -> None:
        """Makes the Results of the shown experiments that lack one, and fetches the texts code
        actions may need; all of it off the event loop, each experiment once."""
        reader = self.project.reader
        if reader is None or self.project.config is None:
            return
        shown = shown_ids(self.rows.values())
        wanted_texts = self._wanted_texts(shown) | set(extra)
        missing_texts = sorted(i for i in wanted_texts if i not in self.texts and i in self.rows)
        missing = [i for i in shown if i not in self.results]
        if not missing and not missing_texts:
            return
        config = self.project.config

        def fetch() -> tuple[dict[int, str], dict[int, Result]]:
            texts: dict[int, str] = {}
            for number in missing_texts:
                with contextlib.suppress(Exception):  # refused before it was committed, say
                    texts[number] = reader.text_of(number)
            made: dict[int, Result] = {}
            for number in missing:
                exp = full if full is not None and full.id == number else reader.experiment(number)
                if exp is None:
                    continue
                text = texts.get(number) or self.texts.get(number)
                if exp.status is Status.CRASHED and text is None and exp.commit:
                    with contextlib.suppress(Exception):
                        text = texts[number] = reader.text_of(number)
                # Its case evidence as `ratchet show` reads it: two indexed reads, once.
                cases = reader.case_changes(exp)
                made[number] = result_of(
                    exp, self.base_of(exp), config.metric.name, config.loop.editable, text, cases
                )
            return texts, made

        texts, made = await asyncio.to_thread(fetch)
        self.texts.update(texts)
        self.results.update(made)
        self.schedule(refresh=bool(made))

    def _wanted_texts(self, shown: list[int]) -> set[int]:
        kept = [e.id for e in self.kept()]
        final = [e.id for e in self.rows.values() if e.status.is_final and e.commit]
        crashed = {i for i in shown if self.rows[i].status is Status.CRASHED}
        return {*kept[:1], *kept[-KEPT_TEXTS:], *final[-RECENT_TEXTS:], *crashed}

    # --- proposals ---------------------------------------------------------------------------

    def proposed(self, proposal: WaitingProposal) -> None:
        self.proposals[proposal.id] = proposal
        self.schedule(refresh=True)

    def settled(self, experiment: int) -> None:
        if self.proposals.pop(experiment, None) is not None:
            self.schedule(refresh=True)

    def clear_proposals(self) -> None:
        if self.proposals:
            self.proposals.clear()
            self.schedule(refresh=True)

    # --- placing and publishing --------------------------------------------------------------

    def schedule(self, refresh: bool = False) -> None:
        """Places and publishes soon (a burst of changes gives one pass); until then, a
        request for hints or lenses places anew."""
        self._text = None
        self._refresh = self._refresh or refresh
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(PUBLISH_DELAY_S, self._due)

    def _due(self) -> None:
        self._handle = None
        refresh, self._refresh = self._refresh, False
        self.project.spawn(self.publish(refresh))

    async def placement(self) -> tuple[list[str], list[Placed]]:
        """Where everything sits in the editable file as the user has it now."""
        path = self.project.editable_path
        if path is None:
            return [], []
        text, _ = await self.project.text(path)
        if text != self._text:
            proposals = list(self.proposals.values())
            results = list(self.results.values())
            placed = await asyncio.to_thread(place, text, proposals, results)
            self._text, self._raw, self.placed = text, text.splitlines(), placed
        return self._raw, self.placed

    async def publish(self, refresh: bool = False) -> None:
        path = self.project.editable_path
        if path is None:
            return
        raw, placed = await self.placement()
        diagnostics = marks.diagnostics(
            placed, raw, self.proposals, self.results, self.project.editor.units, self.log_uri
        )
        self.project.editor.publish(self.project.editor.uri(path), diagnostics)
        if refresh:
            self.project.editor.refresh()

    def typed(self) -> None:
        """The user changed the editable file: its diagnostics follow the text."""
        self.schedule()

    def log_uri(self, result: Result) -> str | None:
        if not result.log_path:
            return None
        path = Path(result.log_path)
        path = path if path.is_absolute() else self.project.root / path
        return self.project.editor.uri(path)

    def at(self, first: int, last: int) -> list[Placed]:
        """The placed items on lines first..last (from the last placement: never waits)."""
        return [p for p in self.placed if p.start <= last and first <= max(p.end - 1, p.start)]

    async def inlay_hints(self, first: int, last: int) -> list[types.InlayHint]:
        raw, placed = await self.placement()
        units = self.project.editor.units
        return marks.inlay_hints(placed, raw, self.proposals, self.results, units, (first, last))

    async def hover(self, line: int) -> types.Hover | None:
        await self.placement()
        return marks.hover(self.at(line, line), self.proposals, self.results)

    async def code_lenses(
        self, diff_payload: Callable[[int], dict[str, Any] | None]
    ) -> list[types.CodeLens]:
        _, placed = await self.placement()
        return marks.code_lenses(placed, self.proposals, diff_payload)


def _light(exp: Experiment) -> Experiment:
    if not (exp.diff or exp.log_tail or exp.trace_tail):
        return exp
    return light(exp)  # the history's own light copy, not a trip through the wire format
