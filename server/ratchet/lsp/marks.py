"""Placed proposals and results → what any LSP client shows: diagnostics (a proposal waits,
a run crashed, and the latest result on the lines its change touched), inlay hints (the
history at the end of its lines, a proposal's new text as ghost text), code lenses over a
proposal (Accept & Run / Reject / Open diff), and the hover over a line (its experiments
with their reasons, cases fixed and broken, and holdout).

Pure functions over the placement. A result is a diagnostic at Hint severity: a plain LSP
client receives it as `publishDiagnostics`, while VS Code draws no squiggle and lists no
Problems entry for it; only the newest result of a line is one, the rest of the history is
inlay hints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from lsprotocol import types

from . import names
from .diagnostics import SOURCE
from .placement import Placed, Result, WaitingProposal

GHOST_LIMIT = 100  # characters of a proposal's new text shown as ghost text


def _range(raw: list[str], start: int, end: int, units: Callable[[str], int]) -> types.Range:
    if not raw:
        return types.Range(types.Position(0, 0), types.Position(0, 0))
    start = min(start, len(raw) - 1)
    last = min(max(end - 1, start), len(raw) - 1)
    return types.Range(types.Position(start, 0), types.Position(last, units(raw[last])))


def _end_of(raw: list[str], line: int, units: Callable[[str], int]) -> types.Position:
    if not raw:
        return types.Position(0, 0)
    line = min(line, len(raw) - 1)
    return types.Position(line, units(raw[line]))


def diagnostics(
    placed: Iterable[Placed],
    raw: list[str],
    proposals: Mapping[int, WaitingProposal],
    results: Mapping[int, Result],
    units: Callable[[str], int],
    log_uri: Callable[[Result], str | None],
) -> list[types.Diagnostic]:
    out: list[types.Diagnostic] = []
    lines_with_result: set[int] = set()
    for item in placed:
        where = _range(raw, item.start, item.end, units)
        if item.kind == "proposal" and (proposal := proposals.get(item.experiment)):
            out.append(
                types.Diagnostic(
                    range=where,
                    message=f"exp {proposal.id} proposed: {proposal.description} — waiting "
                    "for review: accept to run it, or reject",
                    severity=types.DiagnosticSeverity.Warning,
                    source=SOURCE,
                    code="proposed",
                    data={"kind": "proposal", "experiment": proposal.id},
                )
            )
        elif item.kind == "crash" and (result := results.get(item.experiment)):
            out.append(_crash(result, where, log_uri(result)))
        elif (
            item.kind == "result"
            and item.start not in lines_with_result  # placed newest first: the latest wins
            and (result := results.get(item.experiment))
        ):
            lines_with_result.add(item.start)
            out.append(_result(result, where, log_uri(result)))
    return out


def _log_link(result: Result, log: str | None) -> list[types.DiagnosticRelatedInformation] | None:
    if log is None:
        return None
    origin = types.Range(types.Position(0, 0), types.Position(0, 0))
    return [
        types.DiagnosticRelatedInformation(
            location=types.Location(uri=log, range=origin), message=f"the log of exp {result.id}"
        )
    ]


def _result(result: Result, where: types.Range, log: str | None) -> types.Diagnostic:
    """`exp 14 kept: val_bpb 0.9979 → 0.9932 (−0.47%)`, with the change and the reason."""
    details = " — ".join(t for t in (result.description, result.reason) if t)
    return types.Diagnostic(
        range=where,
        message=f"{result.head} ({details})" if details else result.head,
        severity=types.DiagnosticSeverity.Hint,
        source=SOURCE,
        code=str(result.status),
        data={"kind": "result", "experiment": result.id, "status": str(result.status)},
        related_information=_log_link(result, log),
    )


def _crash(result: Result, where: types.Range, log: str | None) -> types.Diagnostic:
    message = (
        f"exp {result.id} crashed: {result.crash_message}" if result.crash_message else result.head
    )
    return types.Diagnostic(
        range=where,
        message=f"{message} ({result.description})" if result.description else message,
        severity=types.DiagnosticSeverity.Error,
        source=SOURCE,
        code="crashed",
        data={"kind": "crash", "experiment": result.id, "status": str(result.status)},
        related_information=_log_link(result, log),
    )


def inlay_hints(
    placed: Iterable[Placed],
    raw: list[str],
    proposals: Mapping[int, WaitingProposal],
    results: Mapping[int, Result],
    units: Callable[[str], int],
    lines: tuple[int, int] | None = None,
) -> list[types.InlayHint]:
    """Hints on the lines in `lines` ([first, last], all when None)."""
    out: list[types.InlayHint] = []
    for item in placed:
        if lines is not None and not lines[0] <= item.start <= lines[1]:
            continue
        position = _end_of(raw, item.start, units)
        if item.kind == "proposal" and (proposal := proposals.get(item.experiment)):
            if item.applied:
                continue  # the user's text has it already: nothing to ghost
            out.append(
                types.InlayHint(
                    position=position,
                    label=ghost(proposal, item.block),
                    padding_left=True,
                    tooltip=f"exp {proposal.id} proposed: {proposal.description}",
                    data={"kind": "proposal", "experiment": proposal.id},
                )
            )
        elif item.kind == "result" and (result := results.get(item.experiment)):
            tooltip = "\n".join(result.evidence)
            out.append(
                types.InlayHint(
                    position=position,
                    label=result.head,
                    padding_left=True,
                    tooltip=tooltip or None,
                    data={"kind": "result", "experiment": result.id},
                )
            )
    return out


def hover(
    placed: Iterable[Placed],
    proposals: Mapping[int, WaitingProposal],
    results: Mapping[int, Result],
) -> types.Hover | None:
    """Over a line: each experiment placed there, newest first, with what a person weighs it
    by (its reason, the cases it fixed and broke, its holdout beside its dev number). Plain
    text: case ids and descriptions are shown as written, never as markup."""
    blocks: list[str] = []
    seen: set[int] = set()
    for item in placed:
        if item.experiment in seen:
            continue
        seen.add(item.experiment)
        if item.kind == "proposal" and (proposal := proposals.get(item.experiment)):
            blocks.append(f"exp {proposal.id} proposed: {proposal.description}")
        elif result := results.get(item.experiment):
            head = (
                f"exp {result.id} crashed: {result.crash_message}"
                if item.kind == "crash" and result.crash_message
                else result.head
            )
            blocks.append("\n".join([head, *result.evidence]))
    if not blocks:
        return None
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.PlainText, value="\n\n".join(blocks))
    )


def ghost(proposal: WaitingProposal, block: int) -> str:
    """A proposal's change on one line: `→ LR = 0.3` (its new lines), `→ (deletes 2 lines)`."""
    if not 0 <= block < len(proposal.blocks):
        return f"→ exp {proposal.id}: {proposal.description}"
    new = [line.strip() for line in proposal.blocks[block].new]
    if not new:
        count = len(proposal.blocks[block].old)
        return f"→ (deletes {count} line{'s' if count != 1 else ''})"
    text = "→ " + " ⏎ ".join(line for line in new if line)
    return text if len(text) <= GHOST_LIMIT else text[: GHOST_LIMIT - 1] + "…"


def code_lenses(
    placed: Iterable[Placed],
    proposals: Mapping[int, WaitingProposal],
    diff_payload: Callable[[int], dict[str, object] | None] = lambda number: None,
) -> list[types.CodeLens]:
    """Accept & Run / Reject / Open diff over each pending proposal (its first block; the top
    of the file when the user's text no longer has its lines). Open diff carries the same
    payload as the code action's (both texts), else the experiment's number."""
    first: dict[int, int] = {}
    for item in placed:
        if item.kind == "proposal":
            first.setdefault(item.experiment, item.start)
    out: list[types.CodeLens] = []
    for number in sorted(proposals):
        line = first.get(number, 0)
        where = types.Range(types.Position(line, 0), types.Position(line, 0))
        diff = diff_payload(number) or number
        for title, command, argument in (
            (f"Accept & Run exp {number}", names.ACCEPT, number),
            ("Reject", names.REJECT, number),
            ("Open diff", names.OPEN_DIFF, diff),
        ):
            out.append(
                types.CodeLens(
                    range=where,
                    command=types.Command(title=title, command=command, arguments=[argument]),
                )
            )
    return out
