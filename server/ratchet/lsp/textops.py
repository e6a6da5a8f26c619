"""Pure text work for the editor: no LSP objects, no engine, no I/O.

- the changed blocks of an experiment (from its unified diff, or from two texts);
- finding such a block, by content, in the text the user has now;
- the line of a traceback that points into the editable file;
- the line count a change touches, and the closest of several texts;
- the smallest line edits that turn one text into another.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# --- diffing, fast where it matters ----------------------------------------------------------


def opcodes(a: Sequence[str], b: Sequence[str]) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes from a to b, with the common head and tail taken off first: an
    experiment changes a few lines of a long file, and difflib is quadratic on the rest."""
    head = 0
    limit = min(len(a), len(b))
    while head < limit and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < limit - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    out: list[tuple[str, int, int, int, int]] = []
    if head:
        out.append(("equal", 0, head, 0, head))
    middle = difflib.SequenceMatcher(
        None, a[head : len(a) - tail], b[head : len(b) - tail], autojunk=False
    )
    for tag, i1, i2, j1, j2 in middle.get_opcodes():
        out.append((tag, i1 + head, i2 + head, j1 + head, j2 + head))
    if tail:
        out.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return out


# --- blocks of a change ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One run of removed and added lines, with the context lines around it."""

    old: tuple[str, ...]
    new: tuple[str, ...]
    old_start: int  # 0-based line of the first removed line (or of the insertion) in the base
    new_start: int  # 0-based line of the first added line in the new text
    before: str | None = None  # the unchanged line just above, if any
    after: str | None = None  # the unchanged line just below, if any


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_blocks(diff: str) -> list[Block]:
    """The change blocks of a unified diff (as difflib or git writes it)."""
    blocks: list[Block] = []
    old: list[str] = []
    new: list[str] = []
    old_line = new_line = old_left = new_left = 0
    start = (0, 0)
    before: str | None = None

    def flush(after: str | None) -> None:
        nonlocal old, new
        if old or new:
            blocks.append(Block(tuple(old), tuple(new), start[0], start[1], before, after))
        old, new = [], []

    for raw in diff.splitlines():
        if old_left <= 0 and new_left <= 0:  # between hunks: headers, or the next hunk
            flush(None)
            if match := _HUNK.match(raw):
                old_line, new_line = int(match.group(1)) - 1, int(match.group(3)) - 1
                old_left = int(match.group(2) or 1)
                new_left = int(match.group(4) or 1)
                if old_left == 0:  # an empty side starts *after* the line it names
                    old_line += 1
                if new_left == 0:
                    new_line += 1
                before = None
            continue
        if raw.startswith("\\"):  # "\ No newline at end of file"
            continue
        tag, text = raw[:1], raw[1:]
        if tag in ("-", "+") and not (old or new):
            start = (old_line, new_line)
        if tag == "-":
            old.append(text)
            old_line, old_left = old_line + 1, old_left - 1
        elif tag == "+":
            new.append(text)
            new_line, new_left = new_line + 1, new_left - 1
        else:  # context (" ", or an empty line whose space was stripped)
            flush(text)
            before = text
            old_line, new_line = old_line + 1, new_line + 1
            old_left, new_left = old_left - 1, new_left - 1
    flush(None)
    return blocks


def blocks_between(old_text: str, new_text: str) -> list[Block]:
    """The change blocks from one text to another."""
    a, b = old_text.splitlines(), new_text.splitlines()
    blocks = []
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag == "equal":
            continue
        blocks.append(
            Block(
                tuple(a[i1:i2]),
                tuple(b[j1:j2]),
                i1,
                j1,
                a[i1 - 1] if i1 > 0 else None,
                a[i2] if i2 < len(a) else None,
            )
        )
    return blocks


# --- finding lines by content ------------------------------------------------------------------


class Lines:
    """The user's current text, indexed for finding runs of lines by content."""

    def __init__(self, text: str) -> None:
        self.raw = text.splitlines()
        self.norm = [line.rstrip() for line in self.raw]
        self._index: dict[str, list[int]] = {}
        for number, line in enumerate(self.norm):
            self._index.setdefault(line, []).append(number)

    def __len__(self) -> int:
        return len(self.raw)

    def find(self, needle: Sequence[str], near: int) -> int | None:
        """Start of the run of lines equal to `needle` (ignoring trailing blanks) nearest to
        line `near`; None if absent or if the needle is only blank lines."""
        wanted = [line.rstrip() for line in needle]
        if not wanted or not any(wanted):
            return None
        best: int | None = None
        for start in self._index.get(wanted[0], ()):
            if self.norm[start : start + len(wanted)] == wanted and (
                best is None or abs(start - near) < abs(best - near)
            ):
                best = start
        return best


