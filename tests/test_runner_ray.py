"""The ray runner against a real local Ray head on 127.0.0.1, started by these tests."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Edit, ScriptedAgent, replace
from conftest import CONFIG, MakeProject
from ratchet.config import RunnerConfig, load_config
from ratchet.engine import Engine
from ratchet.errors import RatchetError
from ratchet.events import Event, OutputLine
from ratchet.experiment import Status
from ratchet.runners import make_runner
from ratchet.runners.base import Job, RunControl
from ratchet.runners.ray import RayRunner
from rayhead import RayHead, ray_missing, start_ray_head
from sshd import free_port

pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")

JUDGE_ONCE = "[judge]\nbaseline_runs = 1\nmax_runs = 1\n\n[agent]"


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    missing = ray_missing()
    if missing:
        pytest.skip(missing)
    head = start_ray_head(tmp_path_factory.mktemp("ray"))
    try:
        yield head
    finally:
        head.stop()


def ray_config(address: str, max_slots: int | None = None) -> RunnerConfig:
    return RunnerConfig(
        kind="ray",
        gpus=(),
        hosts=(),
        identity_file=None,
        known_hosts=None,
        remote_dir="~",
        address=address,
        max_slots=max_slots,
    )


async def test_an_unreachable_cluster_is_a_plain_error(tmp_path: Path) -> None:
    if ray_missing():
        pytest.skip(str(ray_missing()))
    runner = RayRunner(ray_config(f"127.0.0.1:{free_port()}"), tmp_path)
    with pytest.raises(RatchetError, match="cannot reach the Ray cluster"):
        await runner.open()


async def test_experiments_run_as_ray_jobs_end_to_end(
    ray_head: RayHead, make_project: MakeProject
) -> None:
    config = CONFIG.replace("[agent]", JUDGE_ONCE) + textwrap.dedent(
        f"""
        [runner]
        kind = "ray"
        address = "{ray_head.address}"
        """
    )
    root = make_project(config=config)
    steps: list[tuple[Edit | dict[str, str], str]] = [
        (replace("WIDTH = 8", "WIDTH = 12"), "WIDTH 8 → 12"),
        (replace("LR = 0.5", "LR = 0.3"), "LR 0.5 → 0.3"),
    ]
    engine = Engine(load_config(root), tag="t", agent=ScriptedAgent(steps))
    assert isinstance(engine.runner, RayRunner)
    events: list[Event] = []
    engine.bus.subscribe(events.append)
    try:
        await engine.run(max_experiments=3)
        slots = [slot.name for slot in engine.slots.all]
    finally:
        await engine.close()
    assert slots == ["ray/0", "ray/1"]  # a CPU cluster of 2 CPUs: two jobs at a time
    experiments = engine.ledger.experiments("t")
    assert len(experiments) >= 3, [(e.status, e.reason) for e in experiments]
    assert experiments[0].status is Status.KEPT and experiments[0].metric == pytest.approx(0.2)
    measured = [e for e in experiments[1:] if e.status.measured]
    assert measured, [(e.status, e.reason) for e in experiments]
    assert all(e.metric is not None and e.metric < 0.2 for e in measured)
    assert any(isinstance(e, OutputLine) and e.line == "training..." for e in events)
    log = (root / ".ratchet" / "loops" / "t" / "logs" / f"{measured[0].id}.log").read_text()
    assert "training..." in log and "score: " in log and "@@ratchet" not in log
    hardware = measured[0].hardware
    assert hardware["cluster"] == ray_head.address and hardware["node_id"]
    assert hardware["cpu"] and hardware["gpu_count"] == 0


async def test_jobs_time_out_stop_and_report_and_a_job_stopped_from_outside_is_lost(
    ray_head: RayHead, make_project: MakeProject, tmp_path: Path
) -> None:
    from ray.job_submission import JobSubmissionClient

    root = make_project()
    runner = RayRunner(ray_config(ray_head.address, max_slots=2), root)
    slots = await runner.open()
    assert len(slots) == 2
    client = JobSubmissionClient(ray_head.address)

    def job(n: int, command: str, timeout: float = 60.0) -> Job:
        return Job(
            experiment=n,
            command=command,
            worktree=root,
            log_path=tmp_path / "logs" / f"{n}.log",
            budget_s=7,
            timeout_s=timeout,
            locked=("prepare.py",),
            editable="train.py",
        )

    def ours(experiment: int) -> list[Any]:
        """This test's jobs of that experiment (the head is shared with the other tests)."""
        return [
            details
            for details in client.list_jobs()
            if (details.metadata or {}).get("ratchet_experiment") == str(experiment)
            and "sleep 60" in details.entrypoint
        ]

    def stop_from_outside(experiment: int) -> None:
        for details in ours(experiment):
            client.stop_job(details.submission_id)

    outside: list[asyncio.Task[None]] = []

    def on_line_1(line: str) -> None:
        if line == "running" and not outside:
            outside.append(asyncio.create_task(asyncio.to_thread(stop_from_outside, 1)))

    # Someone stops the job on the cluster (ray job stop): lost, for the engine to re-queue,
    # while the other slot runs a job that reports its exit code, env and a locked change.
    stopped_outside, reported = await asyncio.gather(
        runner.run(job(1, "echo running; sleep 60"), slots[0], on_line_1, RunControl()),
        runner.run(
            job(
                2,
                "echo budget=$RATCHET_TIME_BUDGET exp=$RATCHET_EXPERIMENT "
                "gpu=[$CUDA_VISIBLE_DEVICES]; echo x >> prepare.py; printf 'no newline'; exit 3",
            ),
            slots[1],
            lambda line: None,
            RunControl(),
        ),
    )
    assert outside
    assert stopped_outside.lost and "stopped outside Ratchet" in stopped_outside.lost
    assert not stopped_outside.stopped and not stopped_outside.timed_out
    assert reported.exit_code == 3 and reported.lost is None
    assert reported.locked_changed == ["prepare.py"]
    assert "budget=7 exp=2 gpu=[]" in reported.tail
    assert reported.tail[-1] == "no newline"
    assert (root / "prepare.py").read_text().count("x") == 0  # the job had its own copy

    # The budget runs out: the job is stopped with stop_job; the engine stops one early.
    control = RunControl()

    def on_line_4(line: str) -> None:
        if line == "running":
            control.stop("stopped by the user")

    timed_out, stopped = await asyncio.gather(
        runner.run(job(3, "echo running; sleep 60", timeout=2), slots[0], print, RunControl()),
        runner.run(job(4, "echo running; sleep 60"), slots[1], on_line_4, control),
    )
    assert timed_out.timed_out and timed_out.lost is None and 1.5 < timed_out.wall_s < 30
    assert stopped.stopped and not stopped.timed_out and stopped.lost is None
    for experiment in (3, 4):
        [details] = ours(experiment)
        assert str(details.status).endswith("STOPPED")
    await runner.close()


def test_make_runner_builds_the_ray_runner(make_project: MakeProject) -> None:
    config = CONFIG + '\n[runner]\nkind = "ray"\naddress = "127.0.0.1:8265"\n'
    root = make_project(config=config)
    runner = make_runner(load_config(root))
    assert isinstance(runner, RayRunner) and runner.kind == "ray"
