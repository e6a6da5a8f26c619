"""`[track] mlflow`: each loop an MLflow experiment, each Ratchet experiment an MLflow run.

The loop never waits for the tracker: a finished experiment is put on a bounded queue and a
background thread logs it with MlflowClient. A tracker that is down is retried with backoff
and said once (a TrackerUnavailable event and a warning); when the queue is full the oldest
pending run is dropped and counted, so memory stays bounded on a night-long outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import RatchetError
from .events import Event, ExperimentFinished
from .experiment import Experiment, Status

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0
_CONSTANT = re.compile(r"^([-+])\s*([A-Z][A-Z0-9_]*)\s*(?::[^=]*)?=\s*(.+?)\s*(#.*)?$")
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
MLFLOW_EXTRA = "pip install 'ratchet[mlflow]'"


@dataclass(frozen=True)
class TrackerUnavailable(Event):
    """The tracker cannot be reached; said once per outage. Runs are retried meanwhile."""

    message: str


@dataclass
class _Item:
    experiment: Experiment
    runs: list[float | None] = field(default_factory=list)
    run_id: str | None = None  # set once the MLflow run exists, so a retry does not repeat it


def redact(uri: str) -> str:
    """A tracking URI fit to print: any user:password in it removed."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def changed_constants(diff: str) -> dict[str, str]:
    """UPPER_CASE = value lines a diff changed: the experiment's params, as new values."""
    params: dict[str, str] = {}
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            continue
        match = _CONSTANT.match(line)
        if match and match.group(1) == "+":
            params[match.group(2)] = match.group(3)[:250]
    return params


def metric_key(name: str) -> str:
    return _UNSAFE_KEY.sub("_", name)[:250] or "metric"


class MlflowTracker:
    """Logs finished experiments to MLflow from a thread of its own."""

    def __init__(
        self,
        uri: str,
        experiment_name: str,
        metric_name: str,
        runs_of: Callable[[int], list[float | None]] | None = None,
        say: Callable[[str], None] | None = None,
        queue_size: int = QUEUE_SIZE,
        artifact_location: str | None = None,
    ) -> None:
        self.uri = uri
        self.artifact_location = artifact_location
        self.experiment_name = experiment_name
        self.metric_name = metric_name
        self._runs_of = runs_of
        self._say = say or (lambda message: None)
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._down = False
        self.dropped = 0
        self.logged = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="ratchet-mlflow", daemon=True)
        self._thread.start()

    # --- the loop's side: never blocks -------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, ExperimentFinished):
            self.submit(event.experiment)

    def submit(self, experiment: Experiment) -> None:
        item = _Item(experiment)
        if self._runs_of is not None:
            # One indexed read on the loop's thread: the ledger may be closed by the time
            # the thread gets to it.
            with contextlib.suppress(Exception):
                item.runs = self._runs_of(experiment.id)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()  # the oldest goes: the newest matter most
                    self.dropped += 1

    def close(self, timeout_s: float = 15.0) -> int:
        """Logs what is queued within the deadline (a short one while the tracker is down);
        returns how many runs were not logged."""
        if self._down:
            timeout_s = min(timeout_s, 2.0)
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.0, timeout_s))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stopping.set()
        self._thread.join(2.0)
        return self._queue.qsize() + self.dropped + (1 if self._thread.is_alive() else 0)

    # --- the thread's side --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                # Timed: close() may fail to queue its None (a full queue), and sets this.
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if item is None:
                return
            self._log_with_retries(item)
            if self._stopping.is_set():
                return

    def _log_with_retries(self, item: _Item) -> None:
        wait = RETRY_FIRST_S
        while not self._stopping.is_set():
            try:
                self._log(item)
            except Exception as error:
                if not self._down:
                    self._down = True
                    self._say(
                        f"MLflow at {redact(self.uri)} is unreachable ({_short(error)}); "
                        "the loop goes on and its runs are retried in the background"
                    )
                self._stopping.wait(wait)
                wait = min(RETRY_MAX_S, wait * 2)
                continue
            if self._down:
                self._down = False
                self._say(f"MLflow at {redact(self.uri)} is reachable again; logging resumed")
            self.logged += 1
            return

    def _connect(self) -> Any:
        if self._client is None:
            # The client's own retries would hold one call for minutes; ours go on forever.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        if self._experiment_id is None:
            found = self._client.get_experiment_by_name(self.experiment_name)
            self._experiment_id = (
                found.experiment_id
                if found is not None
                else self._client.create_experiment(
                    self.experiment_name,
                    artifact_location=self.artifact_location,
                    # Opens in the UI's "model training" view (runs, metrics), not GenAI's.
                    tags={"mlflow.experimentKind": "custom_model_development"},
                )
            )
        return self._client

    def _log(self, item: _Item) -> None:
        client = self._connect()
        exp = item.experiment
        if item.run_id is None:
            run = client.create_run(
                self._experiment_id,
                start_time=int((exp.started_at or time.time()) * 1000),
                tags=_tags(exp),
                run_name=f"exp {exp.id}: {' '.join(exp.description.split())[:80]}",
            )
            item.run_id = run.info.run_id
        self._log_values(client, item)
        self._log_artifacts(client, item)
        finished = exp.status in (Status.KEPT, Status.DISCARDED)
        client.set_terminated(
            item.run_id,
            status="FINISHED" if finished else "FAILED",
            end_time=int((exp.finished_at or time.time()) * 1000),
        )

    def _log_values(self, client: Any, item: _Item) -> None:
        from mlflow.entities import Metric, Param

        exp, now = item.experiment, int(time.time() * 1000)
        params = changed_constants(exp.diff) or {"description": exp.description[:500] or "-"}
        metrics = [Metric(metric_key(k), float(v), now, 0) for k, v in exp.secondary.items()]
        if exp.metric is not None:
            metrics.append(Metric(metric_key(self.metric_name), exp.metric, now, 0))
        repeats = metric_key(f"{self.metric_name}_run")
        for step, value in enumerate(item.runs):
            if value is not None:
                metrics.append(Metric(repeats, float(value), now, step))
        for name in ("run_s", "agent_s", "cost_usd"):
            metrics.append(Metric(name, float(getattr(exp, name) or 0.0), now, 0))
        client.log_batch(
            item.run_id,
            metrics=metrics,
            params=[Param(metric_key(k), str(v)) for k, v in params.items()],
        )

    def _log_artifacts(self, client: Any, item: _Item) -> None:
        exp = item.experiment
        with tempfile.TemporaryDirectory(prefix="ratchet-mlflow-") as scratch:
            diff = Path(scratch) / "diff.patch"
            diff.write_text(exp.diff or "(no change)\n", encoding="utf-8")
            client.log_artifact(item.run_id, str(diff))
            source = Path(exp.log_path) if exp.log_path else None
            log_file = Path(scratch) / "run.log"
            if source is not None and source.is_file():
                log_file.write_bytes(source.read_bytes()[-2_000_000:])
            else:
                log_file.write_text(exp.log_tail or "", encoding="utf-8")
            client.log_artifact(item.run_id, str(log_file))


