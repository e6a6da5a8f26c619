"""Code actions on Ratchet's diagnostics: Accept & run / Reject a proposal; Apply experiment N /
Apply best (a WorkspaceEdit on the user's file); Revert experiment N; Open diff (a command
carrying both texts, for clients that can show a diff view)."""

from __future__ import annotations

from typing import Any, Protocol

from lsprotocol import types

from ..experiment import Experiment, Status
from .diagnostics import SOURCE
from .names import ACCEPT, APPLY, OPEN_DIFF, REJECT, REVERT, RUN_BUFFER

Target = tuple[str, int, types.Diagnostic | None]  # (kind, experiment, its diagnostic)


class ActionSource(Protocol):
    """What code actions read from the session; every call is cheap (cached data)."""

    def experiment(self, experiment: int) -> Experiment | None: ...

    def best_id(self) -> int | None: ...

    def apply_edit(self, which: int | str) -> types.WorkspaceEdit | bool | None:
        """The edit that applies it to the user's file; False when it is already there;
        None when it cannot be made here and now (the command then explains why)."""
        ...

    def diff_payload(self, experiment: int) -> dict[str, Any] | None: ...


def experiment_of(diagnostic: types.Diagnostic) -> Target | None:
    data = diagnostic.data
    if diagnostic.source != SOURCE or not isinstance(data, dict):
        return None
    kind, experiment = data.get("kind"), data.get("experiment")
    if not isinstance(kind, str) or not isinstance(experiment, int):
        return None
    return kind, experiment, diagnostic


def _command(title: str, command: str, *arguments: Any) -> types.Command:
    return types.Command(title=title, command=command, arguments=list(arguments))


def _quick_fix(
    title: str,
    command: str,
    experiment: int,
    diagnostic: types.Diagnostic | None,
    preferred: bool = False,
) -> types.CodeAction:
    """A quick fix that runs one of the server's commands on one experiment."""
    return types.CodeAction(
        title=title,
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[diagnostic] if diagnostic else None,
        is_preferred=preferred or None,
        command=_command(title, command, experiment),
    )


def _apply(
    source: ActionSource, which: int | str, title: str, diagnostic: types.Diagnostic | None
) -> types.CodeAction | None:
    edit = source.apply_edit(which)
    if edit is False:
        return None  # the user's file already has it
    action = types.CodeAction(
        title=title,
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[diagnostic] if diagnostic else None,
    )
    if isinstance(edit, types.WorkspaceEdit):
        action.edit = edit
    else:
        action.command = _command(title, APPLY, which)
    return action


def _open_diff(source: ActionSource, experiment: int) -> types.CodeAction | None:
    payload = source.diff_payload(experiment)
    if payload is None:
        return None
    title = f"Open diff of experiment {experiment}"
    return types.CodeAction(title=title, command=_command(title, OPEN_DIFF, payload))


def code_actions(
    source: ActionSource, targets: list[Target], only: list[str] | None = None
) -> list[types.CodeAction]:
    actions: list[types.CodeAction] = []
    seen: set[tuple[str, int | str]] = set()

    def add(key: tuple[str, int | str], make: Any) -> None:
        if key in seen:
            return
        seen.add(key)
        action = make()
        if action is not None:
            actions.append(action)

    best = source.best_id()
    for kind, number, diagnostic in targets:
        if kind == "proposal":
            add(
                ("accept", number),
                lambda n=number, d=diagnostic: _quick_fix(
                    f"Accept & run experiment {n}", ACCEPT, n, d, preferred=True
                ),
            )
            add(
                ("reject", number),
                lambda n=number, d=diagnostic: _quick_fix(f"Reject experiment {n}", REJECT, n, d),
            )
            add(("diff", number), lambda n=number: _open_diff(source, n))
            continue
        exp = source.experiment(number)
        if exp is None:
            continue
        if exp.commit:
            add(
                ("apply", number),
                lambda n=number, d=diagnostic: _apply(source, n, f"Apply experiment {n}", d),
            )
        if best is not None and best != number:
            add(
                ("apply", "best"),
                lambda b=best, d=diagnostic: _apply(
                    source, "best", f"Apply best (experiment {b})", d
                ),
            )
        if exp.status is Status.KEPT and exp.source != "baseline":
            add(
                ("revert", number),
                lambda n=number, d=diagnostic: _quick_fix(f"Revert experiment {n}", REVERT, n, d),
            )
        add(("diff", number), lambda n=number: _open_diff(source, n))

    if only:
        actions = [
            a
            for a in actions
            if any(str(a.kind or "") == k or str(a.kind or "").startswith(k + ".") for k in only)
        ]
    return actions


def actions_for(
    source: ActionSource,
    params: types.CodeActionParams,
    placed: list[Target],
    editable: bool,
) -> list[types.CodeAction]:
    """textDocument/codeAction: actions for Ratchet's diagnostics in the request and for what
    is placed under the cursor (results are hints, not diagnostics), and on the editable file
    a source action to run it as it is now."""
    targets = [t for d in params.context.diagnostics if (t := experiment_of(d)) is not None]
    seen = {(kind, number) for kind, number, _ in targets}
    targets += [t for t in placed if (t[0], t[1]) not in seen]
    only = [str(kind) for kind in params.context.only] if params.context.only else None
    actions = code_actions(source, targets, only)
    source_kind = str(types.CodeActionKind.Source)
    if editable and (not only or any(source_kind.startswith(k) for k in only)):
        title = "Run this file as an experiment"
        actions.append(
            types.CodeAction(
                title=title,
                kind=types.CodeActionKind.Source,
                command=_command(title, RUN_BUFFER),
            )
        )
    return actions
