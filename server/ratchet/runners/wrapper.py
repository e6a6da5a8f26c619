"""One run of one command, on the machine where it runs, outside the sandbox: the same
functions on every runner (local calls them in-process; ssh hosts and Ray nodes run them
from the shipped text, see remote_run.py).

`execute` hashes the locked files against the loop's expected digests (safe_files, so a file
hashes the same byte for byte wherever it ran), starts the command in the sandbox under a
process limit, stops it at its timeout or when asked, counts and kills what it left
running, reads the sandbox's own report from the status pipe, hashes again, and returns the
run's report: one dict, the same on every runner.

Standard library only: this text is shipped to remote hosts with its imports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .processes import PidsCgroup, kill_tree, processes_of_user, processes_with_token
from .safe_files import MISSING, changed_files, hash_files
from .sandbox import (
    SandboxSpec,
    build_argv,
    clean_env,
    expand,
    find_bwrap,
    probe,
    toolchain_folders,
)
from .sandbox_init import INIT_SH

STATUS_LIMIT = 4096  # the sandbox's report is one short line: more is a forgery
READER_WAIT_S = 5.0  # the output after the command's end, read this long at most


@dataclass
class SandboxRules:
    """`[sandbox]` as the host applies it (paths may start with ~: the host's home)."""

    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    network: bool = False
    max_processes: int = 512


@dataclass
class RunSpec:
    """One run, as plain data (it travels as JSON to remote hosts)."""

    command: str
    run_dir: str  # absolute, on the host
    token: str  # in the run's environment: its processes are found by it
    timeout_s: float  # enforced here, on the host
    variables: dict[str, str]  # what Ratchet tells the run (budget, experiment, GPU, token)
    locked: list[str] = field(default_factory=list)
    consumable: list[str] = field(default_factory=list)  # locked, checked before only
    expected: dict[str, str] | None = None  # the loop's digests: None, before vs after
    sandbox: SandboxRules | None = None  # None: run plainly (`[sandbox] kind = "none"`)
    hide: list[str] = field(default_factory=list)  # never seen (the home and /tmp always)
    hidden_env: list[str] = field(default_factory=list)  # unsandboxed: never passed on
    # Local only, for declared hosts: read-only binds, /etc/hosts, the forwarders' argv.
    binds: list[tuple[str, str]] = field(default_factory=list)
    hosts_file: str | None = None
    bind_low_ports: bool = False
    forwarders: list[str] = field(default_factory=list)  # [python, source, "port=socket,..."]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        rules = data.get("sandbox")
        return cls(**{**data, "sandbox": SandboxRules(**rules) if rules else None})


class Control:
    """Wakes the run's wait: its process ended, or someone stopped it (the engine, a signal)."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.stopped = False
        self.on_start: Callable[[int], None] | None = None  # told the run's process group

    def stop(self) -> None:
        self.stopped = True
        self.wake.set()


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    sandboxed: bool
    status_write: int | None = None  # the sandbox's stdin, moved to its fd 3: the status pipe
    status_read: int | None = None
    cgroup: PidsCgroup | None = None

    def started(self) -> None:
        """The child holds the write end now: ours is closed, so a read ends at its exit."""
        if self.status_write is not None:
            with contextlib.suppress(OSError):
                os.close(self.status_write)
            self.status_write = None

    def close(self) -> None:
        self.started()
        if self.status_read is not None:
            with contextlib.suppress(OSError):
                os.close(self.status_read)
            self.status_read = None
        if self.cgroup is not None:
            # Off the run's path (the cgroup empties moments after the namespace ends), but
            # not a daemon: a remote wrapper waits for it before it exits.
            threading.Thread(target=self.cgroup.remove).start()
            self.cgroup = None


def read_status(fd: int | None) -> tuple[int, int] | None:
    """What the sandbox's first process said, (exit code, leftovers), or None when it said
    nothing or more than once (it was killed, or something else wrote: not believed)."""
    if fd is None:
        return None
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, STATUS_LIMIT):
            data += chunk
            if len(data) > STATUS_LIMIT:
                return None
    lines = data.decode("ascii", "replace").splitlines()
    words = lines[0].split() if len(lines) == 1 else []
    if len(words) != 4 or words[0] != "exit" or words[2] != "leftovers":
        return None
    try:
        return int(words[1]), int(words[3])
    except ValueError:
        return None


def process_limit(limit: int, token: str) -> tuple[list[str], PidsCgroup | None]:
    """The argv prefix that holds a fork bomb: a pids cgroup for root (exempt from
    RLIMIT_NPROC), `prlimit --nproc` for anyone else (which counts all the user's processes,
    so the limit is what they run now plus `limit`)."""
    if os.getuid() == 0:
        cgroup = PidsCgroup.create(PidsCgroup.name_for(token), limit)
        return (cgroup.enter(), cgroup) if cgroup is not None else ([], None)
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return [], None
    total = processes_of_user() + limit
    return [prlimit, f"--nproc={total}:{total}", "--"], None


def forwarder_source() -> str:
    """The forwarders' text, for `python -I -S -c` inside the sandbox (local runs only)."""
    return (Path(__file__).parent / "sandbox_init.py").read_text(encoding="utf-8")


def launch(spec: RunSpec) -> Launch:
    """The argv and environment of the run: in bubblewrap unless opted out. OSError when no
    sandbox can start here."""
    if spec.sandbox is None:
        env = {k: v for k, v in os.environ.items() if k not in spec.hidden_env}
        env.update(spec.variables)
        return Launch(["/bin/sh", "-c", spec.command], env, sandboxed=False)
    rules = spec.sandbox
    bwrap = find_bwrap()
    if bwrap is None:
        raise OSError("bubblewrap (bwrap) is not installed here")
    if problem := probe(bwrap):
        raise OSError(problem)
    home = os.path.expanduser("~")
    hidden = (*spec.hide, home, "/tmp")  # the run's /tmp is its own, too
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    path = os.environ.get("PATH", "")
    sandbox = SandboxSpec(
        bwrap=bwrap,
        run_dir=spec.run_dir,
        hide=tuple(spec.hide),
        home=home,
        read=(
            *toolchain_folders(hidden, path, prefixes, spec.command),
            *expand(rules.read, home),
        ),
        write=tuple(_existing(expand(rules.write, home))),
        network=rules.network,
        binds=tuple((a, b) for a, b in spec.binds),
        hosts_file=spec.hosts_file,
        bind_low_ports=spec.bind_low_ports,
    )
    env = clean_env(os.environ, (), spec.variables, spec.hidden_env)
    env["HOME"] = home
    forwarders = list(spec.forwarders) or ["", "", ""]
    init = ["/bin/sh", "-c", INIT_SH, "ratchet-init", spec.command, *forwarders]
    prefix, cgroup = process_limit(rules.max_processes, spec.token)
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, False)
    return Launch([*prefix, *build_argv(sandbox, init)], env, True, write_end, read_end, cgroup)


