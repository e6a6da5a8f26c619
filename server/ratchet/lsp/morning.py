"""The morning after a loop, from the editor: the loop's report written and opened, and its
keeps made into a review branch. The same code as `ratchet report` and `ratchet finalize`;
both read the whole record and run git, so both run off the event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..finalize import Finalized, finalize, outcome_lines
from ..outputs import output_path
from ..record import LoopRecord
from ..report import summarise
from ..report_html import render_html
from .project import Project

REPORT_NAME = "report.html"


class Morning:
    def __init__(self, project: Project) -> None:
        self.project = project
        self._finalizing = asyncio.Lock()  # two review branches at once would race for a name

    async def report(self, show: bool) -> dict[str, Any]:
        """Writes the HTML report to .ratchet/report.html; asks the client to open it (in a
        browser: it is a page, not a text) when `show` and the client can."""
        reader = self.project.require_reader()
        path, message = await asyncio.to_thread(self._write_report, reader)
        editor = self.project.editor
        uri = editor.uri(path)
        shown = show and editor.supports_show_document and await editor.show_document(uri, True)
        return {"path": str(path), "uri": uri, "shown": shown, "message": message}

    def _write_report(self, reader: LoopRecord) -> tuple[Path, str]:
        summary = summarise(reader.require_loop(), reader.tag)
        text = render_html(summary)
        path = output_path(self.project.root, None, REPORT_NAME)
        path.write_text(text, encoding="utf-8")
        size = len(text.encode()) / 1024
        keeps = len(summary.keeps)
        return path, f"wrote {path} ({size:.0f} kB): {keeps} keeps of {summary.total} experiments"

    async def finalize(self, squash: bool, exclude: set[int], patch: str | None) -> dict[str, Any]:
        """The keeps (less `exclude`) as a new branch on the user's branch, or a patch series
        in `patch` (relative to the project): {branch, patchDir, patches, ..., message}."""
        reader = self.project.require_reader()
        patch_dir = None if patch is None else self.project.root / Path(patch).expanduser()
        async with self._finalizing:
            done = await asyncio.to_thread(
                _finalize, self.project.root, reader, squash, exclude, patch_dir
            )
        return {
            "branch": done.branch,
            "tip": done.tip,
            "base": done.base,
            "baseName": done.base_name,
            "carried": done.carried,
            "skipped": done.skipped,
            "patchDir": str(patch_dir) if patch_dir is not None else None,
            "patches": [str(p) for p in done.patches],
            "message": "\n".join(outcome_lines(done, reader.tag, squash, patch_dir)),
        }


def _finalize(
    root: Path, reader: LoopRecord, squash: bool, exclude: set[int], patch_dir: Path | None
) -> Finalized:
    return finalize(root, reader.require_loop(), reader.tag, squash, exclude, patch_dir)
