"""The scope of an edit and the locked files: what an experiment may and may not change."""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .experiment import Proposal
from .runners.safe_files import changed_files, hash_files

__all__ = ["changed_files", "check_proposal", "export_commit", "hash_files", "locked_hashes_at"]

if TYPE_CHECKING:
    from .workspace import Workspace

MAX_EDIT_BYTES = 2_000_000


def check_proposal(proposal: Proposal, editable: str, original: str) -> str | None:
    """Why this proposal may not run, or None if it may. Nothing here trusts the agent."""
    if proposal.failure:
        return proposal.failure
    if not proposal.edits:
        return "the agent proposed no change"
    for path in proposal.edits:
        normal = posixpath.normpath(path.replace("\\", "/"))
        if normal != editable:
            if normal.startswith("../") or posixpath.isabs(normal):
                return (
                    f"the edit reaches outside the repository ({path}); only {editable} may change"
                )
            return f"the edit touches {path}; only {editable} may change"
    text = proposal.edits.get(editable)
    if text is None:
        return f"the edit does not give the new text of {editable}"
    return check_text(text, original)


def check_text(text: str, original: str) -> str | None:
    """Binary junk, an empty or huge file, or no change at all is refused."""
    if "\0" in text:
        return "the new file holds NUL bytes: binary content is refused"
    size = len(text.encode("utf-8", errors="replace"))
    if size > max(MAX_EDIT_BYTES, 10 * len(original)):
        return f"the new file is {size:,} bytes, far larger than the original: refused"
    if not text.strip():
        return "the new file is empty"
    if text == original:
        return "the edit changes nothing"
    return None


def locked_hashes_at(workspace: Workspace, commit: str, locked: Iterable[str]) -> dict[str, str]:
    """The locked files' hashes as `commit` has them (hashed like `hash_files`), read from
    git's objects, not from any folder a run could have touched. The engine computes this
    once from the loop's start commit; every run is checked against it."""
    locked = list(locked)
    if not locked:
        return {}
    with tempfile.TemporaryDirectory(prefix="ratchet-locked-") as scratch:
        project = export_commit(workspace, commit, Path(scratch), locked)
        return hash_files(project, locked)


def export_commit(
    workspace: Workspace, commit: str, dest: Path, paths: Iterable[str] | None = None
) -> Path:
    """The project's files at `commit` (or only `paths` of them) written into `dest`, a plain
    folder with no `.git`; returns the project folder inside it."""
    wanted = [workspace.repo_path(p) for p in paths] if paths is not None else []
    if not wanted and workspace.prefix:
        wanted = [workspace.prefix.rstrip("/")]
    existing = _present(workspace, commit, wanted)
    if paths is not None and not existing:
        return dest / workspace.prefix
    data = workspace.repo.git.archive(
        "--format=tar", commit, "--", *existing, stdout_as_string=False
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(dest, filter="data")
    return dest / workspace.prefix


def _present(workspace: Workspace, commit: str, paths: list[str]) -> list[str]:
    """The paths `commit` holds: git archive fails on a pathspec that matches nothing."""
    if not paths:
        return []
    listing = workspace.repo.git.ls_tree("--name-only", commit, "--", *paths)
    found = set(listing.splitlines())
    return [p for p in paths if p in found]
