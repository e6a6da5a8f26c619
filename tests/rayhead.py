"""A real local Ray head on 127.0.0.1 for the ray runner's tests, run as the tests' own child in
a session of its own. Stopped by that session, never with `ray stop` (which kills every Ray
process on the machine): SIGTERM to the session, then SIGKILL to whatever of it is left."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sshd import free_port


def ray_missing() -> str | None:
    """Why the tests cannot start a Ray head here, or None."""
    if shutil.which("ray") is None and not (Path(sys.executable).parent / "ray").exists():
        return "ray is not installed (pip install -e '.[test]' installs ray[default])"
    try:
        import ray.job_submission  # noqa: F401
    except ImportError as error:
        return f"ray's job submission client does not import: {error}"
    return None


def session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == str(sid) and parts[0] != str(os.getpid()):
            pids.append(int(parts[0]))
    return pids


@dataclass
class RayHead:
    folder: Path
    process: subprocess.Popen[bytes]
    dashboard_port: int

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def stop(self) -> None:
        sid = self.process.pid  # start_new_session: its PID is the session's id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and session_pids(sid):
            time.sleep(0.2)
        for pid in session_pids(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def _ray_binary() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


def start_ray_head(folder: Path, num_cpus: int = 2) -> RayHead:
    """`ray start --head --block` on loopback only; returns once the Jobs API answers."""
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / "t"  # Ray's socket paths must stay short
    temp.mkdir(exist_ok=True)
    dashboard, gcs = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        TMPDIR=str(temp),
        RAY_USAGE_STATS_ENABLED="0",
    )
    env.pop("RAY_ADDRESS", None)
    log = open(folder / "ray-head.log", "wb")  # noqa: SIM115 (kept open for the child)
    process = subprocess.Popen(
        [
            _ray_binary(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--port={gcs}",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            "--include-dashboard=true",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    head = RayHead(folder, process, dashboard)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(f"{head.address}/api/version", timeout=1) as answer,
        ):
            if json.loads(answer.read()).get("ray_version"):
                return head
        time.sleep(0.2)
    head.stop()
    tail = (folder / "ray-head.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the Ray head did not start:\n{tail}")
