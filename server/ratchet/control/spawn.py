"""Starting a loop in a process of its own, in a session of its own, so that it outlives the
editor (or terminal) that started it; and finding out who holds a project's loop lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import RatchetError
from ..lockfile import LOCK_NAME
from ..runners.processes import running
from ..workspace import RATCHET_DIR, ensure_ratchet_dir
from . import wire

START_TIMEOUT_S = 60.0
EXIT_INTERRUPTED = 130  # a loop stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells say)
STILL_RUNNING = "still running"


def loop_command(
    root: Path,
    *,
    tag: str | None = None,
    review: str | None = None,
    max_experiments: int | None = None,
    wait_for_start: bool = False,
) -> list[str]:
    """`ratchet run --headless ...` with this interpreter (the one Ratchet is installed in)."""
    command = [sys.executable, "-m", "ratchet.cli", "-C", str(root), "run", "--headless"]
    if tag:
        command += ["--tag", tag]
    if review in ("auto", "propose"):
        command += ["--review", review]
    if max_experiments is not None:
        command += ["--max-experiments", str(max_experiments)]
    if wait_for_start:
        command.append("--wait-for-start")
    return command


def spawn(
    root: Path, command: list[str], secrets: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts `command` detached: a new session (no terminal, no signals from ours), output
    appended to `.ratchet/loop.log`. A thread reaps it if it ends while we live. `secrets`
    (an API key an editor keeps) go into the loop's environment only: never into the log's
    command line, nor into this process's environment; the loop hides them from its runs."""
    ensure_ratchet_dir(root)
    log = wire.log_path(root)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            command,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(secrets or {})},
        )
    threading.Thread(target=process.wait, name="ratchet-loop-reaper", daemon=True).start()
    return process


def how_it_ended(
    pid: int | None, process: subprocess.Popen[bytes] | None, wait_s: float
) -> int | str | None:
    """How the loop process `pid` ended, once its channel closed: its exit code where this
    process started it (negative: the signal that killed it), STILL_RUNNING when it outlives
    `wait_s` (the channel dropped, not the loop), None when it is gone and nobody here can
    say how."""
    if process is not None and process.pid == pid:
        try:
            return process.wait(wait_s)
        except subprocess.TimeoutExpired:
            return STILL_RUNNING
    deadline = time.monotonic() + wait_s
    while pid is not None and running(pid):
        if time.monotonic() > deadline:
            return STILL_RUNNING
        time.sleep(0.05)
    return None


def last_words(root: Path, limit: int = 4000) -> str:
    """The last line a loop process wrote to its log (why it could not start, usually)."""
    try:
        with wire.log_path(root).open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - limit))
            lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    words = [line for line in lines if line and not line.startswith("---")]
    return words[-1] if words else ""


def started_error(root: Path, code: int | None) -> RatchetError:
    said = last_words(root).removeprefix("error ").strip()
    if said:
        return RatchetError(said)
    return RatchetError(
        f"the loop process ended at once (exit code {code}); see {wire.log_path(root)}"
    )


def lock_holder(root: Path) -> int | None:
    """The pid of the process holding the project's loop lock, or None when no loop runs."""
    path = root / RATCHET_DIR / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
