"""Runs experiments on this machine: one per GPU at a time, or one CPU slot, each in the
sandbox (runners/sandbox.py) unless `[sandbox] kind = "none"`."""

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
from ..config import SandboxConfig
from ..errors import RatchetError
from ..traces import redact_text
from .base import Job, OnLine, RunControl, RunOutcome, Slot, wait_for_end
from .launch import Launch, experiment_variables, prepare
from .netproxy import HostProxy
from .processes import PidsCgroup, kill_tree, processes_with_token
from .safe_files import changed_files, hash_files
from .sandbox import find_bwrap, make_non_dumpable, probe

TAIL_LINES = 200
MAX_LOG_BYTES = 64 << 20  # a run that prints more still runs; its log stops growing here
_CHUNK = 1 << 16


def experiment_env(job: Job, slot: Slot, token: str) -> dict[str, str]:
    """The environment an unsandboxed experiment sees: Ratchet's, less the agent's key."""
    env = {k: v for k, v in os.environ.items() if k not in job.hidden_env}
    env.update(experiment_variables(job, slot, token))
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
        text = raw.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1]
        return text.replace("\0", "\ufffd")  # binary junk: no NUL reaches the ledger


async def _read_pipe(
    pipe: IO[bytes], log_path: Path, on_line: OnLine, tail: deque[str], secrets: tuple[str, ...]
) -> None:
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=_CHUNK * 4)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
    try:
        await stream_output(stream, log_path, on_line, tail, secrets)
    finally:
        transport.close()


class LogWriter:
    """A run's log file, line by line, with every secret removed, and no larger than
    MAX_LOG_BYTES (a huge output fills no disk)."""

    def __init__(self, log_path: Path, secrets: tuple[str, ...] = ()) -> None:
        self._log = open(log_path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self._secrets = secrets
        self._written = 0

    def line(self, text: str) -> str:
        clean = redact_text(text, self._secrets)
        if self._written <= MAX_LOG_BYTES:
            self._written += len(clean) + 1
            self._log.write(clean + "\n")
            if self._written > MAX_LOG_BYTES:
                self._log.write(f"... (log cut at {MAX_LOG_BYTES >> 20} MiB)\n")
        return clean

    def flush(self) -> None:
        """After each chunk read: whoever tails the log (the editor, a person) sees it live."""
        self._log.flush()

    def close(self) -> None:
        self._log.close()


async def stream_output(
    stream: asyncio.StreamReader,
    log_path: Path,
    on_line: OnLine,
    tail: deque[str],
    secrets: tuple[str, ...] = (),
) -> None:
    """Copies a process's output to its log file and hands each line to the engine."""
    splitter = LineSplitter()
    log = LogWriter(log_path, secrets)
    try:
        while chunk := await stream.read(_CHUNK):
            for line in splitter.feed(chunk):
                clean = log.line(line)
                tail.append(clean)
                on_line(clean)
            log.flush()
        for line in splitter.flush():
            clean = log.line(line)
            tail.append(clean)
            on_line(clean)
    finally:
        log.close()


class LocalRunner:
    kind = "local"

    def __init__(self, gpus: tuple[int, ...], sandbox: SandboxConfig | None = None) -> None:
        self._gpus = gpus
        self._sandbox = sandbox or SandboxConfig(kind="none")
        self._proxy: HostProxy | None = None

    async def open(self) -> list[Slot]:
        if self._sandbox.kind == "bwrap":
            problem = await asyncio.to_thread(probe, find_bwrap())
            if problem:
                raise RatchetError(problem)
            make_non_dumpable()  # no run reads our environ (the agent's key) or memory
            await asyncio.to_thread(PidsCgroup.sweep)
            if self._sandbox.hosts and not self._sandbox.network:
                self._proxy = HostProxy(self._sandbox.hosts)
        if not self._gpus:
            return [Slot(name="cpu")]
        return [Slot(name=f"gpu{gpu}", gpu=gpu) for gpu in self._gpus]

    async def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        token = uuid.uuid4().hex
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        before = await asyncio.to_thread(hash_files, job.worktree, job.locked, job.expected_locked)
        if job.expected_locked is not None:
            expected = {k: job.expected_locked.get(k, "missing") for k in before}
            if differ := changed_files(expected, before):
                reason = "the locked files differ from the loop's start: " + ", ".join(differ)
                return _refused(job, on_line, reason, slot)
            before = expected
        try:
            launch = prepare(job, slot, token, self._proxy)
        except OSError as error:
            return _refused(job, on_line, f"could not start the sandbox: {error}", slot)
        try:
            result = await self._execute(job, launch, on_line, control, token)
            report = await asyncio.to_thread(launch.report)
        finally:
            launch.close()
        if isinstance(result, RunOutcome):
            return result
        exit_code, wall, timed_out, stopped, leftovers, tail = result
        refused = None
        if launch.sandboxed and not (timed_out or stopped):
            if report is None:
                refused = "the sandbox's first process was killed or its report was forged"
            elif report.exit_code != exit_code:
                refused = "the sandbox's report does not match the exit code"
            else:
                leftovers = report.leftovers
        checked = [p for p in job.locked if p not in job.consumable]
        after = await asyncio.to_thread(hash_files, job.worktree, checked, before)
        before = {k: v for k, v in before.items() if k in checked}
        facts = hardware.fingerprint(slot.gpu)
        facts["sandbox"] = "bwrap" if launch.sandboxed else "none"
        return RunOutcome(
            exit_code=exit_code,
            wall_s=wall,
            timed_out=timed_out,
            stopped=stopped,
            tail=tail,
            locked_changed=changed_files(before, after),
            leftover_processes=0 if (timed_out or stopped) else leftovers,
            hardware=facts,
            refused=refused,
        )

    async def _execute(
        self, job: Job, launch: Launch, on_line: OnLine, control: RunControl, token: str
    ) -> RunOutcome | tuple[int | None, float, bool, bool, int, list[str]]:
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        started = time.monotonic()
        try:
            # subprocess.Popen, not asyncio's: asyncio's wait() also waits for every holder of
            # the output pipe to close it, and a daemon the command left behind may never do.
            process = subprocess.Popen(
                launch.argv,
                cwd=job.worktree,
                env=launch.env,
                stdin=launch.stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            message = f"could not start `{job.command}`: {error}"
            job.log_path.write_text(message + "\n", encoding="utf-8")
            on_line(message)
            return RunOutcome(None, 0.0, False, False, [message], [])
        launch.started()
        assert process.stdout is not None
        reader = asyncio.create_task(
            _read_pipe(process.stdout, job.log_path, on_line, tail, job.secrets)
        )
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
        return process.returncode, wall, timed_out, stopped, len(leftovers), list(tail)


def _refused(job: Job, on_line: OnLine, reason: str, slot: Slot) -> RunOutcome:
    job.log_path.write_text(reason + "\n", encoding="utf-8")
    on_line(reason)
    facts = hardware.fingerprint(slot.gpu)
    return RunOutcome(None, 0.0, False, False, [reason], [], hardware=facts, refused=reason)
