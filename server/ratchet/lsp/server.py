"""`ratchet serve`: the pygls server. Features and commands are thin: each hands its params to
the project's Session and sends back what it returns."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.uris import to_fs_path

from .. import __version__
from ..config import CONFIG_NAME
from ..errors import RatchetError
from . import commands, names
from .session import Session

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
SHUTDOWN_S = 10.0  # detaching and closing the session, at most
EXIT_GRACE_S = 5.0  # after `exit`, the process leaves within this, whatever still runs


def _leave_after(seconds: float, code: int) -> None:
    """Ends the process if it is still here after `seconds`. Held by one of our own worker
    threads (asyncio's), it says first what each thread was doing; held by pygls's reader of
    a stdin the client keeps open, it leaves quietly."""
    threading.Event().wait(seconds)
    if any(t.name.startswith("asyncio_") for t in threading.enumerate()):
        log.error("still here %gs after exit; what each thread was doing:", seconds)
        faulthandler.dump_traceback(all_threads=True)
    os._exit(code)


class RatchetProtocol(LanguageServerProtocol):
    """pygls's protocol, with sends stopped once the client has gone: after `exit`, or after
    the first write that fails (pygls would report that failure by sending again, for ever)."""

    gone = False

    def _send_data(self, data: Any) -> None:
        if self.gone:
            return
        writer = self.writer
        closing = getattr(writer, "is_closing", None)
        stream = getattr(writer, "_stdout", None)  # pygls's StdoutWriter: closed on exit
        if (
            writer is None
            or (callable(closing) and closing())
            or bool(getattr(stream, "closed", False))
        ):
            self.gone = True
            return
        try:
            super()._send_data(data)
        except Exception as error:  # a broken pipe: the client is gone
            self.gone = True
            log.info("the client has gone (%s); nothing more is sent", error)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        self.gone = True
        # Python's exit waits for every worker thread; an editor waits for the process.
        code = 0 if self._shutdown else 1
        threading.Thread(target=_leave_after, args=(EXIT_GRACE_S, code), daemon=True).start()
        yield from super().lsp_exit(*args)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(
        self, params: types.InitializeParams
    ) -> Generator[Any, Any, types.InitializeResult]:
        result: types.InitializeResult = yield from super().lsp_initialize(params)
        provider = result.capabilities.execute_command_provider
        if provider is not None:
            provider.commands = [c for c in provider.commands if c not in commands.UNADVERTISED]
        return result


class RatchetServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "ratchet",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=RatchetProtocol,
        )
        self.session: Session | None = None
        self.roots: list[Path] = []
        self.review_override: str | None = None  # initializationOptions.review
        self._ready: asyncio.Event | None = None

    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls shows every internal error to the user by sending a message; a failed send
        (the client has gone) must not be answered by another send."""
        if source is FeatureRequestError:
            return  # the request's error response says it already
        if isinstance(self.protocol, RatchetProtocol) and self.protocol.gone:
            return
        if isinstance(error, (OSError, ValueError)) and "closed" in str(error):
            if isinstance(self.protocol, RatchetProtocol):
                self.protocol.gone = True
            return
        log.error("internal error (%s): %s", getattr(source, "__name__", source), error)

    def ready_event(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    async def session_ready(self) -> Session:
        try:
            await asyncio.wait_for(self.ready_event().wait(), READY_TIMEOUT_S)
        except TimeoutError:
            raise commands.RequestFailed(message="the Ratchet server is still starting") from None
        assert self.session is not None
        return self.session


def project_root(candidates: list[Path]) -> Path:
    """The folder of ratchet.toml: a workspace folder or one above it; else the first folder."""
    for candidate in candidates:
        for folder in (candidate, *candidate.parents):
            if (folder / CONFIG_NAME).is_file():
                return folder
    return candidates[0] if candidates else Path.cwd()


def make_server(project: Path | None = None) -> RatchetServer:
    """The server; `project` (`ratchet -C DIR serve`) is looked at before the client's
    workspace folders."""
    server = RatchetServer()
    commands.register(server, server.session_ready)

    @server.feature(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        uris = [folder.uri for folder in params.workspace_folders or []]
        if params.root_uri:
            uris.append(params.root_uri)
        roots = [Path(p) for p in (to_fs_path(uri) for uri in uris) if p]
        if params.root_path:
            roots.append(Path(params.root_path))
        server.roots = [*([project] if project else []), *roots, Path.cwd()]
        options = params.initialization_options
        review = options.get("review") if isinstance(options, dict) else None
        server.review_override = review if review in ("auto", "propose") else None
        level = options.get("logLevel") if isinstance(options, dict) else None
        if isinstance(level, str) and isinstance(getattr(logging, level.upper(), None), int):
            logging.getLogger().setLevel(getattr(logging, level.upper()))

    @server.feature(types.INITIALIZED)
    async def initialized(params: types.InitializedParams) -> None:
        server.session = Session(server, project_root(server.roots), server.review_override)
        try:
            await server.session.start()
        finally:
            server.ready_event().set()

    @server.feature(types.SHUTDOWN)
    async def shutdown(params: None) -> None:
        if server.session is not None:
            try:
                await asyncio.wait_for(server.session.shutdown(), SHUTDOWN_S)
            except TimeoutError:
                log.error("the session did not close within %gs; leaving all the same", SHUTDOWN_S)

    _documents(server)
    _views(server)
    return server


def _documents(server: RatchetServer) -> None:
    """Documents opened, edited and closed: handed to the session's files feature."""

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        if server.session is not None:
            server.session.files.opened(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        if server.session is not None:
            server.session.files.edited(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        if server.session is not None:
            server.session.files.closed(params.text_document.uri)


def _views(server: RatchetServer) -> None:
    """What the editor asks for as the user moves: actions, lenses, hints, diffs; settings."""

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(
            code_action_kinds=[types.CodeActionKind.QuickFix, types.CodeActionKind.Source]
        ),
    )
    def code_action(params: types.CodeActionParams) -> list[types.CodeAction] | None:
        if server.session is None:
            return None
        return server.session.code_actions(params) or None

    @server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
    async def code_lens(params: types.CodeLensParams) -> list[types.CodeLens] | None:
        if server.session is None:
            return None
        return await server.session.code_lenses(params) or None

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))
    async def inlay_hint(params: types.InlayHintParams) -> list[types.InlayHint] | None:
        if server.session is None:
            return None
        return await server.session.inlay_hints(params) or None

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(params: types.HoverParams) -> types.Hover | None:
        if server.session is None:
            return None
        return await server.session.hover(params)

    @server.feature(names.DIFF_TEXT_REQUEST)
    async def diff_text(params: Any) -> dict[str, Any]:
        session = await server.session_ready()
        uri = getattr(params, "uri", None) or (
            params.get("uri") if isinstance(params, dict) else None
        )
        try:
            return await session.diff_text(uri)
        except RatchetError as error:
            raise commands.RequestFailed(message=str(error)) from None

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        """The editor's review gate goes live: `{ratchet: {reviewGate}}` or `{review}`."""
        settings: dict[str, Any] = params.settings if isinstance(params.settings, dict) else {}
        inner = settings.get("ratchet")
        section: dict[str, Any] = inner if isinstance(inner, dict) else settings
        if server.session is not None and ("reviewGate" in section or "review" in section):
            review = section.get("reviewGate", section.get("review"))
            try:
                await server.session.set_review(review if isinstance(review, str) else None)
            except RatchetError as error:
                server.session.editor.show(types.MessageType.Warning, f"Ratchet: {error}")

    @server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def cancel_progress(params: types.WorkDoneProgressCancelParams) -> None:
        if server.session is not None:
            server.session.loop.progress.cancelled(params.token)


class _QuietUserErrors(logging.Filter):
    """pygls logs every error response with a traceback; a user's mistake is not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(error, JsonRpcException)
            and error.code in (commands.RequestFailed.CODE, -32602)
        )


def _setup_logging() -> None:
    # RATCHET_LSP_LOG=debug|info|warning|error; pygls's per-message lines are INFO and DEBUG.
    level = os.environ.get("RATCHET_LSP_LOG", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        stream=sys.stderr,
        format="ratchet-lsp %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_QuietUserErrors())


def parse_tcp(address: str) -> tuple[str, int]:
    """`PORT`, `:PORT` or `HOST:PORT` (loopback unless a host is given)."""
    host, _, port = address.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise SystemExit(f"ratchet serve --tcp: {address!r} is not HOST:PORT") from None
    return host or "127.0.0.1", number


def serve(tcp: str | None = None, project: Path | None = None) -> None:
    """Runs the language server on stdio, or on TCP (for debugging)."""
    _setup_logging()
    server = make_server(project)
    if tcp:
        host, port = parse_tcp(tcp)
        server.start_tcp(host, port)
    else:
        server.start_io()
