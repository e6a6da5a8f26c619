"""Runs experiments on this machine: one per GPU at a time, or one CPU slot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections import deque
from pathlib import Path
from typing import IO

from .. import hardware
from ..guard import changed_files, hash_files
from .base import Job, OnLine, RunControl, RunOutcome, Slot, wait_for_end
from .processes import TOKEN_VARIABLE, kill_tree, processes_with_token

TAIL_LINES = 200
_CHUNK = 1 << 16


def experiment_env(job: Job, slot: Slot, token: str) -> dict[str, str]:
    """The environment an experiment sees: the budget, its number, and its GPU."""
    env = {k: v for k, v in os.environ.items() if k not in job.hidden_env}
    env.update(job.env)
    env["RATCHET_TIME_BUDGET"] = f"{job.budget_s:g}"
    env["RATCHET_EXPERIMENT"] = str(job.experiment)
    env[TOKEN_VARIABLE] = token
    env["PYTHONUNBUFFERED"] = "1"
    # A CPU slot hides every GPU, so an experiment never grabs one it was not given.
    env["CUDA_VISIBLE_DEVICES"] = "" if slot.gpu is None else str(slot.gpu)
    return env


class LineSplitter:
    """Bytes in, whole decoded lines out; a carriage return (progress bars) keeps its last part."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        if len(self._pending) > _CHUNK:  # a line with no end: flush it in pieces
            lines.append(self._pending)
            self._pending = b""
        return [self._decode(line) for line in lines]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [self._decode(rest)] if rest else []

    @staticmethod
    def _decode(raw: bytes) -> str:
        return raw.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1]


async def _read_pipe(pipe: IO[bytes], log_path: Path, on_line: OnLine, tail: deque[str]) -> None:
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=_CHUNK * 4)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
    try:
        await stream_output(stream, log_path, on_line, tail)
    finally:
        transport.close()


async def stream_output(
    stream: asyncio.StreamReader, log_path: Path, on_line: OnLine, tail: deque[str]
) -> None:
    """Copies a process's output to its log file and hands each line to the engine."""
    splitter = LineSplitter()
    with open(log_path, "ab", buffering=0) as log:
        while chunk := await stream.read(_CHUNK):
            log.write(chunk)
            for line in splitter.feed(chunk):
                tail.append(line)
                on_line(line)
        for line in splitter.flush():
            tail.append(line)
            on_line(line)


class LocalRunner:
    kind = "local"

    def __init__(self, gpus: tuple[int, ...]) -> None:
        self._gpus = gpus

    async def open(self) -> list[Slot]:
        if not self._gpus:
            return [Slot(name="cpu")]
        return [Slot(name=f"gpu{gpu}", gpu=gpu) for gpu in self._gpus]

    async def close(self) -> None:
        return None

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        token = uuid.uuid4().hex
        before = await asyncio.to_thread(hash_files, job.worktree, job.locked)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        started = time.monotonic()
        try:
            # subprocess.Popen, not asyncio's: asyncio's wait() also waits for every holder of
            # the output pipe to close it, and a daemon the command left behind may never do.
            process = subprocess.Popen(
                ["/bin/sh", "-c", job.command],
                cwd=job.worktree,
                env=experiment_env(job, slot, token),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            message = f"could not start `{job.command}`: {error}"
            job.log_path.write_text(message + "\n", encoding="utf-8")
            on_line(message)
            return RunOutcome(None, 0.0, False, False, [message], [])
        assert process.stdout is not None
        reader = asyncio.create_task(_read_pipe(process.stdout, job.log_path, on_line, tail))
        waiter = asyncio.ensure_future(asyncio.to_thread(process.wait))
        timed_out = stopped = False
        try:
            timed_out, stopped = await wait_for_end(waiter, control, job.timeout_s)
            if timed_out or stopped:
                await asyncio.to_thread(kill_tree, process.pid, token)
            await waiter
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(kill_tree, process.pid, token))
            raise
        finally:
            wall = time.monotonic() - started
            # Whatever the command left running is killed now; the count lets the engine
            # void an experiment that leaves processes behind.
            leftovers = await asyncio.to_thread(processes_with_token, token)
            if leftovers:
                await asyncio.to_thread(kill_tree, None, token, 0.5)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader, timeout=5)
            if not reader.done():
                reader.cancel()
            process.stdout.close()
        after = await asyncio.to_thread(hash_files, job.worktree, job.locked)
        return RunOutcome(
            exit_code=process.returncode,
            wall_s=wall,
            timed_out=timed_out,
            stopped=stopped,
            tail=list(tail),
            locked_changed=changed_files(before, after),
            leftover_processes=0 if (timed_out or stopped) else len(leftovers),
            hardware=hardware.fingerprint(slot.gpu),
        )
