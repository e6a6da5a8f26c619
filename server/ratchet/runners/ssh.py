"""Runs experiments on GPU boxes over SSH (asyncssh): one slot per GPU of each host.

Per host, a base copy of the project (the files git tracks) is sent once, as a tar stream
over the same SSH connection, and kept under `remote_dir/<project>/base` with the id of its
content, so a later loop finds it in place. Each experiment gets a fresh remote copy of that
base for its slot (`slots/<gpu0|cpu>`, copied on the remote machine) and only the editable file
travels with it. The run itself is the shipped run wrapper (wrapper.py, the same functions as
every runner), started with the host's python3: it makes that copy, runs the command in the
sandbox, stops it at its timeout, kills what it left, and reports on stderr, a channel the
command never holds. Output streams back live on stdout.

Host keys are checked against known_hosts and never accepted silently. A dropped connection or
a remote run that dies under us is returned as `lost` (the engine re-queues it); the next run
on that slot reconnects with backoff and first kills whatever the lost run left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunnerConfig, SandboxConfig
from ..errors import RatchetError
from ..hardware import NVIDIA_QUERY, parse_nvidia_smi
from .base import Job, OnLine, RunControl, RunOutcome, Slot, outcome_of, wait_for_end
from .output import LineSplitter, OutputSink, Reports
from .remote_sandbox import RemoteFacts, parse_probe, probe_script
from .ssh_connect import (
    COMMAND_TIMEOUT_S,
    Connector,
    Lost,
    asyncssh_module,
    plain,
    run_command,
)
from .ssh_script import (
    CLIENT_SLACK_S,
    KILL_GRACE_S,
    HostAddress,
    base_id,
    end_request,
    pack,
    parse_host,
    project_key,
    q,
    run_request,
    shell_path,
    stop_script,
    tracked_files,
    wrapper_command,
    wrapper_input,
)

_CHUNK = 1 << 16
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass
class _Host:
    address: HostAddress
    root: str  # shell expression of remote_dir/<project>
    path: str  # remote_dir/<project> as written (~: the remote home), for the wrapper
    hardware: dict[str, Any] = field(default_factory=dict)
    gpus: list[dict[str, str]] = field(default_factory=list)
    synced: str | None = None  # the base id known to be on the host
    facts: RemoteFacts | None = None  # for its sandbox: home, remote_dir, bubblewrap
    sync_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _SlotState:
    host: _Host
    folder: str  # "gpu0" or "cpu"
    connection: Any = None
    failures: int = 0


class SshRunner:
    kind = "ssh"

    def __init__(
        self, config: RunnerConfig, project: Path, sandbox: SandboxConfig | None = None
    ) -> None:
        self._config = config
        self._sandbox = sandbox or SandboxConfig(kind="none")
        if self._sandbox.kind == "bwrap" and self._sandbox.hosts:
            raise RatchetError(
                "[sandbox] hosts works with the local runner only for now; "
                'run such a loop with [runner] kind = "local"'
            )
        self._key = project_key(project)
        self._hosts = [parse_host(text) for text in config.hosts]
        if not self._hosts:
            raise RatchetError('the ssh runner needs `hosts` in [runner], e.g. ["user@box:22"]')
        self._states: dict[str, _SlotState] = {}
        self._spare: dict[str, Any] = {}  # each host's first connection, for its first slot
        self._connector = Connector(config)

    async def open(self) -> list[Slot]:
        root = self._config.remote_dir.rstrip("/") or "/"
        hosts = [
            _Host(a, f"{shell_path(root)}/{q(self._key)}", f"{root}/{self._key}")
            for a in self._hosts
        ]
        results = await asyncio.gather(
            *(self._probe(host) for host in hosts), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                await self.close()
                if isinstance(result, Lost):
                    raise RatchetError(f"{result}; check that the host is up and reachable")
                raise result
        per_host: list[list[Slot]] = []
        for host in hosts:
            wanted = self._config.gpus
            gpus: list[dict[str, str] | None] = [
                g for g in host.gpus if not wanted or int(g["index"]) in wanted
            ]
            slots = []
            for gpu in gpus or [None]:
                folder = f"gpu{gpu['index']}" if gpu else "cpu"
                slot = Slot(
                    name=f"{host.address.text}/{folder}",
                    host=host.address.text,
                    gpu=int(gpu["index"]) if gpu else None,
                )
                self._states[slot.name] = _SlotState(host, folder)
                slots.append(slot)
            per_host.append(slots)
        # interleaved across hosts, so a cap on slots keeps every host busy
        ordered = [s for group in _interleave(per_host) for s in group]
        if self._config.max_slots is not None:
            ordered = ordered[: self._config.max_slots]
        for host in hosts:  # the probing connection serves the host's first slot
            first = next((s for s in ordered if s.host == host.address.text), None)
            connection = self._spare.pop(host.address.text, None)
            if first is not None and connection is not None:
                self._states[first.name].connection = connection
            elif connection is not None:
                connection.close()
        return ordered

    async def _probe(self, host: _Host) -> None:
        connection = await self._connector.connect(host.address)
        self._spare[host.address.text] = connection
        script = (
            "hostname; echo ---; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-; "
            "echo ---; (nproc 2>/dev/null || getconf _NPROCESSORS_ONLN); echo ---; "
            "(command -v python3 || command -v python); echo ---; "
            f"({' '.join(NVIDIA_QUERY)} 2>/dev/null || true)"
        )
        result = await run_command(connection, script)
        parts = (str(result.stdout or "") + "\n").split("---\n")
        parts += [""] * (5 - len(parts))
        name, cpu, cpus, python, smi = (part.strip() for part in parts[:5])
        if not python:  # the run wrapper is Python (standard library only)
            raise RatchetError(
                f"{host.address.text} has no python3, which the ssh runner runs each "
                "experiment with: install python3 there"
            )
        host.gpus = parse_nvidia_smi(smi)
        if self._sandbox.kind == "bwrap":
            found = await run_command(connection, probe_script(host.root))
            host.facts = parse_probe(str(found.stdout or ""), host.address.text)
            if host.facts.problem:
                raise RatchetError(host.facts.problem)
        host.hardware = {
            "host": name or host.address.host,
            "address": host.address.text,
            "cpu": cpu,
            "cpus": int(cpus) if cpus.isdigit() else 1,
        }

    async def close(self) -> None:
        connections = [s.connection for s in self._states.values() if s.connection is not None]
        connections += list(self._spare.values())
        self._spare.clear()
        for state in self._states.values():
            state.connection = None
        for connection in connections:
            connection.close()
        for connection in connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.wait_closed(), 5)

    async def _connection(
        self, state: _SlotState, on_line: OnLine, control: RunControl, deadline: float
    ) -> Any:
        """The slot's connection, reconnecting with backoff until `deadline`."""
        while True:
            connection = state.connection
            if connection is not None and not connection.is_closed():
                return connection
            state.connection = None
            if state.failures:
                wait = BACKOFF_S[min(state.failures - 1, len(BACKOFF_S) - 1)]
                if time.monotonic() + wait > deadline:
                    raise Lost(f"{state.host.address.text} is unreachable; gave up for this run")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(control.stopped.wait(), wait)
                if control.stopped.is_set():
                    raise Lost("stopped while reconnecting")
            try:
                state.connection = await self._connector.connect(state.host.address)
                state.failures = 0
                return state.connection
            except Lost as error:
                state.failures += 1
                on_line(f"[ratchet] {error}; retrying")

    # --- one experiment ----------------------------------------------------------------------

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        state = self._states[slot.name]
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        hardware = {**self._hardware(state, slot), "sandbox": self._sandbox.kind}
        sink = OutputSink(job.log_path, on_line, job.secrets)
        try:
            if control.stopped.is_set():
                return outcome_of(None, list(sink.tail), hardware, stopped=True)
            try:
                connection = await self._connection(
                    state, sink.say, control, time.monotonic() + job.timeout_s
                )
                await self._sync(connection, state.host, job)
            except Lost as error:
                state.connection = None
                if control.stopped.is_set():
                    return outcome_of(None, list(sink.tail), hardware, stopped=True)
                sink.say(f"[ratchet] lost: {error}")
                return outcome_of(None, list(sink.tail), hardware, lost=str(error))
            return await self._execute(connection, state, job, slot, sink, control, hardware)
        finally:
            sink.close()

    @staticmethod
    def _hardware(state: _SlotState, slot: Slot) -> dict[str, Any]:
        hardware = dict(state.host.hardware)
        gpu = next(
            (g for g in state.host.gpus if slot.gpu is not None and g["index"] == str(slot.gpu)),
            None,
        )
        hardware.update(
            gpu=gpu["name"] if gpu else None,
            gpu_count=1 if gpu else 0,
            driver=gpu["driver"] if gpu else None,
        )
        return hardware

    async def _sync(self, connection: Any, host: _Host, job: Job) -> None:
        """Sends the project's base copy to the host unless it has it already (once a host)."""
        files = await asyncio.to_thread(tracked_files, job.worktree)
        wanted = base_id(files, job.editable)
        async with host.sync_lock:
            if host.synced == wanted:
                return
            current = await run_command(connection, f"cat {host.root}/base.id 2>/dev/null || true")
            if str(current.stdout or "").strip() != wanted:
                data = await asyncio.to_thread(pack, job.worktree, files)
                await self._upload_base(connection, host, data, wanted)
            host.synced = wanted

    async def _upload_base(self, connection: Any, host: _Host, data: bytes, wanted: str) -> None:
        root = host.root
        script = (
            f"mkdir -p {root} && rm -rf {root}/base.new && mkdir {root}/base.new && "
            f"tar -xzf - -C {root}/base.new && rm -rf {root}/base && "
            f"mv {root}/base.new {root}/base && printf %s {q(wanted)} > {root}/base.id"
        )
        asyncssh = asyncssh_module()
        try:
            process = await connection.create_process(script, encoding=None)
            for start in range(0, len(data), _CHUNK):
                process.stdin.write(data[start : start + _CHUNK])
                await process.stdin.drain()
            process.stdin.write_eof()
            result = await asyncio.wait_for(process.wait(), COMMAND_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as error:
            raise Lost(
                f"copying the project to {host.address.text} failed: {plain(error)}"
            ) from None
        if result.exit_status != 0:
            message = (result.stderr or b"").decode("utf-8", errors="replace").strip()
            raise Lost(f"copying the project to {host.address.text} failed: {message}")

    async def _execute(
        self,
        connection: Any,
        state: _SlotState,
        job: Job,
        slot: Slot,
        sink: OutputSink,
        control: RunControl,
        hardware: dict[str, Any],
    ) -> RunOutcome:
        asyncssh = asyncssh_module()
        token = uuid.uuid4().hex
        # Not derived from the token the command receives: a marker it cannot rebuild.
        marker = f"@@ratchet-{uuid.uuid4().hex}@@"
        host = state.host
        address = host.address.text
        request = run_request(host.path, state.folder, job, slot, token, marker, self._sandbox)
        started = time.monotonic()
        try:
            process = await connection.create_process(wrapper_command("ssh", token), encoding=None)
            process.stdin.write(wrapper_input(request).encode())
            process.stdin.write_eof()
        except (OSError, asyncssh.Error) as error:
            state.connection = None
            message = f"could not start the run on {address}: {plain(error)}"
            sink.say(f"[ratchet] lost: {message}")
            return outcome_of(None, list(sink.tail), hardware, lost=message)
        reports, said = Reports(marker), deque[str](maxlen=5)
        timed_out, stopped, problem = await self._follow(
            connection, state, process, job, sink, control, token, reports, said
        )
        problem = problem or _problem(reports, said, process, address, state.folder)
        if problem is not None:
            if connection.is_closed():
                state.connection = None
            else:  # the connection lives: end what the run left behind now
                await self._end(connection, state, token)
            if not (timed_out or stopped):
                sink.say(f"[ratchet] lost: {problem}")
        sink.flush()
        return outcome_of(
            reports.get("end"),
            list(sink.tail),
            hardware,
            wall=time.monotonic() - started,
            timed_out=timed_out,
            stopped=stopped,
            lost=problem,
            forged=reports.forged,
        )

    async def _follow(
        self,
        connection: Any,
        state: _SlotState,
        process: Any,
        job: Job,
        sink: OutputSink,
        control: RunControl,
        token: str,
        reports: Reports,
        said: deque[str],
    ) -> tuple[bool, bool, str | None]:
        """The run's output and the wrapper's reports, read until the run ends, its time is up
        or it is stopped (the host then stops it): (timed out, stopped, why the connection
        dropped mid-run)."""
        asyncssh = asyncssh_module()
        reader = asyncio.create_task(self._stream(process, sink))
        reporting = asyncio.create_task(_read_reports(process.stderr, reports, said))
        problem: str | None = None
        try:
            limit = job.timeout_s + CLIENT_SLACK_S
            timed_out, stopped = await wait_for_end(reader, control, limit)
            if timed_out or stopped:
                await self._stop(connection, state, token)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), KILL_GRACE_S + 10)
            if reader.done() and not reader.cancelled() and reader.result() is not None:
                address = state.host.address.text
                problem = f"the connection to {address} dropped mid-run: {reader.result()}"
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                await asyncio.wait_for(process.wait_closed(), 10)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reporting), 5)
        except asyncio.CancelledError:
            await asyncio.shield(self._end(connection, state, token))
            raise
        finally:
            for task in (reader, reporting):
                if not task.done():
                    task.cancel()
        return timed_out, stopped, problem

    @staticmethod
    async def _stream(process: Any, sink: OutputSink) -> str | None:
        """Copies the command's output to the run's sink; returns why it broke off (the
        connection failed), or None at the end of the output."""
        asyncssh = asyncssh_module()
        try:
            while chunk := await process.stdout.read(_CHUNK):
                sink.feed(chunk)
        except (OSError, asyncssh.Error) as error:
            return plain(error)
        return None

    async def _stop(self, connection: Any, state: _SlotState, token: str) -> None:
        """Asks the run's wrapper to stop it (it kills the run and reports); quietly does
        nothing if the connection is gone (the next run on the slot ends it)."""
        with contextlib.suppress(Lost):
            await run_command(connection, stop_script(state.host.path, state.folder, token))

    async def _end(self, connection: Any, state: _SlotState, token: str) -> None:
        """Ends a run that did not report: its wrapper, then all that carries its token."""
        request = end_request(state.host.path, state.folder, token)
        with contextlib.suppress(Lost):
            await run_command(connection, wrapper_command("end", token), wrapper_input(request))


