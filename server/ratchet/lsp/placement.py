"""Where proposals and results sit in the text the user has now. Pure: no LSP, no I/O.

A finished experiment becomes a `Result` once (its diff parsed, its crash line found), and is
cached by the results feature; each new text of the editable file is then only a matter of
finding those blocks by content (`place`), which is what runs per keystroke, off the event
loop. Only the kept experiments and the recent ones are placed, however long the record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..cases import CaseChanges
from ..experiment import Experiment, Status
from .diagnostics import holdout_words, summary
from .textops import Block, Lines, blocks_between, find_crash, locate, parse_blocks

MAX_BLOCKS = 5  # located blocks of one experiment
MAX_PER_LINE = 3  # results shown on one line, newest (and most important) first
RECENT = 50  # the finished experiments shown besides the kept ones
MAX_RESULTS = 300  # and never more than this many


@dataclass(frozen=True)
class WaitingProposal:
    """A proposal waiting for accept or reject (from the loop's `proposed` event)."""

    id: int
    description: str
    diff: str
    old_text: str
    new_text: str
    blocks: tuple[Block, ...] = field(default=(), compare=False)

    @classmethod
    def of(
        cls, id: int, description: str, diff: str, old_text: str, new_text: str
    ) -> WaitingProposal:
        return cls(
            id, description, diff, old_text, new_text, tuple(blocks_between(old_text, new_text))
        )


@dataclass(frozen=True)
class Result:
    """What one finished experiment shows in the editor; made once per experiment."""

    id: int
    status: Status
    head: str  # `exp 14 kept: val_bpb 0.9979 → 0.9932 (−0.47%)`
    description: str
    reason: str
    blocks: tuple[Block, ...]
    log_path: str = ""
    crash_text: str | None = None  # the traceback's line, as the experiment's file had it
    crash_near: int = 0  # where that line was (0-based), to choose among equal lines
    crash_message: str = ""
    diff: str = ""
    # What a person reads over it (the hover, a hint's tooltip): what it fixed and broke, case
    # by case, and its holdout beside its dev number ("" where it has none).
    cases: str = ""
    holdout: str = ""

    @property
    def evidence(self) -> list[str]:
        return [t for t in (self.description, self.reason, self.cases, self.holdout) if t]


def result_of(
    exp: Experiment,
    base: Experiment | None,
    metric_name: str,
    editable: str,
    text: str | None,
    cases: CaseChanges | None = None,
) -> Result:
    """`exp` is a full row (with its diff and log tail); `base` the kept row it was made from;
    `text` its file, for a crash; `cases` what it fixed and broke against that best."""
    crash_text, near, message = None, 0, ""
    if exp.status is Status.CRASHED and text is not None:
        crash = find_crash(exp.log_tail, editable)
        lines = text.splitlines()
        if crash is not None and 0 < crash.line <= len(lines):
            crash_text, near = lines[crash.line - 1], crash.line - 1
            message = crash.message or exp.reason
    return Result(
        id=exp.id,
        status=exp.status,
        head=f"exp {exp.id} {summary(exp, base.metric if base else None, metric_name)}",
        description=exp.description,
        reason=exp.reason,
        blocks=tuple(parse_blocks(exp.diff)),
        log_path=exp.log_path,
        crash_text=crash_text,
        crash_near=near,
        crash_message=message,
        diff=exp.diff,
        cases=f"cases against exp {cases.against}: {cases.words()}" if cases else "",
        holdout=holdout_words(exp, base, metric_name),
    )


def shown_ids(rows: Iterable[Experiment]) -> list[int]:
    """The experiments the editor shows: every kept change and the recent finished ones,
    newest first, at most MAX_RESULTS."""
    final = [e for e in rows if e.status.is_final and e.source != "baseline"]
    recent = {e.id for e in final[-RECENT:]}
    kept = {e.id for e in final if e.status is Status.KEPT}
    return sorted(recent | kept, reverse=True)[:MAX_RESULTS]


@dataclass(frozen=True)
class Placed:
    kind: str  # proposal | result | crash
    experiment: int
    start: int  # 0-based first line
    end: int  # one past the last line
    block: int = 0  # which of the experiment's blocks
    applied: bool = False  # the lines are the block's new ones (the change is in the text)


def _located(blocks: Iterable[Block], lines: Lines) -> list[tuple[int, int, int, bool]]:
    found: list[tuple[int, int, int, bool]] = []
    seen: set[tuple[int, int]] = set()
    for index, block in enumerate(blocks):
        where = locate(block, lines)
        if where is not None and (where.start, where.end) not in seen:
            seen.add((where.start, where.end))
            found.append((where.start, where.end, index, where.applied))
        if len(found) >= MAX_BLOCKS:
            break
    return found


def place(
    text: str, proposals: Iterable[WaitingProposal], results: Iterable[Result]
) -> list[Placed]:
    """Proposals first, then results newest first (the order they are shown in); a result
    whose lines the user's text no longer has is left out."""
    lines = Lines(text)
    out: list[Placed] = []
    for proposal in sorted(proposals, key=lambda p: p.id):
        for start, end, index, applied in _located(proposal.blocks, lines):
            out.append(Placed("proposal", proposal.id, start, end, index, applied))
    per_line: dict[int, int] = {}
    for result in sorted(results, key=lambda r: r.id, reverse=True):
        if result.crash_text is not None:
            where = lines.find([result.crash_text], result.crash_near)
            if where is not None:
                out.append(Placed("crash", result.id, where, where + 1))
                continue
        kind = "crash" if result.status is Status.CRASHED else "result"
        for start, end, index, applied in _located(result.blocks, lines):
            if per_line.get(start, 0) >= MAX_PER_LINE:
                continue
            per_line[start] = per_line.get(start, 0) + 1
            out.append(Placed(kind, result.id, start, end, index, applied))
    return out
