"""[track] mlflow against a real `mlflow server` on loopback (one per module, started in its
own session and stopped as a group), read back with MlflowClient; a tracker that is down
is retried and said once; the MLflow UI's view of a loop drawn by headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MakeProject
from loops import engine_for, run
from ratchet.events import Event
from ratchet.experiment import Experiment, Status
from ratchet.tracking import MlflowTracker, TrackerUnavailable, attach, changed_constants
from reports import CHROMIUM_ARGS
from test_report import CONFIG, NOISY_TRAIN

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{folder / 'db.sqlite'}",
            "--default-artifact-root",
            str(folder / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=open(folder / "server.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        _stop_group(server)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """The server and every worker it started (its whole session)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class SwitchableProxy:
    """A TCP forwarder to the server that refuses every connection while `up` is False."""

    def __init__(self, target_port: int) -> None:
        self.up = False
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self.listener.close()


def _project(make_project: MakeProject, uri: str, name: str) -> Path:
    config = CONFIG + f'\n[track]\nmlflow = "{uri}"\nexperiment = "{name}"\n'
    return make_project(train=NOISY_TRAIN, config=config)


async def test_each_experiment_is_an_mlflow_run(make_project: MakeProject, mlflow_uri: str) -> None:
    root = _project(make_project, mlflow_uri, "loop-read-back")
    engine = engine_for(root)
    detach = attach(engine)
    await run(engine, 10)
    assert detach(timeout_s=120) == 0  # a loaded machine: a slow server
    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("loop-read-back")
    runs = {
        r.data.tags["ratchet.experiment"]: r for r in client.search_runs([experiment.experiment_id])
    }
    recorded = [e for e in engine.ledger.experiments("t") if e.status.is_final]
    assert sorted(runs, key=int) == [str(e.id) for e in recorded]
    for exp in recorded:
        logged = runs[str(exp.id)]
        assert logged.data.tags["ratchet.status"] == str(exp.status)
        assert logged.data.tags["ratchet.commit"] == (exp.commit or "")
        assert logged.data.tags["ratchet.hardware.cpu"] == exp.hardware["cpu"]
        assert logged.info.status == ("FINISHED" if exp.status.measured else "FAILED")
        if exp.metric is not None:  # logged as judged, when it ended (a best's level moves on)
            judged = exp.metric if exp.judged is None else exp.judged
            assert logged.data.metrics["score"] == pytest.approx(judged)
        repeats = [m.value for m in client.get_metric_history(logged.info.run_id, "score_run")]
        measured = [r["metric"] for r in engine.ledger.runs("t", exp.id) if r["metric"] is not None]
        assert sorted(repeats) == pytest.approx(sorted(measured))
        if exp.diff:
            assert logged.data.params == changed_constants(exp.diff)
        artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
        assert artifacts == {"diff.patch", "run.log"}
    baseline = runs["0"]
    assert len(client.get_metric_history(baseline.info.run_id, "score_run")) == 3


async def test_a_tracker_that_is_down_is_retried_and_said_once(
    make_project: MakeProject, mlflow_uri: str
) -> None:
    proxy = SwitchableProxy(int(mlflow_uri.rsplit(":", 1)[1]))
    root = _project(make_project, f"http://127.0.0.1:{proxy.port}", "loop-outage")
    engine = engine_for(root)
    said: list[str] = []
    engine.bus.subscribe(
        lambda e: said.append(e.message) if isinstance(e, TrackerUnavailable) else None
    )
    detach = attach(engine)
    try:
        started = time.monotonic()
        await run(engine, 6)
        assert time.monotonic() - started < 60
        assert [m for m in said if "unreachable" in m] == [said[0]] and len(said) == 1
        proxy.up = True
        client = MlflowClient(tracking_uri=mlflow_uri)
        deadline = time.monotonic() + 90
        while True:
            found = client.get_experiment_by_name("loop-outage")
            logged = client.search_runs([found.experiment_id]) if found else []
            if len(logged) == 6:
                break
            assert time.monotonic() < deadline, f"{len(logged)} of 6 runs logged after the outage"
            time.sleep(1)
    finally:
        assert detach(timeout_s=120) == 0  # a loaded machine: a slow server
        proxy.close()


def test_the_loops_side_never_waits_and_the_queue_is_bounded() -> None:
    tracker = MlflowTracker("http://127.0.0.1:9", "nowhere", "score", queue_size=10)
    exp = Experiment(0, "t", Status.DISCARDED, "LR 1 → 2", "mutate", "0" * 40, metric=1.0)
    started = time.perf_counter()
    for _ in range(2000):
        tracker.on_event(_finished(exp))
    assert time.perf_counter() - started < 0.5
    assert tracker.dropped >= 1990 - 1
    assert tracker.close(timeout_s=1) > 0


def _finished(exp: Experiment) -> Event:
    from ratchet.events import ExperimentFinished

    return ExperimentFinished(exp, best=None, baseline=None, new_best=False)


def test_mlflow_ui_shows_the_loop(mlflow_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("loop-read-back")
    if experiment is None:
        pytest.skip("needs the read-back loop of this module")
    if not shutil.which("chromium"):
        pytest.skip("needs Chromium (scripts/install-vscode-deps.sh installs it)")
    image = tmp_path / "mlflow.png"
    subprocess.run(
        [
            "chromium",
            *CHROMIUM_ARGS,
            "--window-size=1900,900",
            "--virtual-time-budget=20000",
            f"--screenshot={image}",
            f"{mlflow_uri}/#/experiments/{experiment.experiment_id}/runs",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert image.stat().st_size > 30_000
    shown = os.environ.get("RATCHET_KEEP_SCREENSHOTS")
    if shown:
        Path(shown).mkdir(parents=True, exist_ok=True)
        (Path(shown) / "mlflow.png").write_bytes(image.read_bytes())


async def test_a_local_sqlite_store_needs_no_server(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative sqlite:/// store is the project's, whatever the current folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    root = _project(make_project, "sqlite:///mlruns.db", "local-loop")
    engine = engine_for(root)
    detach = attach(engine)
    await run(engine, 3)
    assert detach(timeout_s=120) == 0  # a loaded machine: a slow server
    assert (root / "mlruns.db").is_file() and not list(elsewhere.iterdir())
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns.db'}")
    found = client.get_experiment_by_name("local-loop")
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 3
    baseline = next(r for r in runs if r.data.tags["ratchet.experiment"] == "0")
    assert len(client.get_metric_history(baseline.info.run_id, "score_run")) == 3
    assert {a.path for a in client.list_artifacts(baseline.info.run_id)} == {
        "diff.patch",
        "run.log",
    }
    assert (root / "mlruns").is_dir()
