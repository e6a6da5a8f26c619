"""The editor's side of the control channel: attach to the project's running loop, send it
requests, follow its events, notice when it ends. Detaching (close) leaves the loop running."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RatchetError
from . import wire

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 40.0
CONNECT_TIMEOUT_S = 5.0


class LoopGone(RatchetError):
    """The loop's process ended (or its channel closed) before it answered."""


class LoopClient:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: Callable[[dict[str, Any]], None],
        on_closed: Callable[[LoopClient], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_event = on_event
        self._on_closed = on_closed
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.closed = False
        self.hello: dict[str, Any] = {}
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def attach(
        cls,
        root: Path,
        on_event: Callable[[dict[str, Any]], None],
        on_closed: Callable[[LoopClient], None],
    ) -> LoopClient | None:
        """The running loop's channel, greeted; None when no loop serves this project."""
        path = wire.socket_path(root)
        try:
            owner = path.stat().st_uid
        except OSError:
            return None
        if owner != os.getuid():
            raise RatchetError(
                f"{path} belongs to another user: Ratchet attaches only to your own loops"
            )
        try:
            with wire.short_address(path) as address:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(address, limit=wire.MAX_LINE), CONNECT_TIMEOUT_S
                )
        except (OSError, TimeoutError):
            return None  # a socket left by a killed loop: nobody answers
        client = cls(reader, writer, on_event, on_closed)
        try:
            client.hello = await client.request("hello", timeout=CONNECT_TIMEOUT_S * 2)
        except RatchetError:
            client.close()
            return None
        return client

    @property
    def pid(self) -> int | None:
        pid = self.hello.get("pid")
        return pid if isinstance(pid, int) else None

    async def request(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = REQUEST_TIMEOUT_S
    ) -> Any:
        if self.closed:
            raise LoopGone("the loop has ended")
        number = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        try:
            try:
                self._writer.write(
                    wire.encode({"id": number, "method": method, "params": params or {}})
                )
                await self._writer.drain()
            except (ConnectionError, OSError):
                # A loop that answers and ends at once (a start it refuses) may close before
                # drain returns: its answer is read all the same, and the reader settles the
                # future either way (LoopGone when nothing came).
                if self.closed and not future.done():
                    raise LoopGone("the loop has ended") from None
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RatchetError(f"the loop did not answer {method} within {timeout:g}s") from None
        finally:
            self._waiting.pop(number, None)

    def close(self) -> None:
        """Detaches; the loop goes on."""
        if not self.closed:
            self._task.cancel()
            self._closed()

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                message = wire.decode(line)
                if message is None:
                    continue
                if "event" in message:  # an event may carry an experiment's "id" too
                    try:
                        self._on_event(message)
                    except Exception:
                        log.exception("a loop event could not be handled: %s", message.get("event"))
                elif "id" in message:
                    self._resolve(message)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            # Closed here (close), or this process is ending: the loop did not end, so no
            # one is told it did.
            self._closed(notify=False)
            raise
        finally:
            self._closed()

    def _resolve(self, message: dict[str, Any]) -> None:
        future = self._waiting.get(message["id"]) if isinstance(message["id"], int) else None
        if future is None or future.done():
            return
        if "error" in message:
            future.set_exception(RatchetError(str(message["error"])))
        else:
            future.set_result(message.get("result"))

    def _closed(self, notify: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LoopGone("the loop has ended"))
        with contextlib.suppress(Exception):
            self._writer.close()
        if notify:
            self._on_closed(self)
