"""Runs experiments on this machine: one per GPU at a time, or one CPU slot, each in the
sandbox (runners/sandbox.py) unless `[sandbox] kind = "none"`.

The run itself is wrapper.execute, called in-process (a Python start per run would cost
more than the sandbox does): the same functions an ssh host or a Ray node runs."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from .. import hardware
from ..config import SandboxConfig
from ..errors import RatchetError
from .base import Job, OnLine, RunControl, RunOutcome, Slot, outcome_of
from .launch import run_spec, with_proxy
from .netproxy import HostProxy
from .output import MAX_LOG_BYTES, TAIL_LINES, OutputSink
from .processes import PidsCgroup
from .sandbox import find_bwrap, make_non_dumpable, probe
from .wrapper import Control, execute

__all__ = ["MAX_LOG_BYTES", "TAIL_LINES", "LocalRunner"]


class LocalRunner:
    kind = "local"

    def __init__(self, gpus: tuple[int, ...], sandbox: SandboxConfig | None = None) -> None:
        self._gpus = gpus
        self._sandbox = sandbox or SandboxConfig(kind="none")
        self._hosts: tuple[str, ...] = ()  # reached through a proxy of each run's own

    async def open(self) -> list[Slot]:
        if self._sandbox.kind == "bwrap":
            problem = await asyncio.to_thread(probe, find_bwrap())
            if problem:
                raise RatchetError(problem)
            make_non_dumpable()  # no run reads our environ (the agent's key) or memory
            await asyncio.to_thread(PidsCgroup.sweep)
            if self._sandbox.hosts and not self._sandbox.network:
                self._hosts = self._sandbox.hosts  # one host per port: checked as config
        if not self._gpus:
            return [Slot(name="cpu")]
        return [Slot(name=f"gpu{gpu}", gpu=gpu) for gpu in self._gpus]

    async def close(self) -> None:
        """Nothing to let go: each run's host proxy closes with the run."""

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        isolation = job.isolation
        sandbox = isolation.sandbox if isolation is not None else SandboxConfig(kind="none")
        spec = run_spec(
            job,
            slot,
            uuid.uuid4().hex,
            sandbox,
            run_dir=str(Path(job.worktree).resolve()),
            hide=isolation.hide if isolation is not None else (),
        )
        loop = asyncio.get_running_loop()
        # execute runs in a thread: its output reaches the engine on the event loop.

        def hand_on(line: str) -> None:
            loop.call_soon_threadsafe(on_line, line)

        def stop(task: asyncio.Task[bool]) -> None:
            if not task.cancelled():
                wrapped.stop()

        sink = OutputSink(job.log_path, hand_on, job.secrets, limit=MAX_LOG_BYTES)
        proxy = HostProxy(self._hosts) if spec.sandbox is not None and self._hosts else None
        if proxy is not None:
            spec = with_proxy(spec, proxy)
        wrapped = Control()
        stopper = asyncio.create_task(control.stopped.wait())
        stopper.add_done_callback(stop)
        running = asyncio.ensure_future(asyncio.to_thread(execute, spec, sink.feed, wrapped))
        try:
            end = await asyncio.shield(running)
        except asyncio.CancelledError:
            wrapped.stop()  # killed, and waited for: nothing of it outlives the loop
            with contextlib.suppress(Exception):
                await asyncio.shield(running)
            raise
        finally:
            stopper.cancel()
            sink.close()
            if proxy is not None:
                proxy.close()
        await asyncio.sleep(0)  # the lines handed to the loop reach the engine first
        facts = hardware.fingerprint(slot.gpu)
        facts["sandbox"] = "none" if spec.sandbox is None else "bwrap"
        outcome = outcome_of(end, list(sink.tail), facts, stopped=end["stopped"])
        outcome.host_trouble = proxy.trouble() if proxy is not None else None
        return outcome
