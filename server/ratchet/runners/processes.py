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
# In every experiment's and command agent's environment: which loop started it.
LOOP_VARIABLE = "RATCHET_LOOP"
# Run k of every experiment (candidate, baseline and best measured again alike) gets seed k:
# a program that seeds from it compares two edits on the same draws.
SEED_VARIABLE = "RATCHET_SEED"
_PROC = Path("/proc")


def processes_with_token(
    token: str, pgid: int | None = None, variable: str = TOKEN_VARIABLE
) -> list[int]:
    """PIDs of live (not zombie) processes whose environment holds RATCHET_RUN_TOKEN=token,
    or that are in process group `pgid` (one that cleared its environment stays in it)."""
    needle = f"{variable}={token}".encode()
    found = []
    me = os.getpid()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            state, group = _state_and_group(entry)
            if state == "Z":
                continue  # dead, waiting to be reaped (by init, in a container: maybe never)
            if group == pgid or needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone, or not ours to read
    return found


def _state_and_group(entry: Path) -> tuple[str, int]:
    fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
    return fields[0], int(fields[2])


def _signal_all(pgid: int | None, pids: list[int], sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_orphans(variable: str, value: str) -> int:
    """Kills what a dead loop's experiments left running (found by a variable they carry)."""
    pids = processes_with_token(value, variable=variable)
    _signal_all(None, pids, signal.SIGKILL)
    return len(pids)


def kill_tree(pgid: int | None, token: str, grace_s: float = 2.0) -> int:
    """SIGTERM the process group and every process carrying the token, then SIGKILL what
    is left after `grace_s`. Returns how many processes were signalled."""
    pids = processes_with_token(token, pgid)
    _signal_all(pgid, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not processes_with_token(token, pgid):
            return len(pids)
        time.sleep(0.05)
    remaining = processes_with_token(token, pgid)
    _signal_all(pgid, remaining, signal.SIGKILL)
    deadline = time.monotonic() + 2.0  # SIGKILL is not instant: wait until they are gone
    while processes_with_token(token, pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(set(pids) | set(remaining))


# --- a process limit: a fork bomb stops at it ----------------------------------------------

_PIDS_V1 = Path("/sys/fs/cgroup/pids")


def processes_of_user(uid: int | None = None) -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all, machine-wide)."""
    uid = os.getuid() if uid is None else uid
    count = 0
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


def alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts: not ours to touch)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid: int) -> bool:
    """Alive and not a zombie (a process that ended, waiting for a parent to reap it)."""
    try:
        return alive(pid) and _state_and_group(_PROC / str(pid))[0] != "Z"
    except (OSError, ValueError, IndexError):
        return alive(pid)  # no /proc to read: its id is all there is


class PidsCgroup:
    """A pids cgroup holding one run (root is exempt from RLIMIT_NPROC, a cgroup is not).
    `enter` is a prefix for the run's argv: the shell joins the cgroup, then execs the rest,
    so nothing the run starts is ever outside it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str, limit: int, root: Path = _PIDS_V1) -> PidsCgroup | None:
        """None where no pids cgroup can be made here (not root, no such controller)."""
        path = root / name
        try:
            path.mkdir()
        except OSError:
            return None
        try:
            (path / "pids.max").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    @staticmethod
    def name_for(token: str) -> str:
        """The owner's PID is in the name, so a sweep never takes a live loop's cgroup; the
        dots keep the name out of older versions' sweeps (`ratchet-*`, whoever's)."""
        return f"ratchet.{os.getpid()}.{token}"

    @staticmethod
    def sweep(root: Path = _PIDS_V1) -> None:
        """Removes the empty cgroups of loops that have died (a killed Ratchet). A live
        loop's are left alone: one made but not yet entered is empty too, and removing it
        would void that loop's run (two loops on one machine, or a CLI beside the editor)."""
        with contextlib.suppress(OSError):
            for stale in root.glob("ratchet.*"):
                owner = stale.name.split(".")[1]
                if owner.isdigit() and alive(int(owner)):
                    continue
                with contextlib.suppress(OSError):
                    stale.rmdir()

    def enter(self) -> list[str]:
        procs = str(self.path / "cgroup.procs")
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "ratchet-limit"]

    def remove(self, wait_s: float = 2.0) -> None:
        """Removed once empty (the PID namespace's end empties it within moments)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.02)
