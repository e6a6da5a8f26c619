"""What travels on the control channel, and where it lives.

One socket per project, `.ratchet/control.sock` (mode 0600, the loop's own user only). Each
message is one JSON object on one line:

    request   {"id": 1, "method": "pause", "params": {}}
    reply     {"id": 1, "result": ...}  or  {"id": 1, "error": "a sentence"}
    event     {"event": "finished", ...}     (no id: pushed to every attached client)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..events import (
    AgentActivity,
    Event,
    ExperimentFinished,
    ExperimentProposed,
    ExperimentStarted,
    HoldoutMeasured,
    LockedFileChanged,
    LoopStateChanged,
)
from ..experiment import Experiment, Status
from ..workspace import RATCHET_DIR

SOCKET_NAME = "control.sock"
LOG_NAME = "loop.log"
MAX_LINE = 64 * 1024 * 1024  # a full row with its diff and log tail fits many times over
HEAVY = ("diff", "log_tail", "trace_tail")
_FIELDS = {f.name for f in dataclasses.fields(Experiment)}
# AF_UNIX paths are limited to 108 bytes; deep project folders go through /proc (Linux).
_SUN_PATH_MAX = 100


def socket_path(root: Path) -> Path:
    return root / RATCHET_DIR / SOCKET_NAME


def log_path(root: Path) -> Path:
    return root / RATCHET_DIR / LOG_NAME


@contextlib.contextmanager
def short_address(path: Path) -> Iterator[str]:
    """An address for `path` that fits in a unix socket's name: the path itself when short,
    else the same file reached through an open descriptor of its folder."""
    text = str(path)
    if len(text.encode()) <= _SUN_PATH_MAX or not Path("/proc/self/fd").is_dir():
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


def decode(line: bytes) -> dict[str, Any] | None:
    """One message, or None for a line that is not a JSON object (ignored, never fatal)."""
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def row(exp: Experiment, light: bool = False) -> dict[str, Any]:
    """An experiment as JSON; `light` leaves the heavy columns empty (as Engine.experiments)."""
    data = dataclasses.asdict(exp)
    data["status"] = str(exp.status)
    if light:
        for key in HEAVY:
            data[key] = ""
    return data


def experiment_of(data: dict[str, Any]) -> Experiment:
    """The inverse of row(); fields this version does not know are left out."""
    values = {k: v for k, v in data.items() if k in _FIELDS}
    values["status"] = Status(values["status"])
    return Experiment(**values)


def event_message(event: Event) -> dict[str, Any] | None:
    """An engine event as the message pushed to every client; None: not sent as such."""
    if isinstance(event, ExperimentProposed):
        return {
            "event": "proposed",
            "id": event.id,
            "description": event.description,
            "diff": event.diff,
            "old_text": event.old_text,
            "new_text": event.new_text,
            "awaiting_review": event.awaiting_review,
        }
    if isinstance(event, ExperimentStarted):
        return {
            "event": "started",
            "id": event.id,
            "description": event.description,
            "budget_s": event.budget_s,
            "slot": event.slot,
        }
    if isinstance(event, ExperimentFinished):
        return {
            "event": "finished",
            "experiment": row(event.experiment),
            "best": event.best,
            "baseline": event.baseline,
            "new_best": event.new_best,
        }
    if isinstance(event, HoldoutMeasured):
        return {"event": "holdout", "id": event.id, "holdout": event.holdout}
    if isinstance(event, LoopStateChanged):
        return {"event": "state", "state": event.state, "message": event.message}
    if isinstance(event, AgentActivity):
        return {"event": "activity", "id": event.id, "text": event.text}
    if isinstance(event, LockedFileChanged):
        return {"event": "locked", "path": event.path}
    return None