def _tags(exp: Experiment) -> dict[str, str]:
    tags = {
        "ratchet.experiment": str(exp.id),
        "ratchet.loop": exp.tag,
        "ratchet.status": str(exp.status),
        "ratchet.commit": exp.commit or "",
        "ratchet.reason": exp.reason[:4000],
        "ratchet.agent": exp.agent,
        "ratchet.source": exp.source,
        "mlflow.note.content": exp.description[:4000],
    }
    for key, value in exp.hardware.items():
        if value is not None:
            tags[f"ratchet.hardware.{metric_key(str(key))}"] = str(value)[:500]
    return tags


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:160]


def local_store(uri: str, root: Path) -> tuple[str, str | None]:
    """A relative `sqlite:///name.db` is the project's (beside ratchet.toml, whatever the
    current folder), and so are its artifacts (mlruns/ beside it); other URIs as they are."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :].startswith("/"):
        return uri, None
    database = (root / uri[len(prefix) :]).resolve()
    return prefix + str(database), (database.parent / "mlruns").as_uri()


def attach(engine: Any) -> Callable[..., int]:
    """Starts tracking an engine's experiments when its config has `[track] mlflow`; returns
    the call that stops it (it logs what is queued, within a deadline). A no-op otherwise."""
    track = getattr(engine.config, "track", None)
    uri = getattr(track, "mlflow", None)
    if not uri:
        return lambda timeout_s=0.0: 0
    if importlib.util.find_spec("mlflow") is None:
        raise RatchetError(f"[track] mlflow needs MLflow installed: {MLFLOW_EXTRA}")
    loop_of_events: list[asyncio.AbstractEventLoop] = []

    def say(message: str) -> None:
        log.info("%s", message)
        if loop_of_events and not loop_of_events[0].is_closed():
            with contextlib.suppress(RuntimeError):
                loop_of_events[0].call_soon_threadsafe(engine.bus.emit, TrackerUnavailable(message))

    uri, artifacts = local_store(uri, Path(engine.config.root))
    tracker = MlflowTracker(
        uri,
        getattr(track, "experiment", None) or f"ratchet/{engine.tag}",
        engine.config.metric.name,
        runs_of=lambda exp_id: [run["metric"] for run in engine.ledger.runs(engine.tag, exp_id)],
        say=say,
        artifact_location=artifacts,
    )

    def on_event(event: Event) -> None:
        if not loop_of_events:
            with contextlib.suppress(RuntimeError):
                loop_of_events.append(asyncio.get_running_loop())
        tracker.on_event(event)

    unsubscribe = engine.bus.subscribe(on_event)

    def detach(timeout_s: float = 15.0) -> int:
        unsubscribe()
        return tracker.close(timeout_s)

    return detach
