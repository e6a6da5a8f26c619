"""Applying an experiment to the user's file without losing their own edits: a three-way
merge from the known text their buffer most likely grew from, sent as the smallest
WorkspaceEdit, versioned against the document as the client has it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lsprotocol import types

from ..merge import merge3
from . import textops

CACHE_SIZE = 64


class Merger:
    """Merges an experiment's text into the user's buffer, remembering results per buffer text
    (code actions ask again each time the cursor moves)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int], str | None] = {}

    def clear(self) -> None:
        self._cache.clear()

    def merged(
        self, current: str, target: int, order: Iterable[int], texts: dict[int, str]
    ) -> str | None:
        """The buffer with the target's change, the user's own edits kept; None on a clash.

        The merge base is the known text fewest lines from the buffer, trying `order` first
        (the baseline, then kept experiments, newest first, then the others); the target
        itself only as a last resort, so a tie never hides the change being applied."""
        ids = [i for i in dict.fromkeys(order) if i != target and i in texts]
        ids.append(target)
        key = (hash(current), target, hash(tuple(ids)))
        if key not in self._cache:
            if len(self._cache) > CACHE_SIZE:
                self._cache.clear()
            base = textops.closest(current, (texts[i] for i in ids)) or current
            self._cache[key] = merge3(base, current, texts[target])
        return self._cache[key]


def workspace_edit(
    uri: str,
    version: int | None,
    current: str,
    new: str,
    units: Callable[[str], int],
    document_changes: bool,
) -> types.WorkspaceEdit:
    """The smallest line edits from `current` to `new`; versioned when the client supports it
    (so an edit made for an older buffer is refused rather than misapplied)."""
    edits: list[types.TextEdit] = [
        types.TextEdit(
            range=types.Range(types.Position(*e.start), types.Position(*e.end)), new_text=e.text
        )
        for e in textops.line_edits(current, new, units)
    ]
    if not document_changes:
        return types.WorkspaceEdit(changes={uri: edits})
    return types.WorkspaceEdit(
        document_changes=[
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(
                    uri=uri, version=version
                ),
                edits=list(edits),
            )
        ]
    )