@dataclass(frozen=True)
class Located:
    start: int  # 0-based first line
    end: int  # one past the last line
    applied: bool  # the block's new lines are what the user has (it was applied)


def locate(block: Block, lines: Lines) -> Located | None:
    """Where a block is in the user's text: its new lines (applied), else the lines it would
    change, else (a pure insertion or deletion) the line next to it; None when they no longer
    match."""
    if block.new and (start := lines.find(block.new, block.new_start)) is not None:
        return Located(start, start + len(block.new), True)
    if block.old and (start := lines.find(block.old, block.old_start)) is not None:
        return Located(start, start + len(block.old), False)
    if not block.old or not block.new:
        for anchor, near in ((block.before, block.old_start - 1), (block.after, block.old_start)):
            if anchor is not None and (start := lines.find([anchor], near)) is not None:
                return Located(start, start + 1, not block.new)
    return None


# --- tracebacks ------------------------------------------------------------------------------

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')


@dataclass(frozen=True)
class Crash:
    line: int  # 1-based line in the experiment's text
    message: str  # the exception line, e.g. "ZeroDivisionError: division by zero"


def find_crash(log_tail: str, editable: str) -> Crash | None:
    """The innermost traceback frame in the editable file, and the exception's message."""
    wanted = editable.replace("\\", "/").lstrip("./")
    lines = log_tail.splitlines()
    frame: tuple[int, int] | None = None  # (index in the log, line number)
    for index, text in enumerate(lines):
        match = _FRAME.match(text)
        if match is None:
            continue
        path = match.group("path").replace("\\", "/")
        if path == wanted or path.endswith("/" + wanted):
            frame = (index, int(match.group("line")))
    if frame is None:
        return None
    message = ""
    for text in lines[frame[0] + 1 :]:
        if text.strip() and not text[:1].isspace() and not text.startswith("Traceback"):
            message = text.strip()
    return Crash(frame[1], message)


# --- three-way merge -------------------------------------------------------------------------


def changed_lines(a: str, b: str) -> int:
    """How many lines differ between two texts (a cheap distance for picking a merge base)."""
    if a == b:
        return 0
    return sum(
        max(i2 - i1, j2 - j1)
        for tag, i1, i2, j1, j2 in opcodes(a.splitlines(), b.splitlines())
        if tag != "equal"
    )


def closest(text: str, candidates: Iterable[str]) -> str | None:
    """The candidate with the fewest lines changed from `text` (the first on a tie)."""
    best: str | None = None
    best_distance = 0
    for candidate in candidates:
        distance = changed_lines(candidate, text)
        if best is None or distance < best_distance:
            best, best_distance = candidate, distance
            if distance == 0:
                break
    return best


# --- line edits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineEdit:
    """Replace [start, end) of the old text, as (line, column in client units), by `text`."""

    start: tuple[int, int]
    end: tuple[int, int]
    text: str


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def line_edits(old: str, new: str, units: Callable[[str], int] = utf16_units) -> list[LineEdit]:
    """The smallest whole-line edits from `old` to `new` (positions in `old`)."""
    a = old.splitlines(keepends=True)
    b = new.splitlines(keepends=True)

    def position(line: int) -> tuple[int, int]:
        if line < len(a) or not a:
            return (line, 0)
        last = a[-1]
        if last.endswith(("\n", "\r")):
            return (len(a), 0)
        return (len(a) - 1, units(last))

    edits = []
    for tag, i1, i2, j1, j2 in opcodes(a, b):
        if tag == "equal":
            continue
        start, end = position(i1), position(i2)
        text = "".join(b[j1:j2])
        edits.append(LineEdit(start, end, text))
    return edits


def apply_edits(text: str, edits: Sequence[LineEdit]) -> str:
    """Applies edits made by line_edits (for checks; the editor applies them for real)."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def offset(position: tuple[int, int]) -> int:
        line, column = position
        if line >= len(lines):
            return len(text)
        return offsets[line] + column

    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: offset(edit.start)] + edit.text + text[offset(edit.end) :]
    return text
