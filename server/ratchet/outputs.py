"""Where the commands that write a file (report, plot) put it: under `.ratchet/` by default,
and never over a file git tracks, which is the user's (a project's own progress.png)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import RatchetError
from .workspace import RATCHET_DIR, ensure_ratchet_dir


def output_path(project: Path, given: Path | None, default_name: str) -> Path:
    """The file to write: `given` (relative to the current folder), else .ratchet/NAME."""
    if given is None:
        return ensure_ratchet_dir(project) / default_name
    target = given if given.is_absolute() else Path.cwd() / given
    refuse_tracked(target)
    return target


def refuse_tracked(target: Path) -> None:
    """A clear error when `target` is a file git tracks: it belongs to the user."""
    if not target.exists() or RATCHET_DIR in target.parts:
        return
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", target.name],
            cwd=target.parent,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return  # no git here: nothing tracked to protect
    if tracked.returncode == 0:
        raise RatchetError(
            f"{target} is a file tracked by git, so it is yours: Ratchet does not overwrite it; "
            f"give another name with -o, or leave -o out to write under {RATCHET_DIR}/"
        )
