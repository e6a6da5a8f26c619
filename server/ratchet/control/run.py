"""A loop's run with its control channel open: what `ratchet run` does (in a terminal, or in
the process an editor starts)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..engine import Engine
from ..errors import RatchetError
from .host import LoopHost

log = logging.getLogger(__name__)


async def host_run(
    engine: Engine,
    *,
    max_experiments: int | None,
    review: str | None = None,
    wait_for_start: float | None = None,
    interrupted: asyncio.Event | None = None,
) -> None:
    """Runs the loop with its control channel open. With `wait_for_start` (seconds), the run
    begins when a client's `start` request says how (a loop started by an editor)."""
    await engine.open()  # the lock first: the socket is ours only while we hold it
    host = LoopHost(engine, review)
    try:
        await host.open()
    except OSError as problem:  # the loop still runs, just without editors attached
        log.warning("the control channel could not open (%s): editors cannot attach", problem)
        host.run_ended()
        await engine.run(max_experiments=max_experiments)
        return
    message, failed = "the loop stopped", False
    try:
        run: dict[str, Any] | None = {"max_experiments": max_experiments}
        if wait_for_start is not None:
            run = await host.wait_for_start(wait_for_start, interrupted)
        if run is not None:
            await engine.run(**run)
    except RatchetError as problem:
        message, failed = str(problem), True
        raise
    finally:
        host.run_ended()
        await host.close(message, failed or engine.state == "error")