def _problem(
    reports: Reports, said: deque[str], process: Any, address: str, folder: str
) -> str | None:
    """Why the run's outcome is unknown (lost), or None when its wrapper reported its end."""
    if (failed := reports.get("fail")) is not None:
        return f"could not ready {address}:{folder}: {failed.get('message')}"
    if reports.get("end") is not None:
        return None
    signal = process.exit_signal
    if signal is not None:
        return f"the remote run on {address} was killed (signal {signal[0]})"
    if process.exit_status is None:
        return f"the connection to {address} dropped mid-run"
    last = f": {said[-1]}" if said else ""
    return f"the remote run on {address} ended before it reported back{last}"


async def _read_reports(stream: Any, reports: Reports, said: deque[str]) -> None:
    """The wrapper's stderr: its reports, and what else it said (a Python error)."""
    splitter = LineSplitter()
    with contextlib.suppress(Exception):  # a broken connection: the report stops here
        while chunk := await stream.read(_CHUNK):
            for line in splitter.feed(chunk):
                if not reports.take(line):
                    said.append(line)
    for line in splitter.flush():
        if not reports.take(line):
            said.append(line)


def _interleave(groups: list[list[Slot]]) -> list[list[Slot]]:
    rounds: list[list[Slot]] = []
    for index in range(max((len(g) for g in groups), default=0)):
        rounds.append([g[index] for g in groups if index < len(g)])
    return rounds
