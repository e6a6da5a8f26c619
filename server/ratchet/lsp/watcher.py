"""Files changing under the loop, seen with watchdog and handed to the event loop.

Only the folders that hold files Ratchet cares about are watched, each non-recursively, so an
experiment's worktree churning under `.ratchet/worktrees/` never wakes the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[Path], None]):
        self.loop = loop
        self.callback = callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type != "created":  # a new folder may be watched
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = Path(os.fsdecode(raw))
                self.loop.call_soon_threadsafe(self.callback, path)


class Watcher:
    """Calls `callback(path)` on the event loop for every change in the watched folders."""

    def __init__(self, callback: Callable[[Path], None]) -> None:
        self._handler = _Handler(asyncio.get_running_loop(), callback)
        self._observer = Observer()
        self._observer.daemon = True
        self._watched: set[Path] = set()

    def watch(self, folders: Iterable[Path]) -> None:
        for folder in folders:
            folder = folder.resolve()
            if folder in self._watched or not folder.is_dir():
                continue
            try:
                self._observer.schedule(self._handler, str(folder), recursive=False)
            except OSError as error:  # e.g. out of inotify watches: the server still works
                log.warning("cannot watch %s: %s", folder, error)
                continue
            self._watched.add(folder)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=2)
