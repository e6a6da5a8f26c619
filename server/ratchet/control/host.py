"""The loop's side of the control channel: the process that runs the loop serves its Engine
on `.ratchet/control.sock`, so any number of editors (and terminals) are views of one loop.

A client's request becomes one call of the Engine's public API; every engine event goes to
every attached client as it happens (a running experiment's output at most four times a
second). A client that goes away, or reads too slowly, is dropped; the loop never waits on
one. The socket exists only while the loop holds the project's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ..config import ConfigError, load_config
from ..engine import Engine
from ..errors import RatchetError
from ..events import (
    Event,
    ExperimentFinished,
    ExperimentProposed,
    ExperimentStarted,
    LoopStateChanged,
    OutputLine,
)
from . import peer, wire

log = logging.getLogger(__name__)

OUTPUT_INTERVAL_S = 0.25
MAX_CLIENT_BUFFER = 8 * 1024 * 1024  # a client this far behind is dropped, not waited for
STOP_WAIT_S = 30.0
START_WAIT_S = 5.0
STATUS_FRESH_S = 0.25

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def with_review(config: Any, review: str | None) -> Any:
    """The editor's review gate, when it set one, wins over ratchet.toml's `review`."""
    if review not in ("auto", "propose"):
        return config
    return replace(config, loop=replace(config.loop, review=review))


class LoopHost:
    def __init__(self, engine: Engine, review: str | None = None) -> None:
        self.engine = engine
        self.review = review
        self.path = wire.socket_path(engine.config.root)
        self.proposals: dict[int, dict[str, Any]] = {}  # awaiting review, for late attachers
        self._clients: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._start: asyncio.Future[dict[str, Any] | None] | None = None
        self._ran = asyncio.Event()  # the run is over (or never began)
        self._moved = asyncio.Event()  # the loop's state changed (it left idle, or said why not)
        self._output: dict[int, str] = {}
        self._output_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._generation = 0  # counts changes; a status is shared only within one
        self._status_task: tuple[int, asyncio.Future[dict[str, Any]]] | None = None
        self._status_cache: tuple[int, float, dict[str, Any]] | None = None
        self._handlers: dict[str, Handler] = {
            "hello": self._hello,
            "status": self._status,
            "start": self._start_run,
            "stop": self._stop,
            "pause": self._pause,
            "resume": self._resume,
            "decide": self._decide,
            "stopExperiment": self._stop_experiment,
            "submit": self._submit,
            "revert": self._revert,
            "note": self._note,
            "reconfigure": self._reconfigure,
        }

    # --- serving -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Binds the socket. The caller holds the loop's lock, so a socket left by a killed
        loop is stale and replaced."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with wire.short_address(self.path) as address:
            self._server = await asyncio.start_unix_server(
                self._serve_client, path=address, limit=wire.MAX_LINE
            )
        os.chmod(self.path, 0o600)
        self._unsubscribe = self.engine.bus.subscribe(self._on_event)

    async def close(self, message: str = "", error: bool = False) -> None:
        """Answers what is in flight, tells every client the loop has ended, then goes away
        with the socket."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_WAIT_S / 6)
        self._broadcast({"event": "ended", "message": message, "error": error})
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 2.0)
            writer.close()
            # drain() returns while a small reply may still sit in the transport's buffer; the
            # close flushes it only while the event loop runs, and this process is ending.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)
        self._clients.clear()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def wait_for_start(
        self, timeout: float, interrupted: asyncio.Event | None = None
    ) -> dict[str, Any] | None:
        """For a loop started by an editor: the run's parameters from its `start` request, or
        None when none came in time (or a stop or an interrupt came first)."""
        self._start = start = asyncio.get_running_loop().create_future()
        waiters: list[asyncio.Future[Any]] = [start]
        if interrupted is not None:
            waiters.append(asyncio.ensure_future(interrupted.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters[1:]:
                waiter.cancel()
        if not start.done():
            start.set_result(None)
        return start.result()

    def run_ended(self) -> None:
        self._ran.set()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        refusal = peer.refusal(writer.get_extra_info("socket"))
        if refusal is not None:
            log.warning("control socket: %s", refusal)
            writer.write(wire.encode({"event": "refused", "error": True, "message": refusal}))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 2.0)
            writer.close()
            return
        self._clients.add(writer)
        try:
            while line := await reader.readline():
                message = wire.decode(line)
                if message is not None and "id" in message:
                    self._spawn(self._answer(writer, message))
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # a client that went away or sent a line too long: it is dropped
        except asyncio.CancelledError:
            pass  # the loop's process is ending
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        method = str(message.get("method"))
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        handler = self._handlers.get(method)
        reply: dict[str, Any] = {"id": message["id"]}
        try:
            if handler is None:
                raise RatchetError(f"the loop does not know the request {method!r}")
            if method not in ("status", "hello"):
                self._fresh()
            reply["result"] = await handler(params or {})
        except (RatchetError, ConfigError) as problem:
            reply["error"] = str(problem)
        except Exception as problem:
            log.exception("control request %s failed", method)
            reply["error"] = f"the loop could not do {method}: {problem}"
        self._send(writer, reply)

    def _send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        if writer.is_closing():
            self._clients.discard(writer)
            return
        transport = writer.transport
        if transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
            log.warning("a control client fell too far behind; dropped")
            self._clients.discard(writer)
            writer.close()
            return
        writer.write(wire.encode(message))

    def _broadcast(self, message: dict[str, Any]) -> None:
        for writer in list(self._clients):
            self._send(writer, message)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- engine events out -------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, OutputLine):  # the hot path: coalesced per experiment
            self._output[event.id] = event.line
            if self._output_handle is None:
                loop = asyncio.get_running_loop()
                self._output_handle = loop.call_later(OUTPUT_INTERVAL_S, self._flush_output)
            return
        self._fresh()
        if isinstance(event, LoopStateChanged):
            self._moved.set()
        message = wire.event_message(event)
        if isinstance(event, ExperimentProposed) and event.awaiting_review and message:
            self.proposals[event.id] = message
        elif isinstance(event, ExperimentStarted):
            self.proposals.pop(event.id, None)
        elif isinstance(event, ExperimentFinished):
            self.proposals.pop(event.experiment.id, None)
            self._output.pop(event.experiment.id, None)
        if message:
            self._broadcast(message)

    def _flush_output(self) -> None:
        self._output_handle = None
        lines, self._output = self._output, {}
        for experiment, line in lines.items():
            self._broadcast({"event": "output", "id": experiment, "line": line})

    # --- requests in -------------------------------------------------------------------------

    async def _hello(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "tag": self.engine.tag,
            "root": str(self.engine.config.root),
            "status": await self._compute_status(),
            "proposals": list(self.proposals.values()),
            "waitingForStart": self._start is not None and not self._start.done(),
        }

    async def _status(self, params: dict[str, Any]) -> dict[str, Any]:
        """The engine's status; requests that come while one is computed share it, and it
        serves for STATUS_FRESH_S, unless something happened since it began."""
        now = time.monotonic()
        cached = self._status_cache
        if (
            cached is not None
            and cached[0] == self._generation
            and now - cached[1] < STATUS_FRESH_S
        ):
            return cached[2]
        generation = self._generation
        if self._status_task is None or self._status_task[0] != generation:
            self._status_task = (generation, asyncio.ensure_future(self._compute_status()))
        task = self._status_task[1]
        status = await asyncio.shield(task)
        if self._status_task is not None and self._status_task[1] is task:
            self._status_task = None
        self._status_cache = (generation, time.monotonic(), status)
        return status

    async def _compute_status(self) -> dict[str, Any]:
        # The ledger is read off the event loop; the live fields may change under a thread's
        # feet, so on a clash it is read here instead.
        try:
            return await asyncio.to_thread(self.engine.status)
        except RuntimeError:
            return self.engine.status()

    def _fresh(self) -> None:
        """Something changed: the next status is computed anew."""
        self._generation += 1

    async def _start_run(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._start is None or self._start.done():
            raise RatchetError("the loop is already running; stop it first (ratchet.stop)")
        try:
            await self._seed(params)
        except BaseException:
            self._start.set_result(None)  # nothing to run: the process ends, freeing the lock
            raise
        limit, more = params.get("maxExperiments"), params.get("more")
        self._start.set_result(
            {
                "max_experiments": int(limit) if limit is not None else None,
                "more": int(more) if more is not None else None,
                "submitted_only": bool(params.get("submittedOnly")),
            }
        )
        deadline = time.monotonic() + START_WAIT_S
        while self.engine.state == "idle" and not self._ran.is_set():
            self._moved.clear()
            ran = asyncio.ensure_future(self._ran.wait())
            moved = asyncio.ensure_future(self._moved.wait())
            left = deadline - time.monotonic()
            await asyncio.wait({ran, moved}, timeout=max(left, 0), return_when="FIRST_COMPLETED")
            for waiter in (ran, moved):
                waiter.cancel()
            if time.monotonic() > deadline:
                break
        return await self._compute_status()

    async def _seed(self, params: dict[str, Any]) -> None:
        """A loop started for one edit (runBuffer) or one revert gets it before it runs."""
        submit = params.get("submit")
        if isinstance(submit, dict):
            await self.engine.submit(
                str(submit.get("text", "")),
                str(submit.get("description") or "an edit made in the editor"),
                str(submit.get("source") or "human"),
            )
        if params.get("revert") is not None:
            await self.engine.revert(_number(params, "revert"))

    async def _stop(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._start is not None and not self._start.done():
            self._start.set_result(None)  # stopped before it began
        # The engine's stop answers every proposal waiting for review, and one the proposer
        # finishes after it is refused at once (both recorded "rejected"): the run ends.
        self.engine.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ran.wait(), STOP_WAIT_S)
        return await self._compute_status()

    async def _pause(self, params: dict[str, Any]) -> dict[str, Any]:
        self.engine.pause()
        return await self._compute_status()

    async def _resume(self, params: dict[str, Any]) -> dict[str, Any]:
        self.engine.resume()
        return await self._compute_status()

    async def _decide(self, params: dict[str, Any]) -> dict[str, Any]:
        experiment = _number(params, "id")
        accept = bool(params.get("accept"))
        self.engine.decide(experiment, accept)
        return {"experiment": experiment, "accepted": accept}

    async def _stop_experiment(self, params: dict[str, Any]) -> dict[str, Any]:
        experiment = _number(params, "id")
        reason = str(params.get("reason") or "cancelled from the editor")
        return {
            "experiment": experiment,
            "stopped": self.engine.stop_experiment(experiment, reason),
        }

    async def _submit(self, params: dict[str, Any]) -> dict[str, Any]:
        description = str(params.get("description") or "an edit made in the editor")
        await self.engine.submit(str(params.get("text", "")), description, "human")
        return {"submitted": True}

    async def _revert(self, params: dict[str, Any]) -> dict[str, Any]:
        await self.engine.revert(_number(params, "id"))
        return {"reverted": True}

    async def _note(self, params: dict[str, Any]) -> dict[str, Any]:
        text = str(params.get("text") or "").strip()
        if not text:
            raise RatchetError("write the note for the agent")
        await asyncio.to_thread(self.engine.add_note, text)
        return {"noted": text}

    async def _reconfigure(self, params: dict[str, Any]) -> dict[str, Any]:
        """ratchet.toml (or the editor's review gate) changed: read it again and apply what a
        running loop can take (the engine says which settings those are)."""
        if "review" in params:
            self.review = (
                params.get("review") if params.get("review") in ("auto", "propose") else None
            )
        config = await asyncio.to_thread(load_config, self.engine.config.root)
        self.engine.reconfigure(with_review(config, self.review))
        return {"review": self.engine.config.loop.review}


def _number(params: dict[str, Any], key: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RatchetError(f"expected an experiment number, got {value!r}")
    return value
