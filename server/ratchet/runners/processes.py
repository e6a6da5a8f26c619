"""Finding and killing every process an experiment started, children of children included.

Each experiment's environment carries a unique RATCHET_RUN_TOKEN. A process that double-forks
or calls setsid leaves the process group and its parent, but it keeps its environment, so
scanning /proc for the token finds it wherever it went.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

TOKEN_VARIABLE = "RATCHET_RUN_TOKEN"
_PROC = Path("/proc")


def processes_with_token(token: str) -> list[int]:
    """PIDs of live processes whose environment holds RATCHET_RUN_TOKEN=token."""
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    me = os.getpid()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if needle in environ.split(b"\0") and not _is_zombie(entry):
                found.append(int(entry.name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def _is_zombie(entry: Path) -> bool:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _signal_all(pgid: int | None, pids: list[int], sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_tree(pgid: int | None, token: str, grace_s: float = 2.0) -> int:
    """SIGTERM the process group and every process carrying the token, then SIGKILL what
    is left after `grace_s`. Returns how many processes were signalled."""
    pids = processes_with_token(token)
    _signal_all(pgid, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not processes_with_token(token) and not _group_alive(pgid):
            return len(pids)
        time.sleep(0.05)
    remaining = processes_with_token(token)
    _signal_all(pgid, remaining, signal.SIGKILL)
    return len(set(pids) | set(remaining))


def _group_alive(pgid: int | None) -> bool:
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
