"""A small editor for end-to-end tests of `ratchet serve`: a real LSP client (pytest-lsp's)
driving the real server as a subprocess, keeping its own copies of open documents and
applying the server's workspace edits to them the way an editor does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, Union

from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client
from ratchet.control.spawn import lock_holder

T = TypeVar("T")

CAPABILITIES = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True, show_message=None),
    workspace=types.WorkspaceClientCapabilities(
        apply_edit=True,
        code_lens=types.CodeLensWorkspaceClientCapabilities(refresh_support=True),
        inlay_hint=types.InlayHintWorkspaceClientCapabilities(refresh_support=True),
        workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True),
        execute_command=types.ExecuteCommandClientCapabilities(),
    ),
    text_document=types.TextDocumentClientCapabilities(
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(
                    value_set=[types.CodeActionKind.QuickFix, types.CodeActionKind.Source]
                )
            )
        ),
        publish_diagnostics=types.PublishDiagnosticsClientCapabilities(),
        code_lens=types.CodeLensClientCapabilities(),
        inlay_hint=types.InlayHintClientCapabilities(),
    ),
)


SHOWS_DOCUMENTS = types.ClientCapabilities(
    window=types.WindowClientCapabilities(
        work_done_progress=True, show_document=types.ShowDocumentClientCapabilities(support=True)
    ),
    workspace=CAPABILITIES.workspace,
    text_document=CAPABILITIES.text_document,
)


def plain(value: Any) -> Any:
    """pygls hands custom notifications' params over as named tuples: back to JSON shapes."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def expected_head(exp: dict[str, Any], experiments: list[dict[str, Any]]) -> str:
    """A result's head as the server writes it (test loop, metric `score`), from the rows of
    `ratchet.experiments`: `exp 2 kept: score 0.2 → 0.19 (−5.00%)`."""
    base = next(e["metric"] for e in experiments if e["commit"] == exp["base_commit"])
    percent = f"{100 * (exp['metric'] - base) / abs(base):+.2f}%".replace("-", "−")
    return f"exp {exp['id']} {exp['status']}: score {base:.6g} → {exp['metric']:.6g} ({percent})"


def apply_text_edits(text: str, edits: list[types.TextEdit]) -> str:
    """Applies LSP text edits (ASCII texts: columns are characters) like an editor does."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(position: types.Position) -> int:
        if position.line >= len(lines):
            return len(text)
        return min(starts[position.line] + position.character, starts[position.line + 1])

    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character))[::-1]:
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end) :]
    return text


class Editor:
    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.documents: dict[str, tuple[str, int]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []  # ratchet/experiment deltas, as they came
        self.refreshes: list[str] = []  # workspace/codeLens/refresh and inlayHint/refresh
        self.edits: list[types.ApplyWorkspaceEditParams] = []
        self.refuse_edits = False
        self.capabilities = types.ServerCapabilities()

    # --- documents -------------------------------------------------------------------------

    def uri(self, relative: str) -> str:
        return (self.root / relative).resolve().as_uri()

    def open(self, relative: str, text: str | None = None) -> str:
        uri = self.uri(relative)
        text = (self.root / relative).read_text() if text is None else text
        self.documents[uri] = (text, 1)
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        return uri

    def change(self, relative: str, text: str) -> None:
        uri = self.uri(relative)
        version = self.documents[uri][1] + 1
        self.documents[uri] = (text, version)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )

    def text(self, relative: str) -> str:
        return self.documents[self.uri(relative)][0]

    def apply_edit(self, edit: types.WorkspaceEdit) -> None:
        """Applies a WorkspaceEdit to the open documents (and tells the server)."""
        changes: dict[str, list[types.TextEdit]] = {}
        for change in edit.document_changes or []:
            assert isinstance(change, types.TextDocumentEdit), change
            uri = change.text_document.uri
            if change.text_document.version is not None:
                assert change.text_document.version == self.documents[uri][1], "stale edit"
            changes.setdefault(uri, []).extend(e for e in change.edits)  # type: ignore[misc]
        for uri, edits in (edit.changes or {}).items():
            changes.setdefault(uri, []).extend(edits)
        for uri, edits in changes.items():
            text = apply_text_edits(self.documents[uri][0], edits)
            relative = Path(uri.removeprefix("file://")).relative_to(self.root.resolve())
            self.change(str(relative), text)

    # --- the server ------------------------------------------------------------------------

    async def command(self, name: str, *arguments: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(arguments))
        )

    async def command_error(self, name: str, *arguments: Any) -> str:
        """The message of the error a command answers with (fails if it succeeds)."""
        try:
            await self.command(name, *arguments)
        except Exception as error:  # pygls's JsonRpcException
            return str(getattr(error, "message", error))
        raise AssertionError(f"{name} succeeded")

    def diagnostics(self, relative: str) -> list[types.Diagnostic]:
        return list(self.client.diagnostics.get(self.uri(relative), []))

    async def code_actions(
        self, relative: str, line: int, diagnostics: list[types.Diagnostic] | None = None
    ) -> list[types.CodeAction]:
        result = await self.client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=self.uri(relative)),
                range=types.Range(types.Position(line, 0), types.Position(line, 0)),
                context=types.CodeActionContext(
                    diagnostics=diagnostics
                    if diagnostics is not None
                    else [d for d in self.diagnostics(relative) if d.range.start.line == line]
                ),
            )
        )
        return [a for a in result or [] if isinstance(a, types.CodeAction)]

    async def inlay_hints(self, relative: str) -> list[types.InlayHint]:
        end = (
            len(self.text(relative).splitlines()) + 1
            if self.uri(relative) in self.documents
            else 10_000
        )
        result = await self.client.text_document_inlay_hint_async(
            types.InlayHintParams(
                text_document=types.TextDocumentIdentifier(uri=self.uri(relative)),
                range=types.Range(types.Position(0, 0), types.Position(end, 0)),
            )
        )
        return list(result or [])

    async def code_lenses(self, relative: str) -> list[types.CodeLens]:
        result = await self.client.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=self.uri(relative)))
        )
        return list(result or [])

    async def wait_async(
        self,
        ask: Callable[[], Awaitable[T]],
        check: Callable[[T], object],
        what: str,
        timeout: float = 15.0,
    ) -> T:
        """Asks the server until its answer passes check(); fails saying what did not happen."""
        deadline = time.monotonic() + timeout
        while True:
            value = await ask()
            if check(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
            await asyncio.sleep(0.05)

    def status(self) -> dict[str, Any]:
        assert self.statuses, "no ratchet/status notification yet"
        return self.statuses[-1]

    async def wait(self, check: Callable[[], T], what: str, timeout: float = 15.0) -> T:
        """Polls until check() gives a true value; fails saying what did not happen."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def wait_state(self, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        return await self.wait(
            lambda: self.statuses and self.statuses[-1]["state"] in states and self.statuses[-1],
            f"state {states} (last: {self.statuses[-1]['state'] if self.statuses else None})",
            timeout,
        )


