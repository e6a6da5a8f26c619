"""The scope of an edit and the locked files: what an experiment may and may not change."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable
from pathlib import Path

from .experiment import Proposal

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


def hash_files(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """sha256 of each file (a folder: of every file below it, in order); 'missing' if absent."""
    hashes = {}
    for relative in paths:
        target = root / relative
        digest = hashlib.sha256()
        if target.is_symlink():
            digest.update(b"link:" + str(target.readlink()).encode())
        elif target.is_file():
            digest.update(target.read_bytes())
        elif target.is_dir():
            for child in sorted(p for p in target.rglob("*") if p.is_file()):
                digest.update(str(child.relative_to(target)).encode() + b"\0")
                digest.update(child.read_bytes())
        else:
            hashes[relative] = "missing"
            continue
        hashes[relative] = digest.hexdigest()
    return hashes


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )
