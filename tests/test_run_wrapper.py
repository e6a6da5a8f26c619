"""The one run wrapper on every runner (local in-process, ssh over a real sshd, Ray on a real
head, all on this machine): the locked files hash the same as the loop's start commit says,
wherever the run happened, and a report the run forged or cut short is refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from conftest import MakeProject, commit_all
from ratchet.config import SandboxConfig
from ratchet.guard import locked_hashes_at
from ratchet.runners.base import Isolation, Job, RunControl, Runner, RunOutcome
from ratchet.runners.local import LocalRunner
from ratchet.runners.output import Reports
from ratchet.runners.sandbox import find_bwrap, probe
from ratchet.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")

SANDBOX = SandboxConfig() if probe(find_bwrap()) is None else SandboxConfig(kind="none")
LOCKED = ("prepare.py", "data", "link")
RUNNERS = ["local", "ssh", "ray"]

# Unsandboxed on Ray, a run can read its wrapper's starting environment (the request, with
# the marker, is there) and print a report of its own before the wrapper's.
FORGE = """\
import json, os
pid = os.getppid()
while pid > 1:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        for item in handle.read().split(b"\\0"):
            if item.startswith(b"RATCHET_RUN="):
                marker = json.loads(item[len("RATCHET_RUN="):])["marker"]
                end = {"exit": 0, "wall": 1.0, "leftovers": 0, "locked_changed": []}
                print(marker, "end", json.dumps(end), flush=True)
    with open(f"/proc/{pid}/stat") as handle:
        pid = int(handle.read().rsplit(")", 1)[1].split()[1])
"""


@pytest.fixture
def project(make_project: MakeProject) -> Path:
    root = make_project(
        extra={"data/a.txt": "a\n", "data/sub/b.txt": "b\n", "forge.py": FORGE}, commit=False
    )
    (root / "link").symlink_to("prepare.py")
    commit_all(root)
    return root


async def open_runner(kind: str, root: Path, tmp: Path, sandbox: SandboxConfig) -> Runner:
    if kind == "local":
        return LocalRunner((), sandbox)
    if kind == "ssh":
        from ratchet.runners.ssh import SshRunner
        from sshd import sshd_missing, start_sshd
        from test_runner_ssh import runner_config

        if missing := sshd_missing():
            pytest.skip(missing)
        server = start_sshd(tmp / "sshd")
        runner: Runner = SshRunner(runner_config(server, tmp / "remote"), root, sandbox)
        runner.stop_server = server.stop  # type: ignore[attr-defined]
        return runner
    from ratchet.runners.ray import RayRunner
    from rayhead import ray_missing, start_ray_head
    from test_runner_ray import ray_config

    if missing := ray_missing():
        pytest.skip(missing)
    head = start_ray_head(Path(tempfile.mkdtemp(prefix="ray-")))  # short: Ray's socket paths
    runner = RayRunner(ray_config(head.address, max_slots=1), root, sandbox)
    runner.stop_server = head.stop  # type: ignore[attr-defined]
    return runner


async def run_jobs(
    kind: str, root: Path, tmp: Path, sandbox: SandboxConfig, commands: list[str]
) -> list[RunOutcome]:
    expected = locked_hashes_at(Workspace(root, "t"), "HEAD", LOCKED)
    runner = await open_runner(kind, root, tmp, sandbox)
    try:
        [slot, *_] = await runner.open()
        outcomes = []
        for number, command in enumerate(commands):
            job = Job(
                experiment=number,
                command=command,
                worktree=root,
                log_path=tmp / "logs" / f"{kind}-{number}.log",
                budget_s=20,
                timeout_s=60,
                locked=LOCKED,
                editable="train.py",
                editable_text=(root / "train.py").read_text(),
                isolation=Isolation(sandbox, ()),
                expected_locked=expected,
            )
            outcomes.append(await runner.run(job, slot, lambda line: None, RunControl()))
        return outcomes
    finally:
        await runner.close()
        getattr(runner, "stop_server", lambda: None)()


@pytest.mark.parametrize("kind", RUNNERS)
async def test_locked_files_hash_as_the_start_commit_says_on_every_runner(
    kind: str, project: Path, tmp_path: Path
) -> None:
    """A file, a folder and a link, hashed by the wrapper where the run happens, match the
    digests the loop computed from its start commit: no honest run is voided, and a change
    to the folder or the link is seen."""
    honest, tampering = await run_jobs(
        kind,
        project,
        tmp_path,
        SANDBOX,
        [
            "cat prepare.py data/a.txt && readlink link",
            "echo x >> data/sub/b.txt; ln -sfn train.py link",
        ],
    )
    assert honest.refused is None and honest.lost is None, honest
    assert honest.exit_code == 0 and honest.locked_changed == [], honest
    assert honest.tail[-2:] == ["a", "prepare.py"], honest.tail
    assert tampering.refused is None and tampering.exit_code == 0, tampering
    assert tampering.locked_changed == ["data", "link"], tampering
    if kind != "local":  # a remote run had a copy of its own
        assert (project / "link").readlink() == Path("prepare.py")


@pytest.mark.skipif(SANDBOX.kind == "none", reason="no bubblewrap sandbox here")
@pytest.mark.parametrize("kind", RUNNERS)
async def test_a_run_that_kills_the_sandboxs_reporter_is_refused_on_every_runner(
    kind: str, project: Path, tmp_path: Path
) -> None:
    """The command kills the sandbox's first process (which reports its exit code on the
    status pipe): without that report, the run's result is not believed."""
    [outcome] = await run_jobs(
        kind, project, tmp_path, SANDBOX, ["echo started; kill -KILL $PPID; sleep 2"]
    )
    assert outcome.lost is None, outcome
    assert outcome.refused and "first process was killed" in outcome.refused, outcome


async def test_a_forged_report_is_refused_on_ray(project: Path, tmp_path: Path) -> None:
    """Unsandboxed, the run reads the marker from its wrapper's environment and prints an
    `end` of its own: the wrapper's own `end` follows, and two of them are refused."""
    [outcome] = await run_jobs(
        "ray", project, tmp_path, SandboxConfig(kind="none"), ["python3 forge.py; exit 4"]
    )
    assert outcome.refused and "forged" in outcome.refused, outcome
    assert not any("@@ratchet" in line for line in outcome.tail)


def test_the_report_protocol_takes_each_kind_once() -> None:
    reports = Reports("@@m@@")
    assert not reports.take("@@m@ end {}") and not reports.take("plain output")
    assert reports.take('@@m@@ end {"exit": 0}') and reports.forged is None
    assert reports.get("end") == {"exit": 0}
    assert reports.take('@@m@@ end {"exit": 3}')  # a second end: the first is not believed
    assert reports.forged and reports.get("end") == {"exit": 0}
    for line in ("@@m@@ start [1]", "@@m@@ start {", "@@m@@ other {}"):
        fresh = Reports("@@m@@")
        assert fresh.take(line) and fresh.forged, line
