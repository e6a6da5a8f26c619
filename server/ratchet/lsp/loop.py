"""The project's running loop, as the editor follows it. The loop runs in a process of its
own (`ratchet run` in a terminal, or one started here in a session of its own); this feature
attaches to it through its control channel, turns its events into progress, rows and
proposals, sends it the editor's commands, and detaches without stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from collections.abc import Callable
from typing import Any

from lsprotocol import types

from ..control import spawn, wire
from ..control.client import LoopClient, LoopGone
from ..errors import RatchetError
from . import names
from .diagnostics import summary
from .placement import WaitingProposal
from .progress import ProgressReporter
from .project import Project
from .results import Results

log = logging.getLogger(__name__)

# The watcher wakes the attach loop when the socket or the lock changes; this is only the
# net under it (a folder that could not be watched, an event the kernel dropped).
ATTACH_SAFETY_S = 10.0
START_TIMEOUT_S = 60.0
LIVE_REFRESH_S = 10.0  # the loop's status is asked again after an event, or this often
ENDING_WAIT_S = 3.0  # a loop whose channel closed has this long to be seen gone ...
STILL_RUNNING_WATCH_S = 60.0  # ... and, still running, is watched this long (attached again)
KILLED = (
    "the loop's process ended without a word (killed, or it crashed); what it recorded is "
    "kept: start the loop again to resume"
)


class Loop:
    def __init__(
        self,
        project: Project,
        results: Results,
        changed: Callable[[], None],
        locked: Callable[[str], None],
    ) -> None:
        self.project = project
        self.results = results
        self.changed = changed  # the status may have changed
        self.locked = locked  # the loop saw a locked file change
        self.progress = ProgressReporter(project.editor, self._cancel_experiment)
        self.client: LoopClient | None = None
        self.holder: int | None = None  # a loop's pid that holds the lock, attached or not
        self.state = "idle"
        self.failed = False  # the last run ended in error (shown until the next start)
        self.message = ""  # the last thing that went wrong with a run, in words
        self._poll: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self._attaching = asyncio.Lock()
        self.on_attach: Callable[[], None] = lambda: None
        # The loop's last status, and when it came: ticks between events advance its clocks
        # here (a tick never costs the loop a status of its whole record).
        self._live: dict[str, Any] | None = None
        self._live_at = 0.0
        self._stale = True
        self._lines: dict[int, str] = {}
        self._ended = False  # the loop said it ended (else its process says how it ended)
        self._process: subprocess.Popen[bytes] | None = None  # the loop this editor started
        self._attaches = 0  # counts attaches and launches: a late verdict on an old loop waits

    @property
    def attached(self) -> bool:
        return self.client is not None and not self.client.closed

    @property
    def running(self) -> bool:
        return self.attached and self.state in ("running", "paused", "awaiting_review", "stopping")

    # --- attaching ---------------------------------------------------------------------------

    def start(self) -> None:
        self._poll = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        """Detaches (the loop goes on) and stops watching for one."""
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll
        self.progress.finish_all("detached from the loop")
        if self.client is not None:
            client, self.client = self.client, None
            client.close()

    async def _watch(self) -> None:
        """Attaches whenever a loop serves this project (one started from a terminal, or by
        another window); notes a loop that holds the lock but cannot be reached."""
        while True:
            if not self.attached:
                with contextlib.suppress(RatchetError):
                    await self.attach()
                holder = await asyncio.to_thread(spawn.lock_holder, self.project.root)
                if holder != self.holder and not self.attached:
                    self.holder = holder
                    self.changed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), ATTACH_SAFETY_S)
            self._woken.clear()

    def wake(self) -> None:
        """The loop's socket or lock changed: look again now."""
        self._woken.set()

    async def attach(self) -> bool:
        async with self._attaching:
            if self.attached:
                return True
            if not wire.socket_path(self.project.root).exists():
                return False
            client = await LoopClient.attach(self.project.root, self._on_event, self._on_closed)
            if client is None:
                return False
            self.client, self.holder = client, client.pid
            self._attaches += 1
            self._live, self._stale, self._ended = None, True, False
            await self._attached(client.hello)
            return True

    async def _attached(self, hello: dict[str, Any]) -> None:
        tag = hello.get("tag")
        if isinstance(tag, str) and tag != self.project.tag:
            await self.project.open_reader(tag)
        status = hello.get("status") or {}
        self.state = str(status.get("state", "running"))
        self.failed, self.message = False, ""
        for message in hello.get("proposals") or []:
            self.results.proposed(_proposal(message))
        for running in status.get("running") or []:
            self.progress.started(running["id"], running["description"], running["budget"])
        await self.results.reload()
        self.on_attach()
        self.changed()

    def _on_closed(self, client: LoopClient) -> None:
        if client is not self.client:
            return
        self.client = None
        self.holder = None
        if self.state != "error":
            self.state = "idle"
        self.progress.finish_all("the loop stopped")
        self.results.clear_proposals()
        if self._ended:
            self._told()
        else:  # no word from it: its process says how it ended, then the editor is told
            self.project.spawn(self._closed_without_word(client.pid, self._attaches))

    def _told(self) -> None:
        """What the loop recorded last, and how it ended, to the editor."""
        self.project.spawn(self.results.reload())
        self.changed()

    async def _closed_without_word(self, pid: int | None, attaches: int) -> None:
        """The channel closed before the loop said it ended: its last words may be lost (a
        clean exit), the channel alone may have dropped (the loop goes on: attach again, and
        look again until it is back or gone), or it was killed."""
        deadline = time.monotonic() + STILL_RUNNING_WATCH_S
        while True:
            ended = await asyncio.to_thread(spawn.how_it_ended, pid, self._process, ENDING_WAIT_S)
            if self._attaches != attaches:
                return  # a loop attached since: what became of this one is no longer the news
            if ended != spawn.STILL_RUNNING:
                break
            if time.monotonic() > deadline:
                self._told()
                return
            log.warning("the loop's channel closed while it runs on; attaching again")
            self.wake()
        if ended not in (0, spawn.EXIT_INTERRUPTED):
            errored = isinstance(ended, int) and ended > 0
            self.failed = True
            self.message = (
                f"the loop's process ended in error (exit code {ended}); see "
                f"{wire.log_path(self.project.root)}"
                if errored
                else KILLED
            )
            self.project.editor.show(types.MessageType.Warning, f"Ratchet: {self.message}")
        self._told()

    # --- commands ----------------------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if self.client is None or self.client.closed:
            raise RatchetError(f"no loop is running, so there is nothing to {method}")
        if method != "status":
            self._stale = True
        try:
            return await self.client.request(method, params)
        except LoopGone:
            raise RatchetError(f"the loop ended before it could {method}") from None
        finally:
            # A status read while this ran may predate it: the next one is asked again.
            if method != "status":
                self._stale = True

    async def launch(self, api_key: str | None = None, **start: Any) -> dict[str, Any]:
        """Starts a loop in a process of its own, attaches, and tells it how to run. An
        `api_key` the editor keeps goes into that process's environment, under `[agent]
        api_key_env`, and nowhere else: not this process's environment, not the loop's
        control channel, not a log (the loop hides it from its runs, and redacts it)."""
        if self.attached:
            raise RatchetError("the loop is already running; stop it first (ratchet.stop)")
        reader = self.project.require_reader()
        command = spawn.loop_command(
            self.project.root, tag=reader.tag, review=self.project.review, wait_for_start=True
        )
        secrets = {self.project.api_key_env: api_key} if api_key else None
        self._attaches += 1
        process = await asyncio.to_thread(spawn.spawn, self.project.root, command, secrets)
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await self.attach():
            if process.poll() is not None:
                raise spawn.started_error(self.project.root, process.returncode)
            if time.monotonic() > deadline:
                raise RatchetError(
                    f"the loop did not start; see {wire.log_path(self.project.root)}"
                )
            await asyncio.sleep(0.05)
        self.failed, self.message = False, ""
        try:
            status = await self.request("start", start)
        except RatchetError:
            if self.client is not None:  # it had nothing to run, and ends: let it go
                self._ended = True
                self.client.close()
            raise
        self.state = str(status.get("state", self.state))
        self.changed()
        return dict(status)

    async def status(self) -> dict[str, Any] | None:
        """The loop's own status, or None when none is attached (or it just ended): asked of
        the loop after each of its events, else its running clocks advanced here."""
        if not self.attached:
            return None
        now = time.monotonic()
        if self._stale or self._live is None or now - self._live_at > LIVE_REFRESH_S:
            self._stale = False
            try:
                live = dict(await self.request("status"))
            except RatchetError:
                return None
            self._live, self._live_at = live, now
            self.state = str(live.get("state", self.state))
        assert self._live is not None
        passed = now - self._live_at
        running = [
            {
                **r,
                "elapsed": round(r.get("elapsed", 0.0) + passed, 1),
                "lastLine": self._lines.get(r.get("id"), r.get("lastLine", "")),
            }
            for r in self._live.get("running", [])
        ]
        return {**self._live, "running": running}

    def _cancel_experiment(self, experiment: int) -> None:
        if self.attached:
            self.project.spawn(self._stop_experiment(experiment))

    async def _stop_experiment(self, experiment: int) -> None:
        with contextlib.suppress(RatchetError):
            await self.request("stopExperiment", {"id": experiment})

    # --- events in ---------------------------------------------------------------------------

    def _on_event(self, message: dict[str, Any]) -> None:
        kind = message.get("event")
        if kind == "output":  # the hot path
            self._lines[message["id"]] = message["line"]
            self.progress.line(message["id"], message["line"])
            return
        self._stale = True
        if kind == "proposed":
            if message.get("awaiting_review"):
                self.results.proposed(_proposal(message))
            self.project.spawn(self.results.fetch(message["id"]))
        elif kind == "started":
            self.results.settled(message["id"])
            self.project.spawn(self.results.fetch(message["id"]))
            self.progress.started(message["id"], message["description"], message["budget_s"])
        elif kind == "finished":
            self._lines.pop(message["experiment"]["id"], None)
            self._finished(wire.experiment_of(message["experiment"]))
        elif kind == "holdout":  # a new best's holdout, after its verdict: its row again
            self.project.spawn(self.results.fetch(message["id"]))
        elif kind == "state":
            self._state(str(message.get("state")), str(message.get("message") or ""))
        elif kind == "activity":
            # The extension shows these in its agent trace channel; other clients ignore it.
            self.project.editor.notify(
                names.AGENT_ACTIVITY_NOTIFICATION, {"id": message["id"], "text": message["text"]}
            )
            return
        elif kind == "locked":
            self.locked(str(message["path"]))
        elif kind == "ended":
            self._ended = True
            if message.get("error"):
                self.failed, self.message = True, str(message.get("message") or "the loop failed")
        self.changed()

    def _finished(self, exp: Any) -> None:
        self.results.update(exp)
        base = self.results.base_of(exp)
        text = summary(exp, base.metric if base else None, self.project.metric_name)
        self.progress.finished(exp.id, f"exp {exp.id} {text}")

    def _state(self, state: str, message: str) -> None:
        self.state = state
        if state == "error":
            self.failed, self.message = True, message
        if message:
            kind = types.MessageType.Error if state == "error" else types.MessageType.Info
            self.project.editor.show(kind, f"Ratchet: {message}")


def _proposal(message: dict[str, Any]) -> WaitingProposal:
    return WaitingProposal.of(
        int(message["id"]),
        str(message.get("description", "")),
        str(message.get("diff", "")),
        str(message.get("old_text", "")),
        str(message.get("new_text", "")),
    )
