"""An experiment into the user's file (a three-way merge that keeps their own edits, sent as a
versioned WorkspaceEdit), and an experiment's diff for clients to show: both texts for a diff
view, a `ratchet:` document, or a file opened with window/showDocument."""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types

from ..errors import RatchetError
from ..workspace import RATCHET_DIR
from . import names
from .edits import Merger, workspace_edit
from .project import Project
from .results import Results

DIFF_FOLDER = "diffs"


class Applier:
    def __init__(self, project: Project, results: Results) -> None:
        self.project = project
        self.results = results
        self.merger = Merger()

    def known(self, experiment: int) -> Any:
        exp = self.results.rows.get(experiment)
        if exp is None:
            raise RatchetError(f"there is no experiment {experiment} in loop {self.project.tag}")
        return exp

    def target(self, which: int | str) -> int:
        if which == "best":
            best = self.results.best_id()
            if best is None:
                raise RatchetError("no experiment has beaten the baseline yet: nothing to apply")
            return best
        assert isinstance(which, int)
        exp = self.known(which)
        if not exp.commit:
            raise RatchetError(
                f"experiment {which} has no code to apply: it was {exp.status} before it was "
                "committed"
            )
        return which

    async def apply(self, which: int | str) -> dict[str, Any]:
        self.project.require_reader()
        target = self.target(which)
        await self.results.fill(extra=(target,))
        path = self.project.editable_path
        assert path is not None
        text, version = await self.project.text(path)
        edit = self._edit(target, which, (self.project.editor.uri(path), text, version), True)
        if edit is False:
            return {"applied": False, "message": f"{self.project.editable_name} already has it"}
        assert isinstance(edit, types.WorkspaceEdit)
        label = f"Ratchet: apply {'the best' if which == 'best' else 'experiment'} ({target})"
        result = await self.project.editor.apply_edit(edit, label)
        if not result.applied:
            reason = f": {result.failure_reason}" if result.failure_reason else ""
            raise RatchetError(f"the editor did not apply the edit{reason}")
        return {"applied": True, "experiment": target}

    def edit_now(self, which: int | str) -> types.WorkspaceEdit | bool | None:
        """For code actions: from cached texts only, never waiting on anything."""
        path = self.project.editable_path
        document = self.project.editor.document(path) if path else None
        if path is None or document is None:
            return None
        try:
            target = self.target(which)
            state = (self.project.editor.uri(path), document.source, document.version)
            return self._edit(target, which, state, strict=False)
        except RatchetError:
            return None

    def _edit(
        self, target: int, which: int | str, state: tuple[str, str, int | None], strict: bool
    ) -> types.WorkspaceEdit | bool | None:
        """The edit that gives the user's file the experiment's change while keeping the
        user's own edits: a three-way merge from the known text closest to what they have."""
        uri, current, version = state
        texts = self.results.texts
        if target not in texts:
            if strict:
                raise RatchetError(f"the code of experiment {target} could not be read")
            return None
        kept = [e.id for e in reversed(self.results.kept())]  # newest first; the baseline last
        order = [*kept[-1:], *kept[:-1], *sorted(texts, reverse=True)]
        merged = self.merger.merged(current, target, order, texts)
        if merged is None:
            if not strict:
                return None
            name = "the best" if which == "best" else f"experiment {target}"
            raise RatchetError(
                f"your edits to {self.project.editable_name} change the same lines as {name}; "
                "save or undo them first, or open its diff and apply it by hand"
            )
        if merged == current:
            return False
        editor = self.project.editor
        return workspace_edit(
            uri, version, current, merged, editor.units, editor.supports_document_changes
        )

    # --- diffs -------------------------------------------------------------------------------

    def diff_payload(self, experiment: int) -> dict[str, Any] | None:
        """Both texts and the diff (from cached data only), for a client's diff view."""
        path = self.project.editable_path
        uri = self.project.editor.uri(path) if path else None
        common = {"experiment": experiment, "path": self.project.editable_name, "uri": uri}
        proposal = self.results.proposals.get(experiment)
        if proposal is not None:
            return {
                **common,
                "title": f"exp {experiment} (proposed): {proposal.description}",
                "left": proposal.old_text,
                "right": proposal.new_text,
                "diff": proposal.diff,
                "diffUri": diff_uri(experiment),
            }
        exp = self.results.rows.get(experiment)
        texts = self.results.texts
        if exp is None or experiment not in texts:
            return None
        base = next(
            (e for e in self.results.kept() if e.commit == exp.base_commit and e.id in texts), None
        )
        if base is None:
            return None
        return {
            **common,
            "title": f"exp {experiment} ({exp.status}): {exp.description}",
            "left": texts[base.id],
            "right": texts[experiment],
            "leftTitle": f"exp {base.id}",
            "rightTitle": f"exp {experiment}",
            "diff": result.diff if (result := self.results.results.get(experiment)) else None,
            "diffUri": diff_uri(experiment),
        }

    async def diff_text(self, experiment: int) -> str:
        """The unified diff of a proposal or an experiment (read by id when not cached)."""
        proposal = self.results.proposals.get(experiment)
        if proposal is not None:
            return proposal.diff
        reader = self.project.require_reader()
        exp = await asyncio.to_thread(reader.experiment, experiment)
        if exp is None:
            raise RatchetError(f"there is no experiment {experiment} in loop {reader.tag}")
        return exp.diff or "(no change)\n"

    async def show_diff(self, experiment: int, text: str | None = None) -> dict[str, Any]:
        """For clients with no diff view of their own: the diff as a file opened beside the
        code (window/showDocument), or else as one message."""
        if text is None:
            text = await self.diff_text(experiment)
        editor = self.project.editor
        if editor.supports_show_document:
            folder = self.project.root / RATCHET_DIR / DIFF_FOLDER
            path = folder / f"exp-{experiment}.diff"

            def write() -> None:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")

            await asyncio.to_thread(write)
            if await editor.show_document(editor.uri(path)):
                return {"experiment": experiment, "shown": editor.uri(path)}
        editor.show(types.MessageType.Info, f"exp {experiment}\n{text}")
        return {"experiment": experiment, "diff": text}


def diff_uri(experiment: int) -> str:
    return f"{names.DIFF_SCHEME}:/exp/{experiment}.diff"


def experiment_of_uri(uri: str) -> int | None:
    """`ratchet:/exp/14.diff` → 14."""
    prefix = f"{names.DIFF_SCHEME}:/exp/"
    if not uri.startswith(prefix) or not uri.endswith(".diff"):
        return None
    number = uri[len(prefix) : -len(".diff")]
    return int(number) if number.isdigit() else None
