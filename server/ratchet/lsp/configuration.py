"""ratchet.toml as the editor sees it: read from disk (the reader follows it), checked as the
user types it (unsaved), its mistakes as diagnostics at their range, and its changes handed
to a running loop, which takes what it can live and is told to restart for the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from lsprotocol import types

from ..config import Config, ConfigError, load_config, parse_config
from ..errors import RatchetError
from .diagnostics import config_diagnostic
from .project import Project


class Configuration:
    def __init__(
        self,
        project: Project,
        changed: Callable[[], None],
        reconfigure: Callable[[dict[str, Any]], Awaitable[Any]],
        running: Callable[[], bool],
    ) -> None:
        self.project = project
        self.changed = changed
        self.reconfigure = reconfigure  # a request to the running loop
        self.running = running
        self.diagnostics: list[types.Diagnostic] = []

    def _with_review(self, config: Config) -> Config:
        review = self.project.review
        if review not in ("auto", "propose"):
            return config
        return replace(config, loop=replace(config.loop, review=review))

    async def reload(self) -> bool:
        """Reads ratchet.toml from disk: diagnostics at once; a running loop takes the loop
        settings from its next experiment. True when the reader was opened anew."""
        project = self.project
        try:
            config = self._with_review(await asyncio.to_thread(load_config, project.root))
        except ConfigError as error:
            project.config_error = error
            source, _ = await project.text(project.config_path)
            exists = await asyncio.to_thread(project.config_path.is_file)
            self.diagnostics = (
                [config_diagnostic(error, source, project.editor.units)] if exists else []
            )
            self.publish()
            self.changed()
            return False
        project.config_error = None
        self.diagnostics = []
        await self.validate_buffer()  # an open buffer may differ from the disk
        previous, project.config = project.config, config
        reopened = False
        if self.running() and previous is not None:
            await self._reconfigure_running(previous, config)
        if project.reader is None or previous is None or _structural(previous, config):
            reopened = await project.open_reader()
            if not reopened and project.reader_error:
                project.editor.show(
                    types.MessageType.Error,
                    f"Ratchet cannot open this project: {project.reader_error}",
                )
        self.publish()
        self.changed()
        return reopened

    async def _reconfigure_running(self, previous: Config, config: Config) -> None:
        if _structural(previous, config):
            self.project.editor.show(
                types.MessageType.Warning,
                "ratchet.toml changed the editable file or the metric: that applies when the "
                "loop next starts (stop it and start it again).",
            )
            return
        try:
            await self.reconfigure({"review": self.project.review})
        except RatchetError as error:
            self.project.editor.show(types.MessageType.Warning, f"Ratchet: {error}")
            return
        self.project.editor.show(
            types.MessageType.Info,
            "ratchet.toml reloaded: the review gate and the agent's settings apply from the "
            "next experiment; the loop's rules (metric, budget, command, evaluator, locked "
            "files) stay pinned to it.",
        )

    async def set_review(self, review: str | None) -> None:
        """The editor's review gate changed: it goes live in a running loop."""
        self.project.review = review if review in ("auto", "propose") else None
        if self.project.config is not None:
            self.project.config = self._with_review(self.project.config)
        if self.running():
            await self.reconfigure({"review": self.project.review})

    async def validate_buffer(self) -> None:
        """ratchet.toml as the user types it (unsaved): checked at once, shown as diagnostics."""
        project = self.project
        document = project.editor.document(project.config_path)
        if document is None:
            return
        source = document.source
        try:
            await asyncio.to_thread(parse_config, source, project.root)
        except ConfigError as error:
            self.diagnostics = [config_diagnostic(error, source, project.editor.units)]
        else:
            self.diagnostics = []
        self.publish()

    def publish(self) -> None:
        editor = self.project.editor
        editor.publish(editor.uri(self.project.config_path), self.diagnostics)


def _structural(previous: Config, config: Config) -> bool:
    return (
        previous.loop.editable != config.loop.editable
        or previous.metric.name != config.metric.name
        or previous.metric.goal != config.metric.goal
    )
