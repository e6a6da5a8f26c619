"""What of this machine a run must not reach, as found on the machine: the kernel's knobs and
memory, the files and folders only Ratchet's user may read (searched, bounded, remembered a
while), and the sockets where services listen. runners/sandbox.py covers them in its argv.

Standard library only: shipped to ssh hosts and Ray nodes with the run wrapper (remote_run.py).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import stat
import subprocess
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# /proc entries that set the whole machine, bound read-only (Docker's read-only paths).
# bubblewrap covers /proc/irq and /proc/bus itself, and the others only where it finds them
# writable after dropping caps: never /proc/sys (0555), whose 0644 files root may write.
PROC_READ_ONLY = ("sys", "sysrq-trigger", "fs")
# The kernel's memory, log, keys, timers and page maps: /dev/null or empty. Each costs the run's
# start a bind (under a millisecond), so what caps already refuse is left out (vmallocinfo,
# slabinfo: counts and zeroed addresses); kcore and kmsg are refused by caps too, and covered.
PROC_UNREADABLE = (
    "kcore", "kmsg", "kallsyms", "keys", "timer_list", "sched_debug", "latency_stats",
    "kpagecount", "kpageflags", "acpi", "asound", "scsi",
)  # fmt: skip
SYS_UNREADABLE = (
    "/sys/firmware", "/sys/kernel/debug", "/sys/kernel/tracing", "/sys/kernel/security",
    "/sys/kernel/config", "/sys/fs/bpf", "/sys/devices/virtual/powercap",
)  # fmt: skip
# Where services listen (docker, the buses, containerd, lxd): emptied.
SOCKET_FOLDERS = (
    "/run", "/var/run", "/var/lib/docker", "/var/lib/containerd", "/var/snap/lxd/common",
    "/var/lib/lxd", "/var/lib/incus",
)  # fmt: skip
# Left out of the search for private files: the system's, the kernel's, and what is emptied.
NOT_SEARCHED = {"proc", "sys", "dev", "run", "tmp", "usr", "bin", "sbin", "lib", "lib32", "lib64"}
SEARCH_DEPTH = 4  # /etc/ssh/ssh_host_rsa_key is at depth 3
SEARCH_ENTRIES = 50_000  # a huge data folder bounds the search, not the run's start
SEARCH_TTL_S = 300.0
# Private on every machine: covered even where the bounded search stopped before them.
KNOWN_PRIVATE = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh/ssh_host_*_key",
)  # fmt: skip


def within(path: str, folders: Iterable[str]) -> bool:
    """Whether `path` lies strictly inside one of `folders`."""
    return any(path.startswith(f.rstrip("/") + "/") for f in folders)


def inside(path: str, folders: Iterable[str]) -> bool:
    """Whether `path` is one of `folders` or lies within one."""
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def kernel_covers(local: bool = True) -> list[str]:
    """The /proc and /sys entries a run may not write or read (`local`: those this machine
    has; otherwise only the read-only binds, which bubblewrap skips where missing)."""
    argv = []
    for name in PROC_READ_ONLY:  # the source is the host's /proc: the same kernel's knobs
        argv += ["--ro-bind-try", f"/proc/{name}", f"/proc/{name}"]
    if not local:
        return argv
    for name in PROC_UNREADABLE:
        path = f"/proc/{name}"
        if os.path.isdir(path):
            argv += ["--tmpfs", path]
        elif os.path.exists(path):
            argv += ["--ro-bind", "/dev/null", path]
    for path in SYS_UNREADABLE:
        if os.path.isdir(path):
            argv += ["--tmpfs", path]
    return argv


def known_private() -> list[str]:
    """The files of KNOWN_PRIVATE this machine has."""
    return [path for pattern in KNOWN_PRIVATE for path in sorted(glob.glob(pattern))]


@dataclass(frozen=True)
class Private:
    folders: tuple[str, ...]
    files: tuple[str, ...]
    sockets: tuple[str, ...]
    complete: bool  # False: the search stopped at SEARCH_ENTRIES


_SEARCHED: dict[tuple[int, int], Private] = {}


def private_paths(top: str = "/") -> Private:
    """The folders and files a run would read only because it runs as Ratchet's user (root:
    /etc/shadow, the ssh host keys, /root; anyone: what only they may read), and the sockets
    met on the way. Searched SEARCH_DEPTH deep from `top`, remembered for SEARCH_TTL_S."""
    key = (os.geteuid(), int(time.monotonic() // SEARCH_TTL_S))
    if key not in _SEARCHED:
        _SEARCHED.clear()
        _SEARCHED[key] = _search(top)
    return _SEARCHED[key]


def _search(top: str) -> Private:
    uid, groups = os.geteuid(), {os.getegid(), *os.getgroups()}
    folders: list[str] = []
    files: list[str] = []
    sockets: list[str] = []
    # Breadth first: where SEARCH_ENTRIES stops it, the shallow paths (/etc, /root) were seen.
    pending, seen = deque([(top, 0)]), 0
    while pending and seen < SEARCH_ENTRIES:
        folder, depth = pending.popleft()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        seen += len(entries)
        for entry in entries:
            if depth == 0 and entry.name in NOT_SEARCHED:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            mode, own = info.st_mode, _own_bits(info, uid, groups)
            if stat.S_ISDIR(mode) and own & 1:  # a folder the run could enter
                if not mode & stat.S_IXOTH:
                    folders.append(entry.path)
                elif depth + 1 < SEARCH_DEPTH:
                    pending.append((entry.path, depth + 1))
            elif stat.S_ISREG(mode) and own & 4 and not mode & stat.S_IROTH and info.st_size:
                files.append(entry.path)  # (an empty one, a lock, tells nothing)
            elif stat.S_ISSOCK(mode):
                sockets.append(entry.path)
    return Private(tuple(folders), tuple(files), tuple(sockets), not pending)


def _own_bits(info: os.stat_result, uid: int, groups: set[int]) -> int:
    """The rwx bits that apply to the run (its user, without root's powers: caps dropped)."""
    if info.st_uid == uid:
        return (info.st_mode >> 6) & 7
    if info.st_gid in groups:
        return (info.st_mode >> 3) & 7
    return info.st_mode & 7


def socket_folders() -> list[str]:
    """The folders where this machine's services listen, as they really are (/var/run is
    /run): the run sees them empty."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    candidates = [*SOCKET_FOLDERS, *([runtime] if os.path.isabs(runtime) else [])]
    return outermost(os.path.realpath(f) for f in candidates if os.path.isdir(f))


def bound_sockets(table: str = "/proc/net/unix") -> list[str]:
    """Every unix socket bound to a path in this network namespace now (listening ones, and
    datagram ones such as a log's), as the real path of a socket that is there."""
    try:
        with open(table, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return []
    found = set()
    for line in lines:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7].startswith("/"):
            path = os.path.realpath(fields[7])
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    found.add(path)
    return sorted(found)


def outermost(folders: Iterable[str]) -> list[str]:
    """The folders with any that lies inside another left out (hiding the outer hides it)."""
    normal = sorted({os.path.normpath(f) for f in folders if f})
    kept: list[str] = []
    for folder in normal:
        if not any(folder == k or folder.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(folder)
    return kept


@functools.cache
def repository_folders(root: Path) -> tuple[Path, ...]:
    """What of the repository holding `root` no run nor agent may see: its top, its git
    folder and, for a linked worktree, the common git folder and the main checkout around it
    (other branches' files, untracked labels). Empty outside a repository."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    if done.returncode != 0:
        return ()
    folders = [(root / line).resolve() for line in done.stdout.splitlines() if line.strip()]
    if folders and folders[-1].name == ".git":  # the common git dir: its checkout is around it
        folders.append(folders[-1].parent)
    return tuple(dict.fromkeys(folders))
