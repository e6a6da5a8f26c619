"""The ssh runner's parts that need no connection: host addresses, the project's base copy,
and what a host is sent for one run: the shipped run wrapper (remote_run.py's BOOT with
wrapper.py and its imports, on stdin) and the request it runs, and the two short commands
that stop a run or end a lost one. Built here, run there; nothing in it trusts the run."""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import socket
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..config import SandboxConfig
from ..errors import RatchetError
from .base import Job, Slot
from .launch import run_spec
from .remote_run import BOOT, module_texts

KILL_GRACE_S = 2.0
# The host stops the run at its timeout, counted from the command's start; the client only
# if the host has not this long after (a copy that hangs, a wrapper that stopped answering).
CLIENT_SLACK_S = 30.0

q = shlex.quote

# --- addresses ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostAddress:
    """`user@host:port` as written in ratchet.toml; user and port may be left out (then
    ~/.ssh/config or the defaults decide)."""

    text: str
    host: str
    user: str | None = None
    port: int | None = None

    @property
    def shown(self) -> str:
        return f"{self.host}:{self.port or 22}"


def parse_host(text: str) -> HostAddress:
    rest = text.strip()
    user = None
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        if not user:
            raise RatchetError(f"`{text}` in [runner] hosts: the user before @ is empty")
    port: int | None = None
    if rest.startswith("["):  # [::1]:2222
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(text, tail[1:])
    elif rest.count(":") == 1:
        host, raw_port = rest.split(":")
        port = _port(text, raw_port)
    else:
        host = rest
    if not host:
        raise RatchetError(f'`{text}` in [runner] hosts has no host name; write "user@host:port"')
    return HostAddress(text.strip(), host, user, port)


def _port(text: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise RatchetError(f"`{text}` in [runner] hosts: `{raw}` is not a port number")
    return int(raw)


# --- the project's files -----------------------------------------------------------------------


def tracked_files(worktree: Path) -> list[tuple[str, str]]:
    """(mode and blob id, path) of every file git tracks in the project folder: what a clean
    checkout holds, so .gitignore'd files never travel."""
    output = subprocess.run(
        ["git", "ls-files", "-s", "-z"],
        cwd=worktree,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", errors="surrogateescape")
    files = []
    for entry in output.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        mode, blob, _stage = meta.split()
        if mode == "160000":  # a submodule: not part of this checkout's files
            continue
        files.append((f"{mode} {blob}", path))
    return files


def base_id(files: list[tuple[str, str]], editable: str) -> str:
    """The content id of the project without its editable file (which travels per run)."""
    digest = hashlib.sha256()
    for meta, path in files:
        if path != editable:
            digest.update(f"{meta}\t{path}\0".encode("utf-8", errors="surrogateescape"))
    return digest.hexdigest()[:24]


def pack(worktree: Path, files: list[tuple[str, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for _meta, path in files:
            source = worktree / path
            if source.is_symlink() or source.is_file():
                tar.add(source, arcname=path, recursive=False)
    return buffer.getvalue()


def project_key(root: Path) -> str:
    """The remote folder of one local project: its name and a hash of where it lives."""
    where = f"{socket.gethostname()}:{root.resolve()}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.resolve().name)
    return f"{safe or 'project'}-{hashlib.sha256(where.encode()).hexdigest()[:10]}"


_PYTHON = '"$(command -v python3 || command -v python)"'


def shell_path(path: str) -> str:
    """A remote path for the shell: `~` is the remote user's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + q(path[2:])
    return q(path)


def wrapper_command(mode: str, token: str) -> str:
    """The wrapper, as the session's own process (`exec`: a signal that kills it is seen
    by the client). The token in its command line lets a later run recognise it."""
    return f"exec {_PYTHON} -c {q(BOOT)} {mode} {q(token)}"


def wrapper_input(request: dict[str, object]) -> str:
    """The wrapper's stdin: the shipped modules and the run's request, as JSON."""
    return json.dumps({"modules": module_texts(), "request": request}, default=vars)


def run_request(
    root: str, folder: str, job: Job, slot: Slot, token: str, marker: str, sandbox: SandboxConfig
) -> dict[str, object]:
    """One run on the host, in `root/slots/folder` (made afresh from `root/base`)."""
    return {
        "marker": marker,
        "token": token,
        "root": root,
        "slot": folder,
        "editable": job.editable,
        "editable_text": job.editable_text,
        "drop": list(job.drop),
        "carry": None if job.carry is None else list(job.carry),
        "spec": run_spec(job, slot, token, sandbox),
    }


def end_request(root: str, folder: str, token: str) -> dict[str, object]:
    """Ends a run that went astray: its wrapper and all it started (remote_run.end_run)."""
    return {"prefix": f"{root}/run/{folder}", "token": token}


def stop_script(root: str, folder: str, token: str) -> str:
    """SIGTERM to the run's wrapper, which kills the run and reports it (if that PID is
    still the wrapper: its command line holds the token)."""
    own = f"{shell_path(root)}/run/{q(folder)}.{q(token)}.wrapper"
    return (
        f"w=$(cat {own} 2>/dev/null); "
        f'if [ -n "$w" ] && grep -qF {q(token)} "/proc/$w/cmdline" 2>/dev/null; '
        'then kill -TERM "$w"; fi'
    )
