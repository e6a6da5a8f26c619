"""The `ratchet/status` notification: sent on every change, coalesced (a burst of events
gives one notification), and once a second while experiments run so elapsed time moves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

METHOD = "ratchet/status"
COALESCE_S = 0.05
TICK_S = 1.0


class StatusNotifier:
    def __init__(
        self,
        compute: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], None],
        ticking: Callable[[], bool],
    ) -> None:
        self._compute = compute
        self._send = send
        self._ticking = ticking
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last: dict[str, Any] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def changed(self) -> None:
        self._dirty.set()

    async def _run(self) -> None:
        while True:
            timeout = TICK_S if self._ticking() else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout)
            self._dirty.clear()
            try:
                payload = await self._compute()
            except Exception:
                log.exception("could not compute the status")
            else:
                if payload != self.last or self._ticking():
                    self.last = payload
                    self._send(payload)
            await asyncio.sleep(COALESCE_S)
