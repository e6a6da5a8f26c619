"""The project the features share: its folder, its ratchet.toml, the ledger reader, and the
editor. Plain data and small helpers; each feature owns its own state."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..config import CONFIG_NAME, Config, ConfigError
from ..errors import RatchetError
from ..record import LoopRecord
from .editor import Editor

log = logging.getLogger(__name__)

# The agents that propose with an API key (none: anthropic when its key is set).
KEYED_KINDS = (None, "anthropic", "command", "claude-code")


class Project:
    def __init__(self, editor: Editor, root: Path, review: str | None = None) -> None:
        self.editor = editor
        self.root = root.resolve()
        self.review = review  # the editor's review gate, when it set one
        self.config: Config | None = None
        self.config_error: ConfigError | None = None
        # The loop's record, read-only: no agent, runner or lock (the loop runs in a process
        # of its own, perhaps with a key this editor does not have).
        self.reader: LoopRecord | None = None
        self.reader_error: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def editable_path(self) -> Path | None:
        return (self.root / self.config.loop.editable).resolve() if self.config else None

    @property
    def editable_name(self) -> str:
        return self.config.loop.editable if self.config else "the editable file"

    @property
    def metric_name(self) -> str:
        return self.config.metric.name if self.config else "metric"

    @property
    def api_key_env(self) -> str:
        """The variable the agent reads its key from (`[agent] api_key_env`)."""
        return self.config.agent.api_key_env if self.config else "ANTHROPIC_API_KEY"

    def agent_payload(self) -> dict[str, Any] | None:
        """What the editor needs to say where the agent's key comes from: the agent kind,
        the variable, whether it reads a key, and whether this server's environment (which
        a loop started here inherits) has one. Never the key."""
        if self.config is None:
            return None
        kind = self.config.agent.kind
        name = self.config.agent.api_key_env
        return {
            "kind": kind,
            "apiKeyEnv": name,
            "usesKey": kind in KEYED_KINDS,
            "keyInEnvironment": bool(os.environ.get(name, "").strip()),
        }

    @property
    def tag(self) -> str | None:
        return self.reader.tag if self.reader is not None else None

    def locked_paths(self) -> dict[Path, str]:
        if not self.config:
            return {}
        return {(self.root / rel).resolve(): rel for rel in self.config.loop.locked}

    async def text(self, path: Path) -> tuple[str, int | None]:
        """The file as the user has it: the open buffer (saved or not), else the disk."""
        document = self.editor.document(path)
        if document is not None:
            return document.source, document.version
        try:
            return await asyncio.to_thread(path.read_text, encoding="utf-8"), None
        except (OSError, UnicodeDecodeError):
            return "", None

    def require_reader(self) -> LoopRecord:
        if self.reader is not None:
            return self.reader
        if self.config_error is not None:
            raise RatchetError(f"fix ratchet.toml first: {self.config_error}")
        if self.reader_error is not None:
            raise RatchetError(self.reader_error)
        raise RatchetError(f"no {CONFIG_NAME} in {self.root}: run `ratchet init` there first")

    async def open_reader(self, tag: str | None = None) -> bool:
        """A fresh reader on the current config (and `tag`, else the reader's or the newest)."""
        if self.config is None:
            self.reader = None
            return False
        wanted = tag or self.tag
        try:
            self.reader = await asyncio.to_thread(LoopRecord, self.config, wanted)
        except RatchetError as error:
            self.reader, self.reader_error = None, str(error)
            return False
        self.reader_error = None
        return True

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a background task failed", exc_info=error)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
