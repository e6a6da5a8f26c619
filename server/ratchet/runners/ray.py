"""Runs experiments as jobs on a Ray cluster (the Ray Jobs API at `[runner] address`).

Each experiment is one job: its working_dir is the experiment's worktree (Ray uploads it, and
the cluster's own scheduler puts it on a node), with one GPU reserved on GPU clusters
(`entrypoint_num_gpus=1`) or one CPU on CPU clusters. Slots are as many as the cluster offers
(GPUs, else CPUs), capped by `max_slots`. Logs are tailed live; at timeout or stop the job is
stopped with `stop_job`. A job the cluster loses (its node or its supervisor died, stopped by
someone else) comes back `lost`, for the engine to re-queue.

The job's entrypoint is the run wrapper (wrapper.py, shipped as text with remote_run.py's
BOOT): the same functions as every other runner, reporting on marker lines of the job's log
that never reach the log file or the metric reader.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunnerConfig, SandboxConfig
from ..errors import RatchetError
from .base import Job, OnLine, RunControl, RunOutcome, Slot, outcome_of
from .launch import run_spec
from .output import OutputSink, Reports
from .remote_run import BOOT, module_texts

POLL_S = 0.25
CONTACT_LOST_S = 30.0  # the dashboard unanswered this long mid-run: lost
_ENDED = ("SUCCEEDED", "FAILED", "STOPPED")  # a job in one of these runs no more
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


class _JobLog:
    """The job's log as it arrives (text, from Ray): output lines to the log file and the
    engine, the wrapper's marker lines to its reports."""

    def __init__(self, job: Job, marker: str, on_line: OnLine) -> None:
        self.reports = Reports(marker)
        self.sink = OutputSink(job.log_path, on_line, job.secrets, self.reports)
        self.received = 0  # characters of the job's log seen so far
        self.started_at: float | None = None
        self._closed = False

    def feed(self, text: str) -> None:
        self.received += len(text)
        self.sink.feed(text.encode("utf-8"))
        if self.started_at is None and self.reports.get("start") is not None:
            self.started_at = time.monotonic()

    def tail(self) -> list[str]:
        return list(self.sink.tail)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sink.close()


