"""The editor as the features see it: a narrow interface over the pygls server (documents,
messages, diagnostics, edits, refreshes), so features never reach into pygls themselves.

Every send is guarded: once the client has gone (exit, a closed pipe), nothing more is sent
and nothing is reported by sending, so a restart never floods the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

log = logging.getLogger(__name__)


class Editor:
    def __init__(self, server: LanguageServer) -> None:
        self.server = server
        self._uris: dict[Path, str] = {}  # documents the client has open, by real path
        self.published: dict[str, list[types.Diagnostic]] = {}

    # --- the connection ----------------------------------------------------------------------

    @property
    def gone(self) -> bool:
        return bool(getattr(self.server.protocol, "gone", False))

    def notify(self, method: str, payload: Any) -> None:
        if not self.gone:
            self.server.protocol.notify(method, payload)

    def show(self, kind: types.MessageType, message: str) -> None:
        if not self.gone:
            self.server.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def log(self, kind: types.MessageType, message: str) -> None:
        if not self.gone:
            self.server.window_log_message(types.LogMessageParams(type=kind, message=message))

    def publish(self, uri: str, diagnostics: list[types.Diagnostic]) -> None:
        """Sends a file's diagnostics when they differ from what the client has."""
        if self.published.get(uri, []) == diagnostics and (diagnostics or uri in self.published):
            return
        if not diagnostics and uri not in self.published:
            return
        self.published[uri] = diagnostics
        if not self.gone:
            self.server.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
            )

    async def apply_edit(
        self, edit: types.WorkspaceEdit, label: str
    ) -> types.ApplyWorkspaceEditResult:
        return await self.server.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=label)
        )

    async def show_document(self, uri: str, external: bool = False) -> bool:
        """Asks the client to show a document (`external`: in its own program, a browser for
        a page); whether it did."""
        result = await self.server.window_show_document_async(
            types.ShowDocumentParams(uri=uri, external=external or None, take_focus=True)
        )
        return bool(result and result.success)

    def refresh(self) -> None:
        """Asks the client to ask again for code lenses and inlay hints (where it can)."""
        if self.gone:
            return
        if self._capability("workspace", "code_lens", "refresh_support"):
            self.server.protocol.send_request(types.WORKSPACE_CODE_LENS_REFRESH, None)
        if self._capability("workspace", "inlay_hint", "refresh_support"):
            self.server.protocol.send_request(types.WORKSPACE_INLAY_HINT_REFRESH, None)

    @property
    def progress(self) -> Any:
        return self.server.work_done_progress

    # --- what the client can do --------------------------------------------------------------

    def _capability(self, *path: str) -> bool:
        value: Any = getattr(self.server, "client_capabilities", None)
        for name in path:
            value = getattr(value, name, None)
        return bool(value)

    @property
    def supports_progress(self) -> bool:
        return self._capability("window", "work_done_progress")

    @property
    def supports_show_document(self) -> bool:
        return self._capability("window", "show_document", "support")

    @property
    def supports_document_changes(self) -> bool:
        return self._capability("workspace", "workspace_edit", "document_changes")

    # --- documents ---------------------------------------------------------------------------

    def opened(self, uri: str) -> Path | None:
        path = self.path_of(uri)
        if path is not None:
            self._uris[path] = uri
        return path

    def closed(self, uri: str) -> Path | None:
        path = self.path_of(uri)
        if path is not None:
            self._uris.pop(path, None)
        return path

    def uri(self, path: Path) -> str:
        return self._uris.get(path) or from_fs_path(str(path)) or path.as_uri()

    @staticmethod
    def path_of(uri: str) -> Path | None:
        fs = to_fs_path(uri)
        return Path(fs).resolve() if fs else None

    def document(self, path: Path) -> Any | None:
        """The client's open document for a path (with unsaved edits), or None."""
        uri = self._uris.get(path)
        if uri is None:
            return None
        return self.server.workspace.text_documents.get(uri)

    def units(self, text: str) -> int:
        return int(self.server.workspace.position_codec.client_num_units(text))
