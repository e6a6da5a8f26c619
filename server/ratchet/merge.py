"""One three-way merge for the whole of Ratchet (the engine carrying a change onto a newer best,
reverts, and the editor applying an experiment into a buffer with unsaved edits): git's own
`merge-file`, which needs no repository."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def merge3(base: str, ours: str, theirs: str) -> str | None:
    """base → theirs applied onto ours; None when both changed the same lines differently."""
    if ours == base or theirs == ours:
        return theirs
    if theirs == base:
        return ours
    with tempfile.TemporaryDirectory(prefix="ratchet-merge-") as scratch:
        names = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            target = Path(scratch) / name
            target.write_bytes(text.encode("utf-8"))
            names.append(str(target))
        done = subprocess.run(["git", "merge-file", "-p", *names], capture_output=True, check=False)
    if done.returncode != 0:  # > 0: that many conflicts; < 0: git failed
        return None
    return done.stdout.decode("utf-8")
