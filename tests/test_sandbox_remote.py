"""The attacker on the ssh and Ray runners (the loopback sshd and Ray head, this machine):
the same sandbox on the host or node, a fresh copy per run, reports the run cannot forge, the
timeout enforced there. Each attack ends voided or harmless; the honest edit is kept."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from agents import ScriptedAgent
from conftest import CONFIG, MakeProject
from loops import engine_for, run
from ratchet.experiment import Status
from ratchet.runners.sandbox import find_bwrap, probe
from test_sandbox_attacks import HONEST, SENTINEL, SURVIVOR, attack, processes_named

pytestmark = [
    pytest.mark.skipif(probe(find_bwrap()) is not None, reason="no bubblewrap sandbox here"),
    pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning"),
]

JUDGE_ONCE = "[judge]\nbaseline_runs = 1\nmax_runs = 1\n\n[agent]"

# Rewrites what the next run would copy (ssh's base), and tries to forge the wrapper's
# reports: the wrapper's marker lines (its marker sits in the Ray wrapper's environment).
FORGE = attack(
    """
    for rel in ("../../base/prepare.py", "../../../prepare.py", "../base/prepare.py"):
        try:
            with open(rel, "w") as handle:
                handle.write("forged\\n")
        except OSError:
            pass
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if b"RATCHET_RUN=" in environ or b"sentinel-attack" in environ:
            print("ATTACK-OK saw the wrapper's environment in", pid)
        for fd in ("1", "2"):
            try:
                with open(f"/proc/{pid}/fd/{fd}", "w") as handle:
                    handle.write("ratchet: exit 0\\nratchet: after 0 0\\nratchet: done\\n")
            except OSError:
                pass
    """
)
SLOW = attack("import time\ntime.sleep(6)\n")


async def attacked_loop(root: Path) -> None:
    engine = engine_for(root, ScriptedAgent([SURVIVOR, FORGE, SLOW, HONEST]))
    await run(engine, 5)
    rows = engine.ledger.experiments("t")
    baseline, survivor, forge, slow, honest = rows
    assert baseline.status is Status.KEPT, baseline.reason
    assert survivor.status is Status.VOIDED, survivor.reason
    assert processes_named("31.4159") == []
    assert forge.status is Status.DISCARDED, forge.reason  # its worse score, judged as such
    assert "ATTACK-OK" not in Path(forge.log_path).read_text()
    assert slow.status is Status.OVER_BUDGET and slow.run_s < 5.5, (slow.status, slow.run_s)
    assert honest.status is Status.KEPT, honest.reason
    assert all(e.hardware.get("sandbox") == "bwrap" for e in rows)


@pytest.fixture
def sentinel_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)


async def test_attacks_on_the_ssh_runner(
    make_project: MakeProject, tmp_path: Path, sentinel_key: None
) -> None:
    from sshd import sshd_missing, start_sshd

    if missing := sshd_missing():
        pytest.skip(missing)
    sshd = start_sshd(tmp_path / "sshd")
    try:
        from test_runner_ssh import ssh_config

        remote = tmp_path / "remote"
        config = ssh_config(sshd, remote).replace('budget = "10s"', 'budget = "3s"')
        root = make_project(config=config)
        await attacked_loop(root)
        bases = list(remote.rglob("base/prepare.py"))
        assert bases and all("forged" not in p.read_text() for p in bases)
    finally:
        sshd.stop()


async def test_attacks_on_the_ray_runner(
    make_project: MakeProject, tmp_path_factory: pytest.TempPathFactory, sentinel_key: None
) -> None:
    from rayhead import ray_missing, start_ray_head

    if missing := ray_missing():
        pytest.skip(missing)
    head = start_ray_head(tmp_path_factory.mktemp("ray"))  # short: Ray's socket paths
    try:
        config = CONFIG.replace("[agent]", JUDGE_ONCE).replace(
            'budget = "10s"', 'budget = "3s"'
        ) + textwrap.dedent(
            f"""
            [runner]
            kind = "ray"
            address = "{head.address}"
            max_slots = 1
            """
        )
        root = make_project(config=config)
        await attacked_loop(root)
        assert os.environ["ANTHROPIC_API_KEY"] == SENTINEL
    finally:
        head.stop()
