"""One project as the editor sees it: its ratchet.toml, its engine, the loop's runs, and the
translation of engine events into diagnostics, progress and status.

The engine does the work; this class holds what the editor needs between events (the
experiments, their texts, the proposals awaiting review) and never blocks the event loop:
git, ledger and file work go through asyncio.to_thread.

One engine per run: when a run ends the engine is closed (freeing the project's loop lock,
so another window may start a loop) and a fresh one, reading the latest ratchet.toml, takes
its place. A server whose engine cannot take the lock still shows the ledger's results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from ..config import CONFIG_NAME, Config, ConfigError, load_config, parse_config
from ..engine import Engine
from ..errors import RatchetError
from ..events import (
    AgentActivity,
    Event,
    ExperimentFinished,
    ExperimentProposed,
    ExperimentStarted,
    LockedFileChanged,
    LoopStateChanged,
    OutputLine,
)
from ..experiment import Experiment, Status
from ..guard import hash_files
from .actions import actions_for
from .diagnostics import (
    PendingProposal,
    base_metrics,
    config_diagnostic,
    editable_diagnostics,
    locked_diagnostic,
    summary,
)
from .edits import Merger, workspace_edit
from .progress import ProgressReporter
from .status import METHOD as STATUS_METHOD
from .status import StatusNotifier
from .watcher import Watcher

AGENT_ACTIVITY_METHOD = "ratchet/agentActivity"

if TYPE_CHECKING:
    from .server import RatchetServer

log = logging.getLogger(__name__)

PUBLISH_DELAY_S = 0.03
FS_DEBOUNCE_S = 0.1
RECENT_TEXTS = 60  # experiments whose code is fetched ahead, for code actions
STOP_WAIT_S = 30.0

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


def experiment_json(exp: Experiment) -> dict[str, Any]:
    row = asdict(exp)
    row["status"] = str(exp.status)
    return row


class Session:
    def __init__(
        self, server: RatchetServer, root: Path, review_override: str | None = None
    ) -> None:
        self.review_override = review_override  # the editor's review gate, if it set one
        self.server = server
        self.root = root.resolve()
        self.config: Config | None = None
        self.config_error: ConfigError | None = None
        self.engine: Engine | None = None
        self.engine_error: str | None = None
        self.run_task: asyncio.Task[None] | None = None
        self.lifecycle = asyncio.Lock()
        self.experiments: list[Experiment] = []
        self.by_id: dict[int, Experiment] = {}
        self.texts: dict[int, str] = {}
        self.proposals: dict[int, PendingProposal] = {}
        self.message = ""  # the last thing that went wrong with a run, in words
        self.failed = False  # the last run ended in error (shown until the next start)
        self.locked_hashes: dict[str, str] = {}
        self.locked_problems: dict[str, str] = {}
        self.config_diagnostics: list[types.Diagnostic] = []
        self.published: dict[str, list[types.Diagnostic]] = {}
        self.progress = ProgressReporter(server, self._cancel_experiment)
        self.status = StatusNotifier(self.status_payload, self._send_status, self._ticking)
        self.watcher: Watcher | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._publish_handle: asyncio.TimerHandle | None = None
        self._fs_handles: dict[Path, asyncio.TimerHandle] = {}
        self.merger = Merger()
        self._uris: dict[Path, str] = {}  # documents the client has open, by real path

    # --- paths and documents -----------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def editable_path(self) -> Path | None:
        return (self.root / self.config.loop.editable).resolve() if self.config else None

    @property
    def editable_name(self) -> str:
        return self.config.loop.editable if self.config else "the editable file"

    def locked_paths(self) -> dict[Path, str]:
        if not self.config:
            return {}
        return {(self.root / rel).resolve(): rel for rel in self.config.loop.locked}

    def uri(self, path: Path) -> str:
        return self._uris.get(path) or from_fs_path(str(path)) or path.as_uri()

    @staticmethod
    def path_of(uri: str) -> Path | None:
        fs = to_fs_path(uri)
        return Path(fs).resolve() if fs else None

    def document(self, path: Path) -> Any | None:
        """The client's open document for a path (with unsaved edits), or None."""
        uri = self._uris.get(path)
        if uri is None:
            return None
        return self.server.workspace.text_documents.get(uri)

    async def text(self, path: Path) -> tuple[str, int | None]:
        """The file as the user has it: the open buffer (saved or not), else the disk."""
        document = self.document(path)
        if document is not None:
            return document.source, document.version
        try:
            return await asyncio.to_thread(path.read_text, encoding="utf-8"), None
        except (OSError, UnicodeDecodeError):
            return "", None

    def units(self, text: str) -> int:
        return int(self.server.workspace.position_codec.client_num_units(text))

    # --- starting and stopping ---------------------------------------------------------------

    async def start(self) -> None:
        self.watcher = Watcher(self._on_file_changed)
        self.watcher.watch([self.root, self.root / ".ratchet"])
        self.watcher.start()
        self.status.start()
        await self.reload_config()

    async def shutdown(self) -> None:
        if self.loop_running and self.engine is not None:
            self._stop(self.engine)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._run_task()), STOP_WAIT_S)
        if self.engine is not None:
            self._detach()
            await self.engine.close()
            self.engine = None
        await self.status.stop()
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)

    def _run_task(self) -> asyncio.Task[None]:
        assert self.run_task is not None
        return self.run_task

    @property
    def loop_running(self) -> bool:
        return self.run_task is not None and not self.run_task.done()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a background task failed", exc_info=error)

    # --- ratchet.toml and the engine -----------------------------------------------------------

    async def reload_config(self) -> None:
        """Reads ratchet.toml from disk: diagnostics at once; the loop settings take effect from
        the next experiment, the rest when the loop next starts."""
        try:
            config = await asyncio.to_thread(load_config, self.root)
            if self.review_override in ("auto", "propose"):
                # The editor's review-gate setting wins over ratchet.toml's `review`.
                config = replace(config, loop=replace(config.loop, review=self.review_override))
        except ConfigError as error:
            self.config_error = error
            source, _ = await self.text(self.config_path)
            exists = await asyncio.to_thread(self.config_path.is_file)
            self.config_diagnostics = (
                [config_diagnostic(error, source, self.units)] if exists else []
            )
            self.schedule_publish()
            self.status.changed()
            return
        self.config_error = None
        self.config_diagnostics = []
        await self.validate_config_buffer()  # an open buffer may differ from the disk
        previous, self.config = self.config, config
        self.watch_files()
        if self.loop_running and self.engine is not None and previous is not None:
            self._reconfigure_running(previous, config)
        else:
            async with self.lifecycle:
                if not self.loop_running:
                    await self._rebuild_engine()
        self.schedule_publish()
        self.status.changed()

    def _reconfigure_running(self, previous: Config, config: Config) -> None:
        """A loop's rules are pinned: a change to them is said, never applied mid-loop."""
        engine = self.engine
        assert engine is not None
        try:
            engine.reconfigure(config)
        except RatchetError as problem:
            self.show(types.MessageType.Warning, f"{problem} The loop goes on under its rules.")
            return
        self.show(
            types.MessageType.Info,
            "ratchet.toml reloaded: the review gate and the agent's settings apply from the "
            "next experiment; the loop's rules (metric, budget, command, evaluator) stay pinned.",
        )

    async def validate_config_buffer(self) -> None:
        """ratchet.toml as the user types it (unsaved): checked at once, shown as diagnostics."""
        document = self.document(self.config_path)
        if document is None:
            return
        source = document.source
        try:
            await asyncio.to_thread(parse_config, source, self.root)
        except ConfigError as error:
            self.config_diagnostics = [config_diagnostic(error, source, self.units)]
        else:
            self.config_diagnostics = []
        self.schedule_publish()

    async def _rebuild_engine(self) -> None:
        """A fresh engine on the current config (the caller holds `lifecycle`)."""
        old = self.engine
        self.engine = None
        if old is not None:
            self._detach()
            await old.close()
        if self.config is None:
            return
        try:
            engine = await asyncio.to_thread(
                Engine, self.config, tag=old.tag if old is not None else None
            )
        except RatchetError as error:
            self.engine_error = str(error)
            self.show(types.MessageType.Error, f"Ratchet cannot open this project: {error}")
            return
        self.engine_error = None
        self.engine = engine
        self._unsubscribe = engine.bus.subscribe(self.on_event)
        self.watch_files()  # .ratchet/ exists now
        await self.refresh()

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            with contextlib.suppress(ValueError):
                self._unsubscribe()
            self._unsubscribe = None

    def require_engine(self) -> Engine:
        if self.engine is not None:
            return self.engine
        if self.config_error is not None:
            raise RatchetError(f"fix ratchet.toml first: {self.config_error}")
        if self.engine_error is not None:
            raise RatchetError(self.engine_error)
        raise RatchetError(f"no {CONFIG_NAME} in {self.root}: run `ratchet init` there first")

    def watch_files(self) -> None:
        if self.watcher is None or self.config is None:
            return
        folders = {self.root, self.root / ".ratchet"}
        for relative in (self.config.loop.editable, self.config.loop.program):
            folders.add((self.root / relative).parent)
        for path in self.locked_paths():
            folders.add(path.parent)
            if path.is_dir():
                folders.add(path)
        self.watcher.watch(folders)

    # --- what the ledger knows ---------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-reads the experiments from the ledger (ours, or another process's loop)."""
        engine = self.engine
        if engine is None:
            return
        experiments = await asyncio.to_thread(self._with_diffs, engine)
        if engine is not self.engine:
            return
        self.experiments = experiments
        self.by_id = {e.id: e for e in experiments}
        await self.prefetch()
        self.schedule_publish()
        self.status.changed()

    @staticmethod
    def _with_diffs(engine: Engine) -> list[Experiment]:
        """The light record, with the diffs of those results are shown for: the kept, the
        recent and the crashed ones (read by id, not the whole ledger)."""
        experiments = engine.experiments()
        shown = {e.id for e in experiments[-RECENT_TEXTS:]}
        shown |= {e.id for e in experiments if e.status in (Status.KEPT, Status.CRASHED)}
        full = engine.ledger.get_many(engine.tag, shown)
        return [full.get(e.id, e) for e in experiments]

    def _record(self, exp: Experiment) -> None:
        if exp.id in self.by_id:
            self.experiments = [exp if e.id == exp.id else e for e in self.experiments]
        else:
            self.experiments = sorted([*self.experiments, exp], key=lambda e: e.id)
        self.by_id[exp.id] = exp

    def kept(self) -> list[Experiment]:
        return [e for e in self.experiments if e.status is Status.KEPT and e.commit]

    def best_id(self) -> int | None:
        kept = self.kept()
        if not kept or kept[-1].source == "baseline":
            return None
        return kept[-1].id

    def experiment(self, experiment: int) -> Experiment | None:
        return self.by_id.get(experiment)

    async def prefetch(self, extra: tuple[int, ...] = ()) -> None:
        """Fetches (off the event loop) the code of the experiments code actions may need:
        every kept one (merge bases, the best), the recent ones, and crashes (their lines)."""
        engine = self.engine
        if engine is None:
            return
        final = [e for e in self.experiments if e.status.is_final and e.commit]
        wanted = {e.id for e in self.kept()} | {e.id for e in final[-RECENT_TEXTS:]}
        wanted |= {e.id for e in final if e.status is Status.CRASHED} | set(extra)
        missing = sorted(i for i in wanted if i not in self.texts and i in self.by_id)
        if not missing:
            return

        def fetch() -> dict[int, str]:
            found = {}
            for experiment in missing:
                with contextlib.suppress(Exception):  # refused before it was committed, say
                    found[experiment] = engine.text_of(experiment)
            return found

        self.texts.update(await asyncio.to_thread(fetch))

    # --- engine events -----------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, OutputLine):  # the hot path: thousands a second
            self.progress.line(event.id, event.line)
            return
        if isinstance(event, ExperimentProposed):
            if event.awaiting_review:
                self.proposals[event.id] = PendingProposal(
                    event.id, event.description, event.diff, event.old_text, event.new_text
                )
                self.schedule_publish()
        elif isinstance(event, ExperimentStarted):
            if self.proposals.pop(event.id, None) is not None:
                self.schedule_publish()
            self.progress.started(event.id, event.description, event.budget_s)
        elif isinstance(event, ExperimentFinished):
            exp = event.experiment
            self.proposals.pop(exp.id, None)
            self._record(exp)
            bases = base_metrics(self.experiments)
            name = self.config.metric.name if self.config else "metric"
            self.progress.finished(exp.id, f"exp {exp.id} {summary(exp, bases.get(exp.id), name)}")
            self.spawn(self._after_finish(exp.id))
        elif isinstance(event, LoopStateChanged):
            if event.state == "error":
                self.failed = True
                self.message = event.message
            if event.message:
                error = event.state == "error"
                kind = types.MessageType.Error if error else types.MessageType.Info
                self.show(kind, f"Ratchet: {event.message}")
        elif isinstance(event, AgentActivity):
            # The extension shows these in its agent trace channel; other clients ignore it.
            self.server.protocol.notify(AGENT_ACTIVITY_METHOD, {"id": event.id, "text": event.text})
            return
        elif isinstance(event, LockedFileChanged):
            self.spawn(self._locked_changed((self.root / event.path).resolve(), force=True))
        self.status.changed()

    async def _after_finish(self, experiment: int) -> None:
        await self.prefetch((experiment,))
        self.schedule_publish()

    def _ticking(self) -> bool:
        return bool(self.engine is not None and self.engine.running)

    def _cancel_experiment(self, experiment: int) -> None:
        if self.engine is not None:
            self.engine.stop_experiment(experiment, "cancelled from the editor")

    # --- diagnostics -------------------------------------------------------------------------

    def schedule_publish(self) -> None:
        if self._publish_handle is None:
            self._publish_handle = asyncio.get_running_loop().call_later(
                PUBLISH_DELAY_S, self._publish_now
            )

    def _publish_now(self) -> None:
        self._publish_handle = None
        self.spawn(self.publish())

    async def publish(self) -> None:
        if self.config is not None and (editable := self.editable_path) is not None:
            text, _ = await self.text(editable)
            diagnostics = editable_diagnostics(
                text,
                self.experiments,
                self.proposals.values(),
                self.config.metric.name,
                self.config.loop.editable,
                self.texts,
                self.units,
            )
            self._send_diagnostics(self.uri(editable), diagnostics)
        self._send_diagnostics(self.uri(self.config_path), self.config_diagnostics)
        for path, relative in self.locked_paths().items():
            problem = self.locked_problems.get(relative)
            self._send_diagnostics(
                self.uri(path), [locked_diagnostic(relative, problem)] if problem else []
            )

    def _send_diagnostics(self, uri: str, diagnostics: list[types.Diagnostic]) -> None:
        if self.published.get(uri, []) == diagnostics and uri in self.published:
            return
        if not diagnostics and uri not in self.published:
            return
        self.published[uri] = diagnostics
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
        )

    # --- documents the client opens ------------------------------------------------------------

    def document_opened(self, uri: str) -> None:
        path = self.path_of(uri)
        if path is None:
            return
        self._uris[path] = uri
        self._document_changed(path)

    def document_changed(self, uri: str) -> None:
        path = self.path_of(uri)
        if path is not None:
            self._document_changed(path)

    def document_closed(self, uri: str) -> None:
        path = self.path_of(uri)
        if path is None:
            return
        self._uris.pop(path, None)
        if path == self.config_path.resolve():
            self.spawn(self.reload_config())
        else:
            self.schedule_publish()

    def _document_changed(self, path: Path) -> None:
        if path == self.config_path.resolve():
            self.spawn(self.validate_config_buffer())
        elif path == self.editable_path:
            self.schedule_publish()

    # --- files changing on disk ----------------------------------------------------------------

    def _on_file_changed(self, path: Path) -> None:
        handle = self._fs_handles.pop(path, None)
        if handle is not None:
            handle.cancel()
        self._fs_handles[path] = asyncio.get_running_loop().call_later(
            FS_DEBOUNCE_S, lambda: self.spawn(self._file_changed(path))
        )

    async def _file_changed(self, path: Path) -> None:
        self._fs_handles.pop(path, None)
        path = path.resolve()
        if path == self.config_path.resolve():
            await self.reload_config()
            return
        if path.parent == (self.root / ".ratchet").resolve():
            # A loop (ours or another process's) recorded one: every write reaches the WAL.
            if path.name in ("results.tsv", "ledger.sqlite-wal"):
                await self.refresh()
            return
        if self.config is None:
            return
        if path == (self.root / self.config.loop.program).resolve():
            self.server.window_log_message(
                types.LogMessageParams(
                    type=types.MessageType.Info,
                    message=f"{self.config.loop.program} changed: the agent reads it from its "
                    "next proposal on",
                )
            )
            return
        for locked in self.locked_paths():
            if path == locked or locked in path.parents:
                await self._locked_changed(locked)
                return
        if path == self.editable_path and self.document(path) is None:
            self.schedule_publish()

    async def _locked_changed(self, path: Path, force: bool = False) -> None:
        """A locked file changed on disk: while a loop runs, that voids its baseline, so the
        loop pauses, with an error on the file and a message saying what to do."""
        relative = self.locked_paths().get(path)
        if relative is None or not self.loop_running or self.engine is None:
            return
        now = (await asyncio.to_thread(hash_files, self.root, [relative]))[relative]
        if not force and now == self.locked_hashes.get(relative):
            if self.locked_problems.pop(relative, None) is not None:
                self.schedule_publish()
            return
        if relative in self.locked_problems:
            return
        tag = self.engine.tag
        message = (
            f"{relative} is locked, and it changed on disk while loop {tag} runs: the "
            "baseline no longer holds, so the loop is paused. Undo the change and resume, or "
            "stop the loop, commit, and start again."
        )
        self.locked_problems[relative] = message
        self.engine.pause()
        self.show(types.MessageType.Error, f"Ratchet: {message}")
        self.schedule_publish()
        self.status.changed()

    # --- status ------------------------------------------------------------------------------

    async def status_payload(self) -> dict[str, Any]:
        engine = self.engine
        payload = dict(STATUS_KEYS)
        if engine is not None:
            payload.update(await self._engine_status(engine))
            if payload["state"] == "idle" and self.failed:
                payload["state"] = "error"
        else:
            payload["state"] = "error"
        problem = self.config_error or self.engine_error
        payload["message"] = str(problem) if problem and engine is None else self.message
        payload["configError"] = str(self.config_error) if self.config_error else None
        payload["lockedChanged"] = sorted(self.locked_problems)
        payload["project"] = str(self.root)
        payload["editable"] = self.config.loop.editable if self.config else None
        return payload

    @staticmethod
    async def _engine_status(engine: Engine) -> dict[str, Any]:
        # The ledger reads run off the event loop; the live fields (running experiments,
        # reviews) may change under a thread's feet, so on a clash it is read here instead.
        try:
            return await asyncio.to_thread(engine.status)
        except RuntimeError:
            return engine.status()

    def _send_status(self, payload: dict[str, Any]) -> None:
        self.server.protocol.notify(STATUS_METHOD, payload)

    def show_diff(self, payload: dict[str, Any]) -> None:
        title = payload.get("title") or f"exp {payload.get('experiment')}"
        self.show(types.MessageType.Info, f"{title}\n{payload.get('diff') or '(no change)'}")

    def show(self, kind: types.MessageType, message: str) -> None:
        self.server.window_show_message(types.ShowMessageParams(type=kind, message=message))

    # --- commands ----------------------------------------------------------------------------

    async def launch(
        self,
        prepare: Callable[[Engine], Awaitable[None]] | None = None,
        **run: Any,
    ) -> None:
        """Takes the project's loop lock and starts a run in the background."""
        async with self.lifecycle:
            engine = self.require_engine()
            if self.loop_running:
                raise RatchetError("the loop is already running; stop it first (ratchet.stop)")
            await engine.open()  # LoopBusyError when another process runs a loop here
            try:
                if prepare is not None:
                    await prepare(engine)
                if self.config is not None:
                    self.locked_hashes = await asyncio.to_thread(
                        hash_files, self.root, self.config.loop.locked
                    )
            except BaseException:
                await self._rebuild_engine()  # frees the lock again
                raise
            self.failed, self.message = False, ""
            self.locked_problems.clear()
            self.run_task = asyncio.get_running_loop().create_task(self._run(engine, run))
            await asyncio.sleep(0)  # lets the run begin, so its state is what callers see
        self.status.changed()

    async def _run(self, engine: Engine, run: dict[str, Any]) -> None:
        try:
            await engine.run(**run)
        except RatchetError as error:
            self.failed, self.message = True, str(error)
            self.show(types.MessageType.Error, f"Ratchet: {error}")
        except Exception as error:
            log.exception("the loop failed")
            self.failed, self.message = True, f"the loop failed: {error}"
            self.show(types.MessageType.Error, f"Ratchet: the loop failed: {error}")
        finally:
            self.progress.finish_all("the loop stopped")
            self.proposals.clear()
            if self.locked_problems:
                self.locked_problems.clear()
            async with self.lifecycle:
                if self.engine is engine:
                    await self._rebuild_engine()
            self.schedule_publish()
            self.status.changed()

    async def start_loop(self, max_experiments: int | None) -> None:
        await self.launch(max_experiments=max_experiments)

    async def propose_once(self) -> None:
        self.require_engine()
        await self.launch(more=1)  # one proposal (after the baseline, if there is none yet)

    def require_running(self, action: str) -> Engine:
        if not self.loop_running or self.engine is None:
            raise RatchetError(f"no loop is running, so there is nothing to {action}")
        return self.engine

    async def stop_loop(self) -> None:
        self._stop(self.require_running("stop"))
        await asyncio.wait_for(asyncio.shield(self._run_task()), STOP_WAIT_S)

    @staticmethod
    def _stop(engine: Engine) -> None:
        engine.stop()
        # A proposal waiting for review would wait for ever: settle it as the loop stops
        # (recorded "rejected: the loop stopped before review").
        for experiment in list(engine.reviews):
            with contextlib.suppress(RatchetError):
                engine.decide(experiment, False)

    def pause(self) -> None:
        self.require_running("pause").pause()

    def resume(self) -> None:
        self.require_running("resume").resume()

    def decide(self, experiment: int | None, accept: bool) -> int:
        if not self.loop_running or self.engine is None:
            raise RatchetError("no loop is running, so no proposal is waiting for review")
        if experiment is None:
            if not self.proposals:
                raise RatchetError("no proposal is waiting for review")
            experiment = min(self.proposals)
        self.engine.decide(experiment, accept)
        return experiment

    async def run_buffer(self, description: str) -> None:
        if self.editable_path is None:
            self.require_engine()
            return
        text, _ = await self.text(self.editable_path)
        if self.loop_running and self.engine is not None:
            await self.engine.submit(text, description)
            return
        await self.launch(lambda engine: engine.submit(text, description), submitted_only=True)

    async def revert(self, experiment: int) -> None:
        self.require_engine()
        if self.experiment(experiment) is None:
            await self.refresh()
        self._known(experiment)
        if self.loop_running and self.engine is not None:
            await self.engine.revert(experiment)
            return
        await self.launch(lambda engine: engine.revert(experiment), submitted_only=True)

    async def note(self, text: str) -> None:
        engine = self.require_engine()
        await asyncio.to_thread(engine.add_note, text)

    async def experiments_json(self) -> list[dict[str, Any]]:
        engine = self.require_engine()
        return [experiment_json(e) for e in await asyncio.to_thread(self._with_diffs, engine)]

    def _known(self, experiment: int) -> Experiment:
        exp = self.experiment(experiment)
        if exp is None:
            tag = self.engine.tag if self.engine else "this loop"
            raise RatchetError(f"there is no experiment {experiment} in loop {tag}")
        return exp

    # --- applying an experiment to the user's file ------------------------------------------

    async def apply(self, which: int | str) -> dict[str, Any]:
        self.require_engine()
        target = self._target(which)
        await self.prefetch((target,))
        edit = self._edit(target, which, await self._editable_state(), strict=True)
        if edit is False:
            return {"applied": False, "message": f"{self.editable_name} already has it"}
        assert isinstance(edit, types.WorkspaceEdit)
        label = f"Ratchet: apply {'the best' if which == 'best' else 'experiment'} ({target})"
        result = await self.server.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=label)
        )
        if not result.applied:
            reason = f": {result.failure_reason}" if result.failure_reason else ""
            raise RatchetError(f"the editor did not apply the edit{reason}")
        return {"applied": True, "experiment": target}

    def apply_edit(self, which: int | str) -> types.WorkspaceEdit | bool | None:
        """For code actions: from cached texts only, never waiting on anything."""
        try:
            target = self._target(which)
            state = self._editable_state_now()
            if state is None:
                return None
            return self._edit(target, which, state, strict=False)
        except RatchetError:
            return None

    def _target(self, which: int | str) -> int:
        if which == "best":
            best = self.best_id()
            if best is None:
                raise RatchetError("no experiment has beaten the baseline yet: nothing to apply")
            return best
        assert isinstance(which, int)
        exp = self._known(which)
        if not exp.commit:
            raise RatchetError(
                f"experiment {which} has no code to apply: it was {exp.status} before it was "
                "committed"
            )
        return which

    async def _editable_state(self) -> tuple[str, str, int | None]:
        path = self.editable_path
        assert path is not None
        text, version = await self.text(path)
        return self.uri(path), text, version

    def _editable_state_now(self) -> tuple[str, str, int | None] | None:
        path = self.editable_path
        document = self.document(path) if path else None
        if path is None or document is None:
            return None
        return self.uri(path), document.source, document.version

    def _edit(
        self,
        target: int,
        which: int | str,
        state: tuple[str, str, int | None],
        strict: bool,
    ) -> types.WorkspaceEdit | bool | None:
        """The edit that gives the user's file the experiment's change while keeping the
        user's own edits: a three-way merge from the known text closest to what they have."""
        uri, current, version = state
        theirs = self.texts.get(target)
        if theirs is None:
            if strict:
                raise RatchetError(f"the code of experiment {target} could not be read")
            return None
        merged = self._merged(current, target)
        if merged is None:
            if not strict:
                return None
            name = "the best" if which == "best" else f"experiment {target}"
            raise RatchetError(
                f"your edits to {self.editable_name} change the same lines as {name}; save or "
                "undo them first, or open its diff and apply it by hand"
            )
        if merged == current:
            return False
        return workspace_edit(
            uri, version, current, merged, self.units, self._document_changes_supported()
        )

    def _merged(self, current: str, target: int) -> str | None:
        kept = [e.id for e in reversed(self.kept())]  # newest first; the baseline is last
        order = [*kept[-1:], *kept[:-1], *sorted(self.texts, reverse=True)]
        return self.merger.merged(current, target, order, self.texts)

    def _document_changes_supported(self) -> bool:
        try:
            edit = self.server.client_capabilities.workspace.workspace_edit  # type: ignore[union-attr]
            return bool(edit and edit.document_changes)
        except AttributeError:
            return False

    # --- code actions and diffs ------------------------------------------------------------

    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        return actions_for(
            self,
            params,
            published=self.published.get(uri, []),
            editable=self.path_of(uri) == self.editable_path,
        )

    def diff_payload(self, experiment: int) -> dict[str, Any] | None:
        editable = self.editable_name
        uri = self.uri(self.editable_path) if self.editable_path else None
        proposal = self.proposals.get(experiment)
        if proposal is not None:
            return {
                "experiment": experiment,
                "title": f"exp {experiment} (proposed): {proposal.description}",
                "path": editable,
                "uri": uri,
                "left": proposal.old_text,
                "right": proposal.new_text,
                "diff": proposal.diff,
            }
        exp = self.experiment(experiment)
        if exp is None or experiment not in self.texts:
            return None
        base = next(
            (e for e in self.kept() if e.commit == exp.base_commit and e.id in self.texts), None
        )
        if base is None:
            return None
        return {
            "experiment": experiment,
            "title": f"exp {experiment} ({exp.status}): {exp.description}",
            "path": editable,
            "uri": uri,
            "left": self.texts[base.id],
            "right": self.texts[experiment],
            "leftTitle": f"exp {base.id}",
            "rightTitle": f"exp {experiment}",
            "diff": exp.diff,
        }
