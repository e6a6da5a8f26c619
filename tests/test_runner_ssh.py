"""The ssh runner against a real OpenSSH server on 127.0.0.1 (its "remote" is this machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import replace as replace_job
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject
from loops import run
from ratchet.config import RunnerConfig, load_config
from ratchet.engine import Engine
from ratchet.errors import RatchetError
from ratchet.events import Event, OutputLine
from ratchet.experiment import Status
from ratchet.runners import make_runner
from ratchet.runners.base import Job, RunControl
from ratchet.runners.processes import processes_with_token
from ratchet.runners.ssh import SshRunner, parse_host, project_key
from sshd import Sshd, sshd_missing, start_sshd

pytest.importorskip("asyncssh", reason="asyncssh is not installed (pip install -e '.[test]')")

SLOW_TRAIN = textwrap.dedent(
    """\
    import time
    LR = 0.5
    WIDTH = 8
    score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100
    print("training...", flush=True)
    time.sleep(1.0)
    print("---")
    print(f"score: {score:.6f}")
    """
)

STEPS = [
    (replace("WIDTH = 8", "WIDTH = 12"), "WIDTH 8 → 12"),
    (replace("LR = 0.5", "LR = 0.9"), "LR 0.5 → 0.9"),
    (replace("LR = 0.5", "LR = 0.3"), "LR 0.5 → 0.3"),
]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    missing = sshd_missing()
    if missing:
        pytest.skip(missing)
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


# One run per measurement keeps these tests short; the judge's re-runs are tested elsewhere.
JUDGE_ONCE = "[judge]\nbaseline_runs = 1\nmax_runs = 1\n\n[agent]"


def ssh_config(sshd: Sshd, remote: Path) -> str:
    runner = (
        f'\n[runner]\nkind = "ssh"\nhosts = ["{sshd.host}"]\n'
        f'identity_file = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"\n'
        f'remote_dir = "{remote}"\n'
    )
    return CONFIG.replace("[agent]", JUDGE_ONCE) + runner


def runner_config(sshd: Sshd, remote: Path, known_hosts: Path | None = None) -> RunnerConfig:
    return RunnerConfig(
        kind="ssh",
        gpus=(),
        hosts=(sshd.host,),
        identity_file=str(sshd.client_key),
        known_hosts=str(known_hosts or sshd.known_hosts),
        remote_dir=str(remote),
        address=None,
        max_slots=None,
    )


def remote_run_file(remote: Path, root: Path, name: str) -> Path:
    return remote / project_key(root) / "run" / f"cpu.{name}"


def test_host_addresses_parse() -> None:
    assert parse_host("root@127.0.0.1:2222") == parse_host(" root@127.0.0.1:2222 ")
    address = parse_host("me@gpu-box")
    assert (address.user, address.host, address.port) == ("me", "gpu-box", None)
    address = parse_host("[::1]:2200")
    assert (address.user, address.host, address.port) == (None, "::1", 2200)
    with pytest.raises(RatchetError, match="not a port"):
        parse_host("me@box:http")


async def test_unknown_or_changed_host_key_is_refused_with_the_way_to_trust_it(
    sshd: Sshd, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    runner = SshRunner(runner_config(sshd, tmp_path / "remote", empty), tmp_path)
    with pytest.raises(RatchetError) as refused:
        await runner.open()
    message = str(refused.value)
    assert "not trusted" in message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty}" in message
    # A different key on record for the same host and port (a changed key) is refused too.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    other_key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    changed = tmp_path / "changed_hosts"
    changed.write_text(f"[127.0.0.1]:{sshd.port} {other_key}\n")
    runner = SshRunner(runner_config(sshd, tmp_path / "remote", changed), tmp_path)
    with pytest.raises(RatchetError, match="not trusted"):
        await runner.open()
    assert not (tmp_path / "remote").exists()  # nothing was run on an untrusted host


async def test_experiments_run_end_to_end_over_ssh(
    sshd: Sshd, make_project: MakeProject, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    root = make_project(
        config=ssh_config(sshd, remote),
        extra={".gitignore": "data/\n", "data/cache.bin": "ignored\n", "lib/util.py": "X = 1\n"},
    )
    config = load_config(root)
    runner = make_runner(config)
    assert isinstance(runner, SshRunner)
    uploads = []
    upload = runner._upload_base

    async def counted(*args: object) -> None:
        uploads.append(args)
        await upload(*args)

    runner._upload_base = counted
    engine = Engine(config, tag="t", agent=ScriptedAgent(list(STEPS)), runner=runner)
    events = await run(engine, 4)
    experiments = engine.ledger.experiments("t")
    assert [str(e.status) for e in experiments] == ["kept", "kept", "discarded", "kept"], [
        e.reason for e in experiments
    ]
    assert [e.metric for e in experiments] == pytest.approx([0.2, 0.04, 0.36, 0.0])
    assert any(isinstance(e, OutputLine) and e.line == "training..." for e in events)
    assert (
        (root / ".ratchet" / "loops" / "t" / "logs" / "1.log").read_text().startswith("training...")
    )
    hardware = experiments[1].hardware
    assert hardware["address"] == sshd.host and hardware["host"] and hardware["gpu_count"] == 0
    # The base went over once; the tracked files only (data/ is git-ignored).
    assert len(uploads) == 1
    base = remote / project_key(root) / "base"
    assert (base / "lib" / "util.py").read_text() == "X = 1\n"
    assert (base / "prepare.py").is_file() and not (base / "data").exists()
    assert not (base / ".git").exists()
    # The slot's folder holds the last experiment's editable file.
    assert "LR = 0.3" in (remote / project_key(root) / "slots" / "cpu" / "train.py").read_text()


async def test_runs_are_killed_at_timeout_with_their_children_and_leftovers_are_counted(
    sshd: Sshd, make_project: MakeProject, tmp_path: Path
) -> None:
    root = make_project()
    runner = SshRunner(runner_config(sshd, tmp_path / "remote"), root)
    [slot] = await runner.open()
    mark = uuid.uuid4().hex
    lines: list[str] = []

    def job(n: int, command: str, timeout: float = 10.0, text: str | None = None) -> Job:
        return Job(
            experiment=n,
            command=command,
            worktree=root,
            log_path=tmp_path / "logs" / f"{n}.log",
            budget_s=1,
            timeout_s=timeout,
            locked=("prepare.py",),
            editable="train.py",
            editable_text=text if text is not None else f"print('exp {n}')\n",
            env={"RATCHET_TEST_MARK": mark},
        )

    def marked() -> list[int]:
        needle = f"RATCHET_TEST_MARK={mark}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if needle in (entry / "environ").read_bytes().split(b"\0"):
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    try:
        # The budget, the experiment and no GPU reach the command; the editable file travels.
        outcome = await runner.run(
            job(
                1,
                "echo $RATCHET_TIME_BUDGET $RATCHET_EXPERIMENT [$CUDA_VISIBLE_DEVICES]; "
                "cat train.py",
            ),
            slot,
            lines.append,
            RunControl(),
        )
        assert outcome.exit_code == 0 and outcome.lost is None
        assert outcome.tail == ["1 1 []", "print('exp 1')"]
        assert (tmp_path / "logs" / "1.log").read_text() == "1 1 []\nprint('exp 1')\n"
        # A child that escapes into a session of its own is killed at timeout with the rest.
        outcome = await runner.run(
            job(2, "setsid sleep 300 & echo started; sleep 300", timeout=1.5),
            slot,
            lines.append,
            RunControl(),
        )
        assert outcome.timed_out and outcome.lost is None and outcome.tail[0] == "started"
        assert 1.0 < outcome.wall_s < 6
        assert marked() == []
        # A command that exits but leaves a process behind: counted (the engine voids it), killed.
        outcome = await runner.run(
            job(3, "setsid sleep 300 & echo done"), slot, lines.append, RunControl()
        )
        assert outcome.exit_code == 0 and outcome.leftover_processes == 1
        assert marked() == []
        # A locked file changed by the run is reported; the next experiment starts clean.
        outcome = await runner.run(
            job(4, "echo tampered >> prepare.py; echo out > made.txt"),
            slot,
            lines.append,
            RunControl(),
        )
        assert outcome.locked_changed == ["prepare.py"]
        # Its evaluator starts from a fresh copy with only the declared artefacts carried
        # over; a repeat starts from a fresh copy with nothing (issue 11: independent runs).
        evaluator = replace_job(job(4, "cat made.txt; cat prepare.py"), carry=("made.txt",))
        outcome = await runner.run(evaluator, slot, lines.append, RunControl())
        assert outcome.tail[0] == "out" and "tampered" not in "\n".join(outcome.tail)
        outcome = await runner.run(job(4, "cat made.txt"), slot, lines.append, RunControl())
        assert "No such file" in outcome.tail[0]
        outcome = await runner.run(
            job(5, "cat prepare.py; ls made.txt; exit 3"), slot, lines.append, RunControl()
        )
        assert outcome.exit_code == 3 and outcome.locked_changed == []
        assert outcome.tail[0] == "# locked: the data and the evaluation"
        assert "tampered" not in "\n".join(outcome.tail)
        # Stopped from the engine's side while it runs.
        control = RunControl()

        def stop_on_start(line: str) -> None:
            if line == "running":
                control.stop("stopped by the user")

        outcome = await runner.run(job(6, "echo running; sleep 300"), slot, stop_on_start, control)
        assert outcome.stopped and not outcome.timed_out and outcome.lost is None
        assert marked() == []
    finally:
        await runner.close()


def _kill_remote_run(remote: Path, root: Path) -> str:
    """SIGKILL every process of the running remote run: its wrapper and the command's tree."""
    token = remote_run_file(remote, root, "token").read_text().strip()
    wrapper = int(remote_run_file(remote, root, f"{token}.wrapper").read_text())
    for pid in [wrapper, *processes_with_token(token)]:
        with contextlib.suppress(ProcessLookupError):  # it ended between the listing and here
            os.kill(pid, signal.SIGKILL)
    return token