async def start_editor(
    root: Path,
    capabilities: types.ClientCapabilities = CAPABILITIES,
    without: tuple[str, ...] = (),
) -> Editor:
    """A real client and the server in a process of its own; `without`: variables its
    environment lacks (an editor started from a dock has no API key)."""
    client = make_test_lsp_client()
    editor = Editor(client, root)

    @client.feature("ratchet/status")
    def on_status(params: Any) -> None:
        editor.statuses.append(plain(params))

    @client.feature("ratchet/experiment")
    def on_experiment(params: Any) -> None:
        editor.rows.append(plain(params))

    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def on_lens_refresh(params: Any) -> None:
        editor.refreshes.append("codeLens")

    @client.feature(types.WORKSPACE_INLAY_HINT_REFRESH)
    def on_hint_refresh(params: Any) -> None:
        editor.refreshes.append("inlayHint")

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def on_apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        editor.edits.append(params)
        if editor.refuse_edits:
            return types.ApplyWorkspaceEditResult(applied=False, failure_reason="read-only")
        editor.apply_edit(params.edit)
        return types.ApplyWorkspaceEditResult(applied=True)

    # lsprotocol reads any code action that has a `command` as a bare Command, dropping its
    # kind and diagnostics; a code action's command is an object, a Command's is a string.
    converter = client.protocol._converter

    def command_or_action(value: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(value.get("command"), str):
            return converter.structure(value, types.Command)
        return converter.structure(value, types.CodeAction)

    union = Union[types.Command, types.CodeAction]  # noqa: UP007 (the type lsprotocol uses)
    converter.register_structure_hook(union, command_or_action)

    env = {k: v for k, v in os.environ.items() if k not in without}
    env["PYTHONUNBUFFERED"] = "1"
    await client.start_io(sys.executable, "-m", "ratchet.cli", "serve", cwd=str(root), env=env)
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities,
            root_uri=root.resolve().as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.resolve().as_uri(), name="p")],
        )
    )
    editor.capabilities = result.capabilities
    return editor


async def stop_editor(editor: Editor) -> None:
    """shutdown and exit; a server that does not leave within 20 s is killed (and fails)."""
    server = editor.client._server
    try:
        await asyncio.wait_for(editor.client.shutdown_session(), 20)
    finally:
        if server is not None and server.returncode is None:
            server.kill()
            await server.wait()
            await editor.client.stop()
            raise AssertionError("the server did not exit after shutdown and exit")
        await editor.client.stop()


def stop_loops(root: Path, timeout: float = 20.0) -> None:
    """Ends a loop left running on the project (loops outlive their editor): SIGTERM (the loop
    stops and records), then SIGKILL after `timeout`."""
    pid = lock_holder(root)
    if pid is None or pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while lock_holder(root) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    if lock_holder(root) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
