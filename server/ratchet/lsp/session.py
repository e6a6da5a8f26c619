"""One project as the editor sees it: the features wired together, the status they make, and
the editor's commands, each a few lines over a feature.

configuration  ratchet.toml: read, checked as typed, handed to a running loop
loop           the loop's own process: attach, follow, command, detach (never stop on exit)
results        the rows, proposals and results, placed in the text: diagnostics, hints, lenses
files          documents and files on disk: each change to the feature it concerns
applying       an experiment into the user's file; diffs for clients to show
morning        the loop's report, and its keeps as a review branch
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from ..cases import CaseChanges
from ..control import wire
from ..errors import RatchetError
from ..experiment import Experiment
from . import names
from .actions import Target, actions_for
from .applying import Applier, experiment_of_uri
from .configuration import Configuration
from .editor import Editor
from .files import Files
from .loop import Loop
from .morning import Morning
from .project import Project
from .results import Results
from .status import StatusNotifier

STATUS_KEYS: dict[str, Any] = {
    "state": "idle",
    "tag": None,
    "metric": None,
    "goal": None,
    "running": [],
    "awaitingReview": [],
    "best": None,
    "bestId": None,
    "baseline": None,
    "gainPercent": None,
    "kept": 0,
    "total": 0,
    "crashed": 0,
    "costUsd": 0.0,
}


class Session:
    def __init__(self, server: LanguageServer, root: Path, review: str | None = None) -> None:
        self.editor = Editor(server)
        self.project = project = Project(self.editor, root, review)
        self.status = StatusNotifier(self.status_payload, self._send_status, self._ticking)
        changed = self.status.changed
        self.results = Results(project, changed)
        self.loop = Loop(project, self.results, changed, self._loop_saw_locked)
        self.configuration = Configuration(
            project, changed, self._reconfigure, lambda: self.loop.attached
        )
        self.files = Files(
            project, self.configuration, self.results, self.loop, changed, self._pause_locked
        )
        self.applier = Applier(project, self.results)
        self.morning = Morning(project)
        self.loop.on_attach = lambda: project.spawn(self.files.remember_locked())

    @property
    def root(self) -> Path:
        return self.project.root

    # --- starting and stopping ---------------------------------------------------------------

    async def start(self) -> None:
        self.files.start()
        self.status.start()
        await self.configuration.reload()
        self.files.watch()
        await self.results.reload()
        await self.loop.attach()
        self.loop.start()

    async def shutdown(self) -> None:
        """Detaches from the loop, which goes on running: stopping it is an explicit command."""
        await self.loop.close()
        await self.status.stop()
        await self.files.stop()
        await self.project.close()

    async def _reconfigure(self, params: dict[str, Any]) -> Any:
        return await self.loop.request("reconfigure", params)

    async def _pause_locked(self) -> None:
        with contextlib.suppress(RatchetError):  # it ended meanwhile
            await self.loop.request("pause")

    def _loop_saw_locked(self, relative: str) -> None:
        self.files.loop_saw_locked(relative)

    # --- status ------------------------------------------------------------------------------

    def _ticking(self) -> bool:
        return self.loop.running

    def _send_status(self, payload: dict[str, Any]) -> None:
        self.editor.notify(names.STATUS_NOTIFICATION, payload)

    async def status_payload(self) -> dict[str, Any]:
        project, loop = self.project, self.loop
        payload = dict(STATUS_KEYS)
        attached_pid = loop.client.pid if loop.attached and loop.client else None
        live = await loop.status()
        if live is not None:
            payload.update(live)
        elif project.reader is not None and project.config is not None:
            config = project.config
            payload.update(tag=project.tag, metric=config.metric.name, goal=config.metric.goal)
            payload.update(self.results.summary(config.metric.goal))
            if loop.failed:
                payload["state"] = "error"
        else:
            payload["state"] = "error"
        problem = project.config_error or project.reader_error
        payload["message"] = str(problem) if problem and project.reader is None else loop.message
        payload["configError"] = str(project.config_error) if project.config_error else None
        payload["lockedChanged"] = sorted(self.files.locked_problems)
        payload["project"] = str(project.root)
        payload["editable"] = project.config.loop.editable if project.config else None
        payload["agent"] = project.agent_payload()
        if live is not None and attached_pid is not None:
            # The loop's own words: they stand for the moment they were asked, even if it
            # has closed since (the closing sends its own status next), never "running"
            # beside "no loop".
            pid: int | None = attached_pid
            attached = True
        else:
            pid = loop.client.pid if loop.attached and loop.client else loop.holder
            attached = loop.attached
        payload["loop"] = {"pid": pid, "attached": attached} if pid is not None else None
        payload["offline"] = pid is not None and not attached
        return payload

    # --- commands ----------------------------------------------------------------------------

    async def start_loop(self, max_experiments: int | None, api_key: str | None = None) -> None:
        await self.loop.launch(api_key, maxExperiments=max_experiments)

    async def propose_once(self, api_key: str | None = None) -> None:
        self.project.require_reader()
        # one proposal (after the baseline, if there is none)
        await self.loop.launch(api_key, more=1)

    async def stop_loop(self) -> None:
        await self.loop.request("stop")

    async def pause(self) -> None:
        await self.loop.request("pause")

    async def resume(self) -> None:
        await self.loop.request("resume")

    async def decide(self, experiment: int | None, accept: bool) -> int:
        if not self.loop.attached:
            raise RatchetError("no loop is running, so no proposal is waiting for review")
        if experiment is None:
            if not self.results.proposals:
                raise RatchetError("no proposal is waiting for review")
            experiment = min(self.results.proposals)
        await self.loop.request("decide", {"id": experiment, "accept": accept})
        return experiment

    async def stop_experiment(self, experiment: int) -> dict[str, Any]:
        result = await self.loop.request("stopExperiment", {"id": experiment})
        if not result.get("stopped"):
            raise RatchetError(f"experiment {experiment} is not running")
        return dict(result)

    async def run_buffer(self, description: str, api_key: str | None = None) -> None:
        path = self.project.editable_path
        if path is None:
            self.project.require_reader()
            return
        text, _ = await self.project.text(path)
        if self.loop.attached:
            await self.loop.request("submit", {"text": text, "description": description})
            return
        submit = {"text": text, "description": description}
        await self.loop.launch(api_key, submit=submit, submittedOnly=True)

    async def revert(self, experiment: int, api_key: str | None = None) -> None:
        self.project.require_reader()
        self.applier.known(experiment)
        if self.loop.attached:
            await self.loop.request("revert", {"id": experiment})
            return
        await self.loop.launch(api_key, revert=experiment, submittedOnly=True)

    async def note(self, text: str) -> None:
        reader = self.project.require_reader()
        if self.loop.attached:
            await self.loop.request("note", {"text": text})
        else:
            await asyncio.to_thread(reader.add_note, text)

    async def set_review(self, review: str | None) -> None:
        await self.configuration.set_review(review)
        self.status.changed()

    async def experiments_json(self, since: int | None, limit: int | None) -> list[dict[str, Any]]:
        """Light rows (no diff, log or trace) from memory: all, or those numbered above
        `since`, at most `limit`; made into JSON off the event loop (rows are replaced, never
        changed, so a snapshot is safe to read there)."""
        self.project.require_reader()
        rows = sorted(self.results.rows.values(), key=lambda e: e.id)
        if since is not None:
            rows = [e for e in rows if e.id > since]
        if limit is not None:
            rows = rows[:limit]
        if len(rows) < 200:
            return [wire.row(e, light=True) for e in rows]
        return await asyncio.to_thread(lambda: [wire.row(e, light=True) for e in rows])

    async def experiment_json(self, experiment: int) -> dict[str, Any]:
        """One full row, with `cases`: what it fixed and broke against the best it was made
        from (`ratchet show`'s evidence: counts, the first ids each way, its words), or null."""
        reader = self.project.require_reader()

        def read() -> tuple[Experiment | None, CaseChanges | None]:
            exp = reader.experiment(experiment)
            return exp, reader.case_changes(exp) if exp is not None else None

        exp, cases = await asyncio.to_thread(read)
        if exp is None:
            raise RatchetError(f"there is no experiment {experiment} in loop {reader.tag}")
        row = wire.row(exp)
        row["cases"] = {**dataclasses.asdict(cases), "words": cases.words()} if cases else None
        return row

    async def diff_text(self, which: Any) -> dict[str, Any]:
        number = experiment_of_uri(which) if isinstance(which, str) else which
        if not isinstance(number, int) or isinstance(number, bool):
            raise RatchetError(f"expected a ratchet:/exp/N.diff address, got {which!r}")
        return {"experiment": number, "text": await self.applier.diff_text(number)}

    # --- what the editor asks as the user moves ----------------------------------------------

    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        editable = self.editor.path_of(uri) == self.project.editable_path
        where = params.range
        placed: list[Target] = []
        if editable:
            placed = [
                (p.kind, p.experiment, None)
                for p in self.results.at(where.start.line, where.end.line)
            ]
        return actions_for(_Actions(self), params, placed, editable)

    async def inlay_hints(self, params: types.InlayHintParams) -> list[types.InlayHint]:
        if self.editor.path_of(params.text_document.uri) != self.project.editable_path:
            return []
        return await self.results.inlay_hints(params.range.start.line, params.range.end.line)

    async def hover(self, params: types.HoverParams) -> types.Hover | None:
        if self.editor.path_of(params.text_document.uri) != self.project.editable_path:
            return None
        return await self.results.hover(params.position.line)

    async def code_lenses(self, params: types.CodeLensParams) -> list[types.CodeLens]:
        if self.editor.path_of(params.text_document.uri) != self.project.editable_path:
            return []
        return await self.results.code_lenses(self.applier.diff_payload)


class _Actions:
    """What code actions read: cached data only, never a wait."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def experiment(self, experiment: int) -> Any:
        return self._session.results.rows.get(experiment)

    def best_id(self) -> int | None:
        return self._session.results.best_id()

    def apply_edit(self, which: int | str) -> types.WorkspaceEdit | bool | None:
        return self._session.applier.edit_now(which)

    def diff_payload(self, experiment: int) -> dict[str, Any] | None:
        return self._session.applier.diff_payload(experiment)