@dataclass
class _Watched:
    """What watching a job saw: its last status, when it was submitted and began running,
    and whether its time ran out, it was stopped, or it was lost (why)."""

    submitted: float
    status: str = "PENDING"
    running_since: float | None = None
    timed_out: bool = False
    stopped: bool = False
    lost: str | None = None


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

    def _runtime_env(self, job: Job, slot: Slot, marker: str, token: str) -> dict[str, Any]:
        # The cluster stops the job at timeout_s (stop_job); the node itself a second later.
        spec = run_spec(job, slot, token, self._sandbox, timeout_s=job.timeout_s + 1)
        links = _links(job.worktree)
        request = {"marker": marker, "drop": list(job.drop), "gpu": self._gpu, "spec": spec}
        request["links"] = links
        env_vars = {
            "RATCHET_BOOT": BOOT,
            "RATCHET_MODULES": json.dumps(module_texts()),
            "RATCHET_RUN": json.dumps(request, default=vars),
        }
        # Ray's upload follows links: they travel as links in the request instead.
        excludes = [".git", *(f"/{path}" for path in links)]
        return {"working_dir": str(job.worktree), "excludes": excludes, "env_vars": env_vars}

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        client = self._client
        if client is None:
            raise RatchetError("the ray runner is not open")
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        # Not derived from the token the command receives: a marker it cannot rebuild.
        marker = f"@@ratchet-{uuid.uuid4().hex}@@"
        stream = _JobLog(job, marker, on_line)
        digest = hashlib.sha256(str(job.worktree).encode()).hexdigest()[:6]
        submission_id = f"ratchet-{job.experiment}-{digest}-{token[:8]}"
        entrypoint = (
            '"$(command -v python3 || command -v python)" -c "$RATCHET_BOOT" ray '
            + shlex.quote(token)
            + " "
            + shlex.quote(job.command)  # not read: the job's command, for `ray job list`
        )
        resources = {"entrypoint_num_gpus": 1} if self._gpu else {"entrypoint_num_cpus": 1}
        try:
            if control.stopped.is_set():
                return outcome_of(None, stream.tail(), {}, stopped=True)
            try:
                await asyncio.to_thread(
                    client.submit_job,
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    runtime_env=self._runtime_env(job, slot, marker, token),
                    metadata={
                        "ratchet_project": self._project,
                        "ratchet_experiment": str(job.experiment),
                        "ratchet_slot": slot.name,
                    },
                    **resources,
                )
            except Exception as error:
                lost = f"the Ray cluster at {self._address} refused the job: {_plain(error)}"
                stream.sink.say(f"[ratchet] lost: {lost}")
                return outcome_of(None, stream.tail(), {}, lost=lost)
            return await self._follow(client, submission_id, job, stream, control)
        finally:
            stream.close()

    async def _follow(
        self,
        client: Any,
        submission_id: str,
        job: Job,
        stream: _JobLog,
        control: RunControl,
    ) -> RunOutcome:
        tailer = asyncio.create_task(self._tail(client, submission_id, stream))
        try:
            watched = await self._watch(client, submission_id, job, control)
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
        stream.sink.flush()
        return await self._outcome(client, submission_id, stream, watched)

    async def _watch(
        self, client: Any, submission_id: str, job: Job, control: RunControl
    ) -> _Watched:
        """The job's status, asked every POLL_S (Ray pushes none) until it ends, its time is
        up, it is stopped, or the cluster stops answering; the job is stopped in the last
        three cases."""
        w = _Watched(submitted=time.monotonic())
        unanswered_since: float | None = None
        while True:
            try:
                w.status = _status(await asyncio.to_thread(client.get_job_status, submission_id))
                unanswered_since = None
            except Exception as error:
                now = time.monotonic()
                unanswered_since = unanswered_since or now
                if now - unanswered_since > CONTACT_LOST_S:
                    w.lost = f"lost contact with the Ray cluster: {_plain(error)}"
                    return w
            if w.status in _ENDED:
                return w
            now = time.monotonic()
            if w.status == "RUNNING" and w.running_since is None:
                w.running_since = now
            clock = w.running_since if w.running_since is not None else w.submitted
            limit = job.timeout_s if w.running_since is not None else job.timeout_s + 120
            if now - clock > limit or control.stopped.is_set():
                w.timed_out = not control.stopped.is_set()
                w.stopped = not w.timed_out
                if w.running_since is None and w.timed_out:
                    w.lost = "the cluster did not start the job in time"
                    w.timed_out = False
                await self._stop(client, submission_id)
                w.status = await self._wait_terminal(client, submission_id)
                return w
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(control.stopped.wait(), POLL_S)

    async def _outcome(
        self, client: Any, submission_id: str, stream: _JobLog, w: _Watched
    ) -> RunOutcome:
        """The run's outcome from the wrapper's reports and what the cluster says of the job:
        a job that ended with no answer is `lost` (and stopped, if it still runs)."""
        info: Any = None
        with contextlib.suppress(Exception):
            info = await asyncio.to_thread(client.get_job_info, submission_id)
        lost = w.lost
        if lost is None and not (w.timed_out or w.stopped):
            lost = self._lost_reason(w.status, info, stream)
        if lost is not None:
            if w.status not in _ENDED:
                await self._stop(client, submission_id)
            if not (w.timed_out or w.stopped):
                stream.sink.say(f"[ratchet] lost: {lost}")
        start = stream.started_at or w.running_since or w.submitted
        hardware = {**self._hardware(stream, info), "sandbox": self._sandbox.kind}
        return outcome_of(
            stream.reports.get("end"),
            stream.tail(),
            hardware,
            wall=time.monotonic() - start,
            timed_out=w.timed_out,
            stopped=w.stopped,
            lost=lost,
            forged=stream.reports.forged,
        )

    def _lost_reason(self, status: str, info: Any, stream: _JobLog) -> str | None:
        """Why a job that ended on its own is `lost`, or None if it ran to an answer."""
        error_type = getattr(info, "error_type", None)
        error_type = getattr(error_type, "value", error_type)
        message = getattr(info, "message", None) or ""
        if status == "STOPPED":
            return "the job was stopped outside Ratchet (`ray job stop` or the dashboard)"
        if status == "FAILED" and error_type in _LOST_ERRORS:
            return f"the cluster lost the job ({error_type}): {message}".rstrip(": ")
        if stream.reports.get("end") is None:
            # The wrapper never reported back: its process died under it (a node going away,
            # an OOM killer on the node), so the run's outcome is unknown.
            return f"the job's process on the cluster died ({status}): {message}".rstrip(": ")
        return None

    def _hardware(self, stream: _JobLog, info: Any) -> dict[str, Any]:
        hardware: dict[str, Any] = dict((stream.reports.get("start") or {}).get("hardware") or {})
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

    async def _tail(self, client: Any, submission_id: str, stream: _JobLog) -> None:
        with contextlib.suppress(Exception):
            async for text in client.tail_job_logs(submission_id):
                stream.feed(text)

    async def _catch_up(self, client: Any, submission_id: str, stream: _JobLog) -> None:
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
            if status in _ENDED:
                break
            await asyncio.sleep(POLL_S)
        return status


def _links(worktree: Path) -> dict[str, str]:
    """The symbolic links in the job's folder (outside .git), by path: their targets."""
    found = {}
    for top, dirs, files in os.walk(worktree):
        dirs[:] = [d for d in dirs if d != ".git" or top != str(worktree)]
        for name in [*files, *dirs]:
            full = os.path.join(top, name)
            if os.path.islink(full):
                found[os.path.relpath(full, worktree)] = os.readlink(full)
    return found


def _plain(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text or type(error).__name__


def _status(value: Any) -> str:
    return str(getattr(value, "value", value)).rsplit(".", 1)[-1]
