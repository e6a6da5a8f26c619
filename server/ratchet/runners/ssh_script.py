"""What the ssh runner sends a host for one run: the shipped run wrapper (remote_run.py's
BOOT with wrapper.py and its imports, on stdin) and the request it runs; and the two short
commands that stop a run or end a lost one. Built here, run there; nothing in it trusts
the run."""

from __future__ import annotations

import json
import shlex

from ..config import SandboxConfig
from .base import Job, Slot
from .launch import run_spec
from .remote_run import BOOT, module_texts

KILL_GRACE_S = 2.0
# The host stops the run at its timeout, counted from the command's start; the client only
# if the host has not this long after (a copy that hangs, a wrapper that stopped answering).
CLIENT_SLACK_S = 30.0

q = shlex.quote

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
