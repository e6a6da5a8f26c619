"""`ratchet forget`: a loop whose baseline never succeeded, dropped whole (its record, its
branch and refs), under the loop's lock and without building an agent or a runner."""

from __future__ import annotations

from pathlib import Path

from .errors import RatchetError
from .history import History
from .ledger import Ledger
from .lockfile import LoopLock
from .workspace import RATCHET_DIR, Workspace


def forget(root: Path, tag: str) -> str:
    """Drops loop `tag`; RatchetError when it has a baseline (its record is worth keeping)."""
    folder = root / RATCHET_DIR
    lock = LoopLock(folder)
    lock.acquire()
    try:
        ledger = Ledger(folder)
        try:
            history = History(ledger, tag)
            history.load()
            if history.baseline is not None:
                raise RatchetError(
                    f"loop {tag} has a baseline and {history.finished} experiments; "
                    "only a loop whose baseline never succeeded is forgotten. Start another "
                    "with `ratchet run --tag NEW`."
                )
            workspace = Workspace(root, tag)
            workspace.delete_loop_refs()
            ledger.forget_loop(tag)
        finally:
            ledger.close()
    finally:
        lock.release()
    return f"forgot loop {tag}: its record, its branch {workspace.branch} and refs"
