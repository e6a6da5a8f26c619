"""The experiment attacks the machine it runs on, through the real loop (issue: vectors 1, 8
and 9): kernel settings, root-only files, unix sockets outside the hidden folders, and the
control socket of a loop. In the sandbox each ends refused or harmless and an honest edit is
still kept; with `[sandbox] kind = "none"` the same runs show their evidence, so the test is
not vacuous."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import ScriptedAgent
from conftest import MakeProject
from loops import engine_for, run
from ratchet.control.host import LoopHost
from ratchet.experiment import Status
from ratchet.runners import host_private
from ratchet.runners.sandbox import SandboxSpec, build_argv, find_bwrap, probe
from test_sandbox_attacks import FAST, HONEST, Listener, attack

pytestmark = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)
AS_ROOT = os.geteuid() == 0
# Whether this process may set a sysctl at all (root, outside a container that made it
# read-only): only then can the control show the attack working.
SETS_SYSCTLS = os.access("/proc/sys/kernel/core_pattern", os.W_OK)
SECRET = "ratchet-root-only-secret-4c1d"
SYSCTLS = ("kernel/core_pattern", "vm/overcommit_memory", "kernel/pid_max", "fs/file-max")


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A root-only file and another user's private file where the host's secrets live
    (/var/tmp), and listening sockets outside /tmp: in /var/tmp, in a fake `.ratchet` of another
    loop, and (as root) in /run. Removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="ratchet-machine-", dir="/var/tmp"))
    run_folder = None
    listeners: list[Listener] = []
    try:
        base.chmod(0o755)  # open: each file is judged on its own (and the control socket, at
        # depth 5, is found only in the kernel's table of bound sockets)
        secret = base / "root-only.key"
        secret.write_text(SECRET + "\n")
        secret.chmod(0o600)
        others = base / "other-user.key"
        others.write_text(SECRET + "-of-nobody\n")
        others.chmod(0o600)
        if AS_ROOT:
            os.chown(others, 65534, 65534)
        (base / "loop" / ".ratchet").mkdir(parents=True)
        paths = [base / "service.sock", base / "loop" / ".ratchet" / "control.sock"]
        if AS_ROOT and os.path.isdir("/run"):
            run_folder = Path(tempfile.mkdtemp(prefix="ratchet-machine-", dir="/run"))
            paths.append(run_folder / "bus.sock")
        listeners += [Listener(path) for path in paths]
        host_private._SEARCHED.clear()  # the files were made just now: search again
        yield {"secret": secret, "others": others, "listeners": listeners}
    finally:
        for listener in listeners:
            listener.close()
        shutil.rmtree(base, ignore_errors=True)
        if run_folder is not None:
            shutil.rmtree(run_folder, ignore_errors=True)


def machine_attacks(machine: dict[str, object]) -> list[tuple[object, str]]:
    sysctl = attack(
        f"""
        for name in {SYSCTLS!r}:
            path = "/proc/sys/" + name
            try:
                value = open(path).read()
                with open(path, "w") as handle:
                    handle.write(value)
                print("ATTACK-OK sysctl", name)
            except OSError as error:
                print("sysctl", name, error)
        """
    )
    files = [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/ssh/ssh_host_ed25519_key",
    ]
    secrets = attack(
        f"""
        for path in {[*files, str(machine["secret"]), str(machine["others"])]!r}:
            try:
                text = open(path).read()
                print("ATTACK-OK read", path, "-", text.strip() if "ratchet" in path else "")
            except OSError as error:
                print("read", path, error)
        raise SystemExit("crashed holding what it read")
        """
    )
    paths = [str(listener.path) for listener in machine["listeners"]]  # type: ignore[attr-defined]
    sockets = attack(
        f"""
        import socket
        for path in {paths!r}:
            try:
                socket.socket(socket.AF_UNIX).connect(path)
                print("ATTACK-OK socket", path)
            except OSError as error:
                print("socket", path, error)
        """
    )
    return [sysctl, secrets, sockets]


@pytest.mark.parametrize("kind", ["bwrap", "none"])
async def test_attacks_on_the_machine_are_refused_and_honest_work_is_kept(
    make_project: MakeProject, machine: dict[str, object], kind: str
) -> None:
    config = FAST.replace("[agent]", f'[sandbox]\nkind = "{kind}"\n\n[agent]')
    attacks = machine_attacks(machine)
    agent = ScriptedAgent([*attacks, HONEST])
    engine = engine_for(make_project(config=config), agent)
    await asyncio.wait_for(run(engine, len(attacks) + 2), timeout=300)  # never hangs
    rows = engine.ledger.experiments("t")
    tried, honest = rows[1:-1], rows[-1]
    logs = dict(zip(["sysctl", "secrets", "sockets"], tried, strict=True))
    text = {name: Path(exp.log_path).read_text(errors="replace") for name, exp in logs.items()}
    prompts = json.dumps([str(context) for context in agent.contexts])  # repair blocks too
    listeners = machine["listeners"]
    reached = sum(listener.connections for listener in listeners)  # type: ignore[attr-defined]
    assert honest.status is Status.KEPT, honest.reason
    assert all(exp.status is not Status.KEPT for exp in tried)
    if kind == "none":  # the control: every attack's evidence is there without the sandbox
        assert "ATTACK-OK sysctl kernel/core_pattern" in text["sysctl"] or not SETS_SYSCTLS
        assert SECRET in text["secrets"] and SECRET in prompts  # it reached the next prompt
        assert "ATTACK-OK socket" in text["sockets"]
        assert reached == len(listeners)  # type: ignore[arg-type]
        return
    for name, log in text.items():
        assert "ATTACK-OK" not in log, (name, log)
    assert "Read-only file system" in text["sysctl"] or not SETS_SYSCTLS
    assert reached == 0
    # nothing it read reached the logs, the ledger, or the next prompt's repair block
    assert SECRET not in prompts and SECRET not in "".join(text.values())
    assert logs["secrets"].status is not Status.KEPT and SECRET not in logs["secrets"].log_tail


async def test_the_control_socket_refuses_a_sandboxed_run_and_serves_its_own_user(
    make_project: MakeProject, tmp_path: Path
) -> None:
    root = make_project(config=FAST)
    (root / ".ratchet").mkdir(exist_ok=True)
    host = LoopHost(engine_for(root))
    await host.open()
    client = (
        "import contextlib, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(10)\n"
        "with contextlib.suppress(OSError):  # a refused client is closed at once\n"
        '    s.sendall(b\'{"id": 1, "method": "hello", "params": {}}\\n\')\n'
        "print(s.makefile().readline().strip())\n"
    )
    (tmp_path / "client.py").write_text(client)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    folder = str(host.path.parent)
    spec = SandboxSpec(
        bwrap=str(find_bwrap()),
        run_dir=str(run_dir),
        read=(str(tmp_path / "client.py"), sys.prefix, sys.base_prefix),
        binds=((folder, folder),),  # reachable on purpose: only the peer check is left
    )
    try:
        outside = [sys.executable, str(tmp_path / "client.py"), str(host.path)]
        inside = build_argv(spec, outside)
        answers = await asyncio.gather(
            *(asyncio.to_thread(_output, argv) for argv in (inside, outside))
        )
    finally:
        await host.close()
    refused, served = (json.loads(answer) for answer in answers)
    assert refused.get("event") == "refused", refused
    assert "PID namespace" in refused["message"] and "result" not in refused
    assert served.get("id") == 1 and "result" in served, served


def _output(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
