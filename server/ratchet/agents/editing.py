"""The tools the model edits with, scoped to the one editable file, and the in-memory copy
they edit: nothing reaches the disk, and a refused call says why in words the model reads."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

TOOL_RESULT_CHARS = 60_000


def tool_definitions(editable_path: str) -> list[dict[str, Any]]:
    path = {
        "type": "string",
        "description": f"The file to work on; it must be exactly `{editable_path}`.",
    }
    return [
        {
            "name": "view_file",
            "description": "Show the current text of your working copy of the editable file "
            "with line numbers, optionally only lines start_line..end_line (1-based).",
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": path,
                    "start_line": {"type": "integer", "minimum": 1},
                    "end_line": {"type": "integer", "minimum": 1},
                },
                "required": ["path"],
            },
        },
        {
            "name": "replace_text",
            "description": "Replace one exact span of the file. `old_text` must occur exactly "
            "once, character for character (indentation included); give enough lines "
            "around the change to make it unique.",
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": path,
                    "old_text": {"type": "string"},
                    "new_text": {"type": "string"},
                },
                "required": ["path", "old_text", "new_text"],
            },
        },
        {
            "name": "insert_text",
            "description": "Insert lines after line `after_line` (1-based; 0 inserts at the "
            "top of the file).",
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": path,
                    "after_line": {"type": "integer", "minimum": 0},
                    "text": {"type": "string"},
                },
                "required": ["path", "after_line", "text"],
            },
        },
        {
            "name": "finish",
            "description": "End your turn once the edit is complete, with a one-line "
            "description of the idea (under 100 characters).",
            "input_schema": {
                "type": "object",
                "properties": {"description": {"type": "string"}},
                "required": ["description"],
            },
        },
    ]


class Refused(Exception):
    """A tool call that is refused; its message goes back to the model."""


@dataclass
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]
    problem: str | None = None  # malformed input (bad JSON, not an object)


class WorkingCopy:
    """The editable file as the model has edited it so far."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.original = text
        self.text = text

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def check_path(self, given: Any) -> None:
        if not isinstance(given, str) or not given.strip():
            raise Refused(f"`path` is required and must be `{self.path}`")
        normal = posixpath.normpath(given.strip().replace("\\", "/"))
        if normal == self.path:
            return
        if normal == ".." or normal.startswith("../") or posixpath.isabs(normal):
            raise Refused(
                f"`{given}` is outside the repository; only `{self.path}` may be viewed or edited"
            )
        raise Refused(
            f"`{given}` is not the editable file; only `{self.path}` may be viewed or edited "
            "(every other file is locked)"
        )

    def view(self, start: Any = None, end: Any = None) -> str:
        lines = self.text.splitlines()
        first = _optional_int(start, "start_line") or 1
        last = _optional_int(end, "end_line") or len(lines)
        if first < 1 or (lines and first > len(lines)) or last < first:
            raise Refused(
                f"no lines {first}..{last}: the file has {len(lines)} lines "
                "(line numbers start at 1)"
            )
        width = len(str(max(last, 1)))
        shown = [f"{n:>{width}}\t{lines[n - 1]}" for n in range(first, min(last, len(lines)) + 1)]
        body = "\n".join(shown) if shown else "(the file is empty)"
        return _clip(body, TOOL_RESULT_CHARS)

    def replace(self, old: Any, new: Any) -> str:
        if not isinstance(old, str) or not isinstance(new, str):
            raise Refused("`old_text` and `new_text` must both be strings")
        if not old:
            raise Refused("`old_text` is empty; give the exact text to replace")
        count = self.text.count(old)
        if count == 0:
            raise Refused(
                "`old_text` was not found in the file; it must match exactly, whitespace "
                "and indentation included. Use view_file to see the current text."
            )
        if count > 1:
            raise Refused(
                f"`old_text` occurs {count} times; include more surrounding lines so it "
                "occurs exactly once"
            )
        if old == new:
            raise Refused("`new_text` is the same as `old_text`: nothing would change")
        start = self.text.index(old)
        self.text = self.text[:start] + new + self.text[start + len(old) :]
        line = self.text.count("\n", 0, start) + 1
        return f"replaced 1 occurrence at line {line}"

    def insert(self, after: Any, text: Any) -> str:
        if isinstance(after, bool) or not isinstance(after, int):
            raise Refused("`after_line` must be a whole number (0 for the top of the file)")
        if not isinstance(text, str) or not text:
            raise Refused("`text` must be a non-empty string")
        lines = self.text.splitlines(keepends=True)
        if after < 0 or after > len(lines):
            raise Refused(f"`after_line` {after} is outside the file (0..{len(lines)})")
        if not text.endswith("\n"):
            text += "\n"
        if after == len(lines) and lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines[after:after] = [text]
        self.text = "".join(lines)
        return f"inserted {text.count(chr(10))} line(s) after line {after}"


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"`{name}` must be a whole number")
    return value


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"
