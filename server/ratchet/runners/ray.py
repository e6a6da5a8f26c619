"""Runs experiments as jobs on a Ray cluster (the Ray Jobs API at `[runner] address`).

Each experiment is one job: its working_dir is the experiment's worktree (Ray uploads it, and
the cluster's own scheduler puts it on a node), with one GPU reserved on GPU clusters
(`entrypoint_num_gpus=1`) or one CPU on CPU clusters. Slots are as many as the cluster offers
(GPUs, else CPUs), capped by `max_slots`. Logs are tailed live; at timeout or stop the job is
stopped with `stop_job`. A job the cluster loses (its node or its supervisor died, stopped by
someone else) comes back `lost`, for the engine to re-queue.

The job's entrypoint is a small stdlib-only Python wrapper around the command: it hashes the
locked files before and after, gives the command its environment (budget, experiment, run
token, no GPU on CPU clusters), kills what the command leaves behind, and reports on marker
lines that never reach the log or the metric reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shlex
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from ..config import RunnerConfig, SandboxConfig
from ..errors import RatchetError
from .base import Job, OnLine, RunControl, RunOutcome, Slot
from .local import TAIL_LINES, LineSplitter, LogWriter
from .processes import TOKEN_VARIABLE
from .ray_job import WRAPPER
from .safe_files import changed_files
from .sandbox import remote_source
from .sandbox_init import INIT_SH

POLL_S = 0.25
CONTACT_LOST_S = 30.0  # the dashboard unanswered this long mid-run: lost
STOP_WAIT_S = 15.0
NODES_WAIT_S = 15.0

# Node deaths and infrastructure failures: the run's outcome is unknown, not the edit's fault.
_LOST_ERRORS = {
    "RUNTIME_ENV_SETUP_FAILURE",
    "JOB_SUPERVISOR_ACTOR_START_TIMEOUT",
    "JOB_SUPERVISOR_ACTOR_START_FAILURE",
    "JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE",
    "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE",
    "JOB_SUPERVISOR_ACTOR_DIED",
}


def _ray() -> Any:
    try:
        from ray import job_submission
    except ImportError:
        raise RatchetError(
            "the ray runner needs Ray's job client: `pip install 'ratchet[ray]'` in Ratchet's "
            "environment (the same Ray version as the cluster)"
        ) from None
    return job_submission


def _normalise(address: str) -> str:
    address = address.strip().rstrip("/")
    return address if "://" in address else f"http://{address}"


class _Stream:
    """The job's log as it arrives: lines to the engine and the log file, marker lines to
    the report."""

    def __init__(self, job: Job, marker: str, on_line: OnLine, tail: deque[str]) -> None:
        self.marker = marker
        self.on_line = on_line
        self.tail = tail
        self.splitter = LineSplitter()
        self.log = LogWriter(job.log_path, job.secrets)
        self.received = 0  # characters of the job's log seen so far
        self.start: dict[str, Any] | None = None
        self.end: dict[str, Any] | None = None
        self.started_at: float | None = None
        self.markers = {"start": 0, "end": 0}  # more than one of either: a forged report

    def feed(self, text: str) -> None:
        self.received += len(text)
        for line in self.splitter.feed(text.encode("utf-8")):
            self._line(line)
        self.log.flush()

    def flush(self) -> None:
        for line in self.splitter.flush():
            self._line(line)

    def _line(self, line: str) -> None:
        if line.startswith(self.marker + " "):
            kind, _, value = line[len(self.marker) + 1 :].partition(" ")
            with contextlib.suppress(ValueError):
                data = json.loads(value)
                if kind in self.markers:
                    self.markers[kind] += 1
                if kind == "start" and self.start is None:
                    self.start, self.started_at = data, time.monotonic()
                elif kind == "end":
                    self.end = data
            return
        clean = self.log.line(line)
        self.tail.append(clean)
        self.on_line(clean)

    def say(self, line: str) -> None:
        clean = self.log.line(line)
        self.log.flush()
        self.tail.append(clean)
        self.on_line(clean)

    @property
    def forged(self) -> bool:
        return any(count > 1 for count in self.markers.values())

    def close(self) -> None:
        self.log.close()


class RayRunner:
    kind = "ray"

    def __init__(
        self, config: RunnerConfig, project: Path, sandbox: SandboxConfig | None = None
    ) -> None:
        self._sandbox = sandbox or SandboxConfig(kind="none")
        if self._sandbox.kind == "bwrap" and self._sandbox.hosts:
            raise RatchetError(
                "[sandbox] hosts works with the local runner only for now; "
                'run such a loop with [runner] kind = "local"'
            )
        if not config.address:
            raise RatchetError(
                'the ray runner needs `address` in [runner], e.g. "http://127.0.0.1:8265"'
            )
        self._config = config
        self._address = _normalise(config.address)
        self._project = project.resolve().name or "project"
        self._client: Any = None
        self._gpu = False
        self._nodes: dict[str, dict[str, Any]] = {}

    async def open(self) -> list[Slot]:
        submission = await asyncio.to_thread(_ray)
        # Ray's client logs each upload to stderr; the loop's own view says what matters.
        for name in (
            "ray.dashboard.modules.dashboard_sdk",
            "ray.dashboard.modules.job.sdk",
            "ray._private.runtime_env.packaging",
            "ray._private.runtime_env.working_dir",
        ):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            self._client = await asyncio.to_thread(submission.JobSubmissionClient, self._address)
        except Exception as error:  # ray raises ConnectionError, RuntimeError, ValueError...
            raise RatchetError(
                f"cannot reach the Ray cluster at {self._address}: {_plain(error)}. Start a "
                "head (`ray start --head`) or fix [runner] address (the dashboard's http "
                "address, port 8265 by default)"
            ) from None
        totals = await self._resources()
        gpus, cpus = int(totals.get("GPU", 0)), int(totals.get("CPU", 0))
        self._gpu = gpus > 0
        count = gpus if self._gpu else max(1, cpus)
        if self._config.max_slots is not None:
            count = min(count, self._config.max_slots)
        return [Slot(name=f"ray/{index}", host=self._address) for index in range(count)]

    async def _resources(self) -> dict[str, float]:
        """Total resources of the cluster's live nodes (waits a little for a fresh head)."""
        deadline = time.monotonic() + NODES_WAIT_S
        problem = "it lists no live node"
        while True:
            try:
                nodes = await asyncio.to_thread(self._list_nodes)
            except Exception as error:
                nodes, problem = [], _plain(error)
            if nodes:
                break
            if time.monotonic() > deadline:
                raise RatchetError(
                    f"cannot count the slots of the Ray cluster at {self._address}: {problem}"
                )
            await asyncio.sleep(0.5)
        totals: dict[str, float] = {}
        for node in nodes:
            self._nodes[node["node_id"]] = node
            for name, amount in (node.get("resources_total") or {}).items():
                totals[name] = totals.get(name, 0.0) + float(amount)
        return totals

    def _list_nodes(self) -> list[dict[str, Any]]:
        from ray.util.state import list_nodes

        nodes = list_nodes(address=self._address, detail=True, raise_on_missing_output=False)
        result = []
        for node in nodes:
            data = node if isinstance(node, dict) else getattr(node, "__dict__", {})
            if data.get("state") == "ALIVE":
                result.append(dict(data))
        return result

    async def close(self) -> None:
        self._client = None

    # --- one experiment ----------------------------------------------------------------------

    def _runtime_env(self, job: Job, marker: str, token: str) -> dict[str, Any]:
        env = dict(job.env)
        env.update(
            RATCHET_TIME_BUDGET=f"{job.budget_s:g}",
            RATCHET_EXPERIMENT=str(job.experiment),
            PYTHONUNBUFFERED="1",
        )
        sandbox = self._sandbox
        if sandbox.kind == "bwrap":
            env.update({k: v for k in sandbox.env if (v := os.environ.get(k))})
        run = {
            "marker": marker,
            "token": token,
            "token_variable": TOKEN_VARIABLE,
            "locked": list(job.locked),
            "consumable": list(job.consumable),
            "drop": list(job.drop),
            "timeout": job.timeout_s + 1,  # the client stops it at timeout_s; the node too
            "gpu": self._gpu,
            "env": env,
            "init": INIT_SH,
            "sandbox": {
                "read": list(sandbox.read),
                "write": list(sandbox.write),
                "env": list(sandbox.env),
                "network": sandbox.network,
                "max_processes": sandbox.max_processes,
            }
            if sandbox.kind == "bwrap"
            else None,
        }
        env_vars = {"RATCHET_RAY_RUN": json.dumps(run), "RATCHET_RAY_WRAPPER": WRAPPER}
        if sandbox.kind == "bwrap":
            env_vars["RATCHET_RAY_SANDBOX"] = remote_source()
        return {"working_dir": str(job.worktree), "excludes": [".git"], "env_vars": env_vars}

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        client = self._client
        if client is None:
            raise RatchetError("the ray runner is not open")
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        token = uuid.uuid4().hex
        # Not derived from the token the command receives: a marker it cannot rebuild.
        marker = f"@@ratchet-{uuid.uuid4().hex}@@"
        stream = _Stream(job, marker, on_line, tail)
        digest = hashlib.sha256(str(job.worktree).encode()).hexdigest()[:6]
        submission_id = f"ratchet-{job.experiment}-{digest}-{token[:8]}"
        entrypoint = (
            '"$(command -v python3 || command -v python)" -c "$RATCHET_RAY_WRAPPER" '
            + shlex.quote(job.command)
        )
        resources = {"entrypoint_num_gpus": 1} if self._gpu else {"entrypoint_num_cpus": 1}
        try:
            if control.stopped.is_set():
                return self._outcome(stream, tail, stopped=True)
            try:
                await asyncio.to_thread(
                    client.submit_job,
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    runtime_env=self._runtime_env(job, marker, token),
                    metadata={
                        "ratchet_project": self._project,
                        "ratchet_experiment": str(job.experiment),
                        "ratchet_slot": slot.name,
                    },
                    **resources,
                )
            except Exception as error:
                lost = f"the Ray cluster at {self._address} refused the job: {_plain(error)}"
                stream.say(f"[ratchet] lost: {lost}")
                return self._outcome(stream, tail, lost=lost)
            return await self._follow(client, submission_id, job, stream, tail, control)
        finally:
            stream.close()

    async def _follow(
        self,
        client: Any,
        submission_id: str,
        job: Job,
        stream: _Stream,
        tail: deque[str],
        control: RunControl,
    ) -> RunOutcome:
        tailer = asyncio.create_task(self._tail(client, submission_id, stream))
        submitted = time.monotonic()
        running_since: float | None = None
        timed_out = stopped = False
        status = "PENDING"
        unanswered_since: float | None = None
        lost: str | None = None
        try:
            while True:
                try:
                    status = _status(await asyncio.to_thread(client.get_job_status, submission_id))
                    unanswered_since = None
                except Exception as error:
                    now = time.monotonic()
                    unanswered_since = unanswered_since or now
                    if now - unanswered_since > CONTACT_LOST_S:
                        lost = f"lost contact with the Ray cluster: {_plain(error)}"
                        break
                if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                    break
                now = time.monotonic()
                if status == "RUNNING" and running_since is None:
                    running_since = now
                clock = running_since if running_since is not None else submitted
                limit = job.timeout_s if running_since is not None else job.timeout_s + 120
                if now - clock > limit or control.stopped.is_set():
                    timed_out = not control.stopped.is_set()
                    stopped = not timed_out
                    if running_since is None and timed_out:
                        lost = "the cluster did not start the job in time"
                        timed_out = False
                    await self._stop(client, submission_id)
                    status = await self._wait_terminal(client, submission_id)
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(control.stopped.wait(), POLL_S)
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(client, submission_id))
            raise
        finally:
            # Ray's tail lingers seconds after the job ends; what it has not sent yet is
            # fetched at once below instead.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(tailer), 0.3)
            if not tailer.done():
                tailer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tailer
        await self._catch_up(client, submission_id, stream)
        stream.flush()
        info: Any = None
        with contextlib.suppress(Exception):
            info = await asyncio.to_thread(client.get_job_info, submission_id)
        if lost is None and not (timed_out or stopped):
            lost = self._lost_reason(status, info, stream)
        if lost is not None:
            if status not in ("SUCCEEDED", "FAILED", "STOPPED"):
                await self._stop(client, submission_id)
            if not (timed_out or stopped):
                stream.say(f"[ratchet] lost: {lost}")
        end = stream.end or {}
        exit_code = end.get("exit")
        if exit_code is None and info is not None:
            exit_code = getattr(info, "driver_exit_code", None)
        wall = end.get("wall")
        if wall is None:
            start = stream.started_at or running_since or submitted
            wall = time.monotonic() - start
        timed_out = timed_out or bool(end.get("timed_out"))
        before, refused = self._checked_before(job, stream)
        after = end.get("after", before)
        before = {k: v for k, v in before.items() if k in after}
        hardware = {**self._hardware(stream, info), "sandbox": self._sandbox.kind}
        return RunOutcome(
            exit_code=None if lost else exit_code,
            wall_s=float(wall),
            timed_out=timed_out,
            stopped=stopped,
            tail=list(tail),
            locked_changed=changed_files(before, after) if stream.end else [],
            leftover_processes=0 if (timed_out or stopped) else int(end.get("leftovers", 0)),
            lost=None if (timed_out or stopped) else lost,
            hardware=hardware,
            # killed by us: the sandbox had no chance to report, and nothing is judged anyway
            refused=None if (timed_out or stopped) else refused or end.get("refused"),
        )

    @staticmethod
    def _checked_before(job: Job, stream: _Stream) -> tuple[dict[str, str], str | None]:
        """The locked files' hashes the run started from, and why they are not believed."""
        before = dict((stream.start or {}).get("before", {}))
        if stream.forged:
            return before, "the run printed the wrapper's report markers: a forged report"
        if job.expected_locked is None:
            return before, None
        expected = {k: job.expected_locked.get(k, "missing") for k in before}
        if differ := changed_files(expected, before):
            return expected, "the locked files differ from the loop's start: " + ", ".join(differ)
        return expected, None

    def _lost_reason(self, status: str, info: Any, stream: _Stream) -> str | None:
        """Why a job that ended on its own is `lost`, or None if it ran to an answer."""
        error_type = getattr(info, "error_type", None)
        error_type = getattr(error_type, "value", error_type)
        message = getattr(info, "message", None) or ""
        if status == "STOPPED":
            return "the job was stopped outside Ratchet (`ray job stop` or the dashboard)"
        if status == "FAILED" and error_type in _LOST_ERRORS:
            return f"the cluster lost the job ({error_type}): {message}".rstrip(": ")
        if stream.end is None:
            # The wrapper never reported back: its process died under it (a node going away,
            # an OOM killer on the node), so the run's outcome is unknown.
            return f"the job's process on the cluster died ({status}): {message}".rstrip(": ")
        return None

    def _hardware(self, stream: _Stream, info: Any) -> dict[str, Any]:
        hardware: dict[str, Any] = dict((stream.start or {}).get("hardware") or {})
        node_id = getattr(info, "driver_node_id", None)
        node = self._nodes.get(node_id or "")
        if node_id:
            hardware["node_id"] = node_id
        if node is not None:
            hardware.setdefault("host", node.get("node_name") or node.get("node_ip"))
            hardware["node_ip"] = node.get("node_ip")
        hardware.setdefault("gpu", None)
        hardware.setdefault("gpu_count", 0)
        hardware.setdefault("driver", None)
        hardware["cluster"] = self._address
        return hardware

    async def _tail(self, client: Any, submission_id: str, stream: _Stream) -> None:
        with contextlib.suppress(Exception):
            async for text in client.tail_job_logs(submission_id):
                stream.feed(text)

    async def _catch_up(self, client: Any, submission_id: str, stream: _Stream) -> None:
        """Whatever of the log the live tail missed (a tail that broke off)."""
        try:
            logs = await asyncio.to_thread(client.get_job_logs, submission_id)
        except Exception:
            return
        if len(logs) > stream.received:
            stream.feed(logs[stream.received :])

    async def _stop(self, client: Any, submission_id: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(client.stop_job, submission_id)

    async def _wait_terminal(self, client: Any, submission_id: str) -> str:
        deadline = time.monotonic() + STOP_WAIT_S
        status = "RUNNING"
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                status = _status(await asyncio.to_thread(client.get_job_status, submission_id))
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            await asyncio.sleep(POLL_S)
        return status

    @staticmethod
    def _outcome(
        stream: _Stream, tail: deque[str], *, lost: str | None = None, stopped: bool = False
    ) -> RunOutcome:
        return RunOutcome(None, 0.0, False, stopped, list(tail), [], lost=lost)


def _plain(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text or type(error).__name__


def _status(value: Any) -> str:
    return str(getattr(value, "value", value)).rsplit(".", 1)[-1]
