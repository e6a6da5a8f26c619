"""How one job's process starts on this machine: in the sandbox, or (opted out) plainly.

`prepare` gives the argv, the environment and the descriptors to pass; after the process
ends, `Launch.report()` reads what the sandbox's first process said on the status pipe (the
command's exit code and what it left running), a channel the command never holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .base import Job, Slot
from .netproxy import HostProxy
from .processes import TOKEN_VARIABLE, PidsCgroup, processes_of_user
from .sandbox import (
    SandboxSpec,
    build_argv,
    clean_env,
    expand,
    find_bwrap,
    toolchain_folders,
)
from .sandbox_init import INIT_SH

_FORWARDER_SOURCE = (Path(__file__).parent / "sandbox_init.py").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Report:
    exit_code: int
    leftovers: int


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    sandboxed: bool
    pass_fds: tuple[int, ...] = ()  # closed here once started: [the status pipe's write end]
    status_fd: int | None = None  # our end of the status pipe

    @property
    def stdin(self) -> int:
        """The sandbox's stdin is the status pipe (its first process moves it to fd 3)."""
        return self.pass_fds[0] if self.pass_fds else subprocess.DEVNULL

    cgroup: PidsCgroup | None = None
    _closed: bool = field(default=False, repr=False)

    def started(self) -> None:
        """The child holds the write end now: ours is closed, so a read ends at its exit."""
        for fd in self.pass_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.pass_fds = ()

    def report(self) -> Report | None:
        """What the sandbox's first process said, or None when it said nothing or more than
        once (it was killed, or something else wrote: the run's result is not believed)."""
        if self.status_fd is None:
            return None
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := os.read(self.status_fd, 4096):
                chunks.append(chunk)
                if sum(map(len, chunks)) > 4096:
                    return None
        lines = b"".join(chunks).decode("ascii", "replace").splitlines()
        if len(lines) != 1:
            return None
        words = lines[0].split()
        if len(words) != 4 or words[0] != "exit" or words[2] != "leftovers":
            return None
        try:
            return Report(int(words[1]), int(words[3]))
        except ValueError:
            return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.started()
        if self.status_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.status_fd)
        if self.cgroup is not None:
            # Off the run's path: the cgroup empties moments after the namespace ends.
            threading.Thread(target=self.cgroup.remove, daemon=True).start()


def experiment_variables(job: Job, slot: Slot, token: str) -> dict[str, str]:
    """What Ratchet tells every run: the budget, its number, its GPU, the run token."""
    env = dict(job.env)
    env["RATCHET_TIME_BUDGET"] = f"{job.budget_s:g}"
    env["RATCHET_EXPERIMENT"] = str(job.experiment)
    env[TOKEN_VARIABLE] = token
    env["PYTHONUNBUFFERED"] = "1"
    # A CPU slot hides every GPU, so an experiment never grabs one it was not given.
    env["CUDA_VISIBLE_DEVICES"] = "" if slot.gpu is None else str(slot.gpu)
    return env


def prepare(job: Job, slot: Slot, token: str, proxy: HostProxy | None) -> Launch:
    variables = experiment_variables(job, slot, token)
    isolation = job.isolation
    if isolation is None or isolation.sandbox.kind == "none":
        env = {k: v for k, v in os.environ.items() if k not in job.hidden_env}
        env.update(variables)
        return Launch(["/bin/sh", "-c", job.command], env, sandboxed=False)
    sandbox = isolation.sandbox
    bwrap = find_bwrap()
    if bwrap is None:  # the runner's open() checked; a machine that lost it since says so
        raise OSError("bubblewrap (bwrap) is no longer installed")
    home = os.path.expanduser("~")
    hidden = (*isolation.hide, home, "/tmp")  # the run's /tmp is its own, too
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    passed = [name for name in sandbox.env if name not in job.hidden_env]
    spec = SandboxSpec(
        bwrap=bwrap,
        run_dir=str(Path(job.worktree).resolve()),
        hide=tuple(isolation.hide),
        home=home,
        read=(
            *toolchain_folders(hidden, os.environ.get("PATH", ""), prefixes, job.command),
            *expand(sandbox.read, home),
        ),
        write=tuple(_existing(expand(sandbox.write, home))),
        network=sandbox.network,
        binds=((str(proxy.folder), str(proxy.folder)),) if proxy else (),
        hosts_file=proxy.hosts_file if proxy else None,
        bind_low_ports=proxy is not None
        and any(int(h.rsplit(":")[-1]) < 1024 for h in proxy.hosts),
    )
    env = clean_env(os.environ, passed, variables)
    env["HOME"] = home
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, False)
    init = [
        "/bin/sh", "-c", INIT_SH, "ratchet-init", job.command,
        sys.executable if proxy else "", _FORWARDER_SOURCE if proxy else "",
        proxy.forwards() if proxy else "",
    ]  # fmt: skip
    argv = [*_process_limit(sandbox.max_processes, token), *build_argv(spec, init)]
    cgroup = _LIMITS.pop(token, None)
    return Launch(argv, env, True, (write_end,), read_end, cgroup)


_LIMITS: dict[str, PidsCgroup] = {}


def _process_limit(limit: int, token: str) -> list[str]:
    """The argv prefix that holds a fork bomb: a pids cgroup for root (exempt from
    RLIMIT_NPROC), `prlimit --nproc` for anyone else (which counts all the user's processes,
    so the limit is what they run now plus `limit`)."""
    if os.getuid() == 0:
        cgroup = PidsCgroup.create(PidsCgroup.name_for(token), limit)
        if cgroup is not None:
            _LIMITS[token] = cgroup
            return cgroup.enter()
        return []
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return []
    total = processes_of_user() + limit
    return [prlimit, f"--nproc={total}:{total}", "--"]


def _existing(folders: tuple[str, ...]) -> list[str]:
    """A declared cache folder is made if missing, so the first run can fill it."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.makedirs(folder, exist_ok=True)
    return list(folders)