@pytest.mark.parametrize("how", ["remote process killed", "connection dropped"])
async def test_a_run_lost_mid_way_is_recorded_lost_and_the_loop_goes_on(
    how: str, sshd: Sshd, make_project: MakeProject, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    root = make_project(train=SLOW_TRAIN, config=ssh_config(sshd, remote))
    engine = Engine(load_config(root), tag="t", agent=ScriptedAgent(list(STEPS)))
    tokens: list[str] = []

    def on_event(event: Event) -> None:
        if (
            isinstance(event, OutputLine)
            and event.id == 1
            and event.line == "training..."
            and not tokens
        ):
            if how == "remote process killed":
                tokens.append(_kill_remote_run(remote, root))
            else:
                tokens.append(remote_run_file(remote, root, "token").read_text().strip())
                assert sshd.drop_connections() > 0

    engine.bus.subscribe(on_event)
    await run(engine, 4)
    experiments = engine.ledger.experiments("t")
    assert tokens, "the run was never seen running"
    lost = experiments[1]
    assert lost.status is Status.LOST, lost.reason
    expected = "was killed" if how == "remote process killed" else "dropped"
    assert expected in lost.reason and lost.metric is None
    assert "[ratchet] lost:" in (root / ".ratchet" / "loops" / "t" / "logs" / "1.log").read_text()
    # The loop went on: later experiments ran and were judged on the same host.
    later = [e for e in experiments[2:] if e.status.measured]
    assert later and all(e.hardware.get("address") == sshd.host for e in later)
    assert experiments[0].status is Status.KEPT
    # Nothing of the lost run is left running on the host.
    assert processes_with_token(tokens[0]) == []
