"""The project's files: documents the client opens and edits, and files changing on disk
under the loop (ratchet.toml, program.md, the locked files, the ledger's results.tsv, the
loop's control socket). Each change is handed to the feature it concerns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from lsprotocol import types

from ..control import wire
from ..guard import hash_files
from ..lockfile import LOCK_NAME
from ..workspace import RATCHET_DIR
from .configuration import Configuration
from .diagnostics import locked_diagnostic
from .loop import Loop
from .project import Project
from .results import Results
from .watcher import Watcher

FS_DEBOUNCE_S = 0.1


class Files:
    def __init__(
        self,
        project: Project,
        configuration: Configuration,
        results: Results,
        loop: Loop,
        changed: Callable[[], None],
        pause: Callable[[], Awaitable[object]],
    ) -> None:
        self.project = project
        self.configuration = configuration
        self.results = results
        self.loop = loop
        self.changed = changed
        self.pause = pause
        self.watcher: Watcher | None = None
        self.locked_hashes: dict[str, str] = {}
        self.locked_problems: dict[str, str] = {}
        self._handles: dict[Path, asyncio.TimerHandle] = {}

    # --- documents ---------------------------------------------------------------------------

    def opened(self, uri: str) -> None:
        path = self.project.editor.opened(uri)
        if path is not None:
            self._document_changed(path)

    def edited(self, uri: str) -> None:
        path = self.project.editor.path_of(uri)
        if path is not None:
            self._document_changed(path)

    def closed(self, uri: str) -> None:
        path = self.project.editor.closed(uri)
        if path is None:
            return
        if path == self.project.config_path.resolve():
            self.project.spawn(self.configuration.reload())
        else:
            self.results.typed()

    def _document_changed(self, path: Path) -> None:
        if path == self.project.config_path.resolve():
            self.project.spawn(self.configuration.validate_buffer())
        elif path == self.project.editable_path:
            self.results.typed()

    # --- the disk ----------------------------------------------------------------------------

    def start(self) -> None:
        self.watcher = Watcher(self._on_file_changed)
        self.watch()
        self.watcher.start()

    async def stop(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)

    def watch(self) -> None:
        if self.watcher is None:
            return
        root = self.project.root
        folders = {root, root / RATCHET_DIR}
        results = root / RATCHET_DIR / "results.tsv"
        if results.is_symlink():  # the loop opened last: its folder holds the file it appends
            folders.add(results.resolve().parent)
        config = self.project.config
        if config is not None:
            for relative in (config.loop.editable, config.loop.program):
                folders.add((root / relative).parent)
            for path in self.project.locked_paths():
                folders.add(path.parent)
                if path.is_dir():
                    folders.add(path)
        self.watcher.watch(folders)

    def _on_file_changed(self, path: Path) -> None:
        handle = self._handles.pop(path, None)
        if handle is not None:
            handle.cancel()
        self._handles[path] = asyncio.get_running_loop().call_later(
            FS_DEBOUNCE_S, lambda: self.project.spawn(self._file_changed(path))
        )

    async def _file_changed(self, path: Path) -> None:
        self._handles.pop(path, None)
        project = self.project
        path = path.resolve()
        if path == project.config_path.resolve():
            if await self.configuration.reload():
                await self.results.reload()
            self.watch()
            return
        ratchet = (project.root / RATCHET_DIR).resolve()
        if path.name == "results.tsv" and ratchet in path.parents:
            self.watch()  # the link may name another loop's file now
            if not self.loop.attached:
                await self.results.reload()  # a loop we cannot attach to recorded one
            return
        if path == ratchet:  # made by a first loop: watched from now, then looked in once
            self.watch()
            self.loop.wake()
            return
        if path.parent == ratchet:
            if path.name in (wire.SOCKET_NAME, LOCK_NAME):  # a loop began or ended here
                self.loop.wake()
            return
        if project.config is None:
            return
        if path == (project.root / project.config.loop.program).resolve():
            project.editor.log(
                types.MessageType.Info,
                f"{project.config.loop.program} changed: the agent reads it from its next "
                "proposal on",
            )
            return
        for locked in project.locked_paths():
            if path == locked or locked in path.parents:
                await self.locked_changed(locked)
                return
        if path == project.editable_path and project.editor.document(path) is None:
            self.results.typed()

    # --- locked files ------------------------------------------------------------------------

    async def remember_locked(self) -> None:
        """The locked files as they are when a loop is attached: what a change is against."""
        self.locked_problems.clear()
        config = self.project.config
        if config is not None:
            self.locked_hashes = await asyncio.to_thread(
                hash_files, self.project.root, config.loop.locked
            )
        self.publish_locked()

    async def locked_changed(self, path: Path, force: bool = False) -> None:
        """A locked file changed on disk: while a loop runs, that voids its baseline, so the
        loop pauses, with an error on the file and a message saying what to do."""
        relative = self.project.locked_paths().get(path)
        if relative is None or not self.loop.running:
            return
        now = (await asyncio.to_thread(hash_files, self.project.root, [relative]))[relative]
        if not force and now == self.locked_hashes.get(relative):
            if self.locked_problems.pop(relative, None) is not None:
                self.publish_locked()
            return
        if relative in self.locked_problems:
            return
        message = (
            f"{relative} is locked, and it changed on disk while loop {self.project.tag} "
            "runs: the baseline no longer holds, so the loop is paused. Undo the change and "
            "resume, or stop the loop, commit, and start again."
        )
        self.locked_problems[relative] = message
        await self.pause()
        self.project.editor.show(types.MessageType.Error, f"Ratchet: {message}")
        self.publish_locked()
        self.changed()

    def loop_saw_locked(self, relative: str) -> None:
        self.project.spawn(self.locked_changed((self.project.root / relative).resolve(), True))

    def publish_locked(self) -> None:
        editor = self.project.editor
        for path, relative in self.project.locked_paths().items():
            problem = self.locked_problems.get(relative)
            editor.publish(
                editor.uri(path), [locked_diagnostic(relative, problem)] if problem else []
            )
