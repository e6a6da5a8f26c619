"""One loop per project at a time: an exclusive lock in `.ratchet/` (freed by the OS if the
holder dies, so a killed loop never blocks the next one)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import LoopBusyError

LOCK_NAME = "loop.lock"


class LoopLock:
    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, wait_s: float = 1.0) -> None:
        """Takes the lock, waiting up to `wait_s`: a killed loop's children may hold it for
        the moment they take to die."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LoopBusyError(
                f"a Ratchet loop is already running on this project (pid {holder}); "
                "stop it first, or watch it with `ratchet log`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def taken_at(folder: Path) -> float:
    """When the loop lock in `folder` was last taken: its holder writes its pid on taking
    it, so the file's time says when (0.0 when there is no lock file)."""
    try:
        return (folder / LOCK_NAME).stat().st_mtime
    except FileNotFoundError:
        return 0.0