def _existing(folders: tuple[str, ...]) -> list[str]:
    """A declared cache folder is made if missing, so the first run can fill it."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.makedirs(folder, exist_ok=True)
    return list(folders)


def not_run(reason: str, emit: Callable[[bytes], None], *, refused: bool = True) -> dict[str, Any]:
    """The report of a run that never started; the reason goes to its output as well."""
    emit(reason.encode("utf-8", "replace") + b"\n")
    return {
        "exit": None, "wall": 0.0, "timed_out": False, "stopped": False, "leftovers": 0,
        "locked_changed": [], "refused": reason if refused else None, "sandbox": False,
    }  # fmt: skip


def execute(spec: RunSpec, emit: Callable[[bytes], None], control: Control) -> dict[str, Any]:
    """Runs `spec` to its end; its output goes to `emit` in chunks. Returns the run's report."""
    before = hash_files(spec.run_dir, spec.locked, spec.expected)
    if spec.expected is not None:
        expected = {k: spec.expected.get(k, MISSING) for k in before}
        if differ := changed_files(expected, before):
            reason = "the locked files differ from the loop's start: " + ", ".join(differ)
            return not_run(reason, emit)
        before = expected
    try:
        run = launch(spec)
    except OSError as error:
        return not_run(f"could not start the sandbox: {error}", emit)
    try:
        ran = _run(spec, run, emit, control)
        status = read_status(run.status_read)
    finally:
        run.close()
    if isinstance(ran, str):
        return not_run(ran, emit, refused=False)
    code, wall, timed_out, stopped, leftovers = ran
    refused = None
    if run.sandboxed and not (timed_out or stopped):
        if status is None:
            refused = "the sandbox's first process was killed or its report was forged"
        elif status[0] != code:
            refused = "the sandbox's report does not match the exit code"
        else:
            leftovers = status[1]
    checked = [p for p in spec.locked if p not in spec.consumable]
    after = hash_files(spec.run_dir, checked, before)
    before = {k: v for k, v in before.items() if k in checked}
    return {
        "exit": code, "wall": wall, "timed_out": timed_out, "stopped": stopped,
        "leftovers": 0 if (timed_out or stopped) else leftovers,
        "locked_changed": changed_files(before, after), "refused": refused,
        "sandbox": run.sandboxed,
    }  # fmt: skip


def _run(
    spec: RunSpec, run: Launch, emit: Callable[[bytes], None], control: Control
) -> str | tuple[int, float, bool, bool, int]:
    """The process itself: (exit code, wall, timed out, stopped, leftovers), or why it could
    not start."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            run.argv,
            cwd=spec.run_dir,
            env=run.env,
            stdin=subprocess.DEVNULL if run.status_write is None else run.status_write,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as one
        )
    except OSError as error:
        return f"could not start `{spec.command}`: {error}"
    run.started()
    if control.on_start is not None:
        control.on_start(process.pid)
    assert process.stdout is not None
    reader = threading.Thread(target=_pump, args=(process.stdout.fileno(), emit), daemon=True)
    reader.start()
    threading.Thread(target=_wait, args=(process, control), daemon=True).start()
    timed_out = stopped = False
    if not control.wake.wait(spec.timeout_s) or process.poll() is None:
        timed_out, stopped = not control.stopped, control.stopped
        kill_tree(process.pid, spec.token)
    code = process.wait()
    wall = time.monotonic() - started
    # What the command left running is killed now; the count lets the engine void it.
    leftovers = processes_with_token(spec.token)
    if leftovers:
        kill_tree(None, spec.token, 0.5)
    reader.join(READER_WAIT_S)
    process.stdout.close()
    return code, wall, timed_out, stopped, len(leftovers)


def _wait(process: subprocess.Popen[bytes], control: Control) -> None:
    process.wait()
    control.wake.set()


def _pump(fd: int, emit: Callable[[bytes], None]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while chunk := os.read(fd, 1 << 16):
            emit(chunk)
