"""What a run, a judge or the proposing agent can read, from a security review: the main
checkout of a linked worktree is hidden like the repository; the evaluator and the holdout
cannot write the `[sandbox] write` caches; long hex is cut from what the model sees; and the
ssh host carries artefacts as the local clean room does (no link on the way, the same caps)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import ScriptedAgent
from conftest import TRAIN, MakeProject, git
from loops import engine_for, run
from ratchet.agents.confine import AgentSandbox
from ratchet.agents.untrusted import scrub
from ratchet.config import SandboxConfig, load_config
from ratchet.experiment import Status
from ratchet.runners.artefacts import ARTEFACT_LIMIT
from ratchet.runners.base import Job, Slot
from ratchet.runners.host_private import repository_folders
from ratchet.runners.remote_run import BOOT
from ratchet.runners.sandbox import find_bwrap, probe
from ratchet.runners.ssh_script import run_request, wrapper_input
from test_sandbox_attacks import FAST

needs_sandbox = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A folder anyone may read, outside /tmp and $HOME (a run sees those emptied anyway):
    what a run cannot read here, something hid from it."""
    if not os.path.isdir("/var/tmp"):
        pytest.skip("no /var/tmp here")
    folder = Path(tempfile.mkdtemp(prefix="ratchet-review-", dir="/var/tmp"))
    folder.chmod(0o755)  # not one of the private folders every run has covered
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- a linked worktree: its main checkout is hidden too ------------------------------------------

SPY = """
for path in ({labels!r}, {control!r}):
    try:
        print("READ", open(path).read().strip())
    except OSError as error:
        print("HIDDEN", path, type(error).__name__)
"""


def linked_worktree(make_project: MakeProject, folder: Path, train: str = TRAIN) -> Path:
    """A project checked out as a linked worktree of `folder`/main, whose main checkout
    holds an untracked label file."""
    main = folder / "main"
    shutil.move(make_project(train=train, config=FAST), main)
    (main / "labels.txt").write_text("LABEL-SECRET\n")
    git(main, "worktree", "add", "-q", "-b", "side", str(folder / "linked"))
    return folder / "linked"


def test_the_repository_folders_of_a_linked_worktree_hold_its_main_checkout(
    make_project: MakeProject, tmp_path: Path
) -> None:
    linked = linked_worktree(make_project, tmp_path)
    main = (tmp_path / "main").resolve()
    folders = repository_folders(linked)
    assert main in folders and main / ".git" in folders and linked.resolve() in folders
    sandbox = AgentSandbox.from_config(load_config(linked), ())
    assert sandbox is not None and str(main) in sandbox.hide


@needs_sandbox
async def test_a_run_of_a_linked_worktree_cannot_read_its_main_checkout(
    make_project: MakeProject, outside_tmp: Path
) -> None:
    control = outside_tmp / "control.txt"
    control.write_text("CONTROL-VISIBLE\n")
    labels = outside_tmp / "main" / "labels.txt"
    linked = linked_worktree(
        make_project, outside_tmp, TRAIN + SPY.format(labels=str(labels), control=str(control))
    )
    engine = engine_for(linked, ScriptedAgent([]))
    await run(engine, 1)
    [baseline] = engine.ledger.experiments("t")
    log = Path(baseline.log_path).read_text()
    assert baseline.status is Status.KEPT, baseline.reason
    assert "READ CONTROL-VISIBLE" in log  # the folder around both is there to read
    assert "LABEL-SECRET" not in log and f"HIDDEN {labels}" in log, log


# --- the evaluator and the holdout read the write caches, never write them ------------------------

JUDGE = """\
import sys
try:
    with open("{cache}/from-" + sys.argv[1], "w") as handle:
        handle.write("planted")
    print("WROTE", sys.argv[1])
except OSError as error:
    print("REFUSED", sys.argv[1], error)
print("score: 0.2")
"""


@needs_sandbox
async def test_the_judges_see_the_write_folders_read_only(
    make_project: MakeProject, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    judges = 'eval = "{python} judge.py eval"\nholdout = "{python} judge.py holdout"'
    config = (
        FAST.replace('goal = "minimize"', f'goal = "minimize"\n{judges}').replace(
            'locked = ["prepare.py"]', 'locked = ["prepare.py", "judge.py"]'
        )
        + f'\n[sandbox]\nwrite = ["{cache}"]\n'
    )
    root = make_project(
        train=TRAIN + f'open("{cache}/from-command", "w").write("cached")\n',
        config=config,
        extra={"judge.py": JUDGE.format(cache=cache)},
    )
    engine = engine_for(root, ScriptedAgent([]))
    await run(engine, 1)
    [baseline] = engine.ledger.experiments("t")
    assert baseline.status is Status.KEPT, baseline.reason
    assert (cache / "from-command").read_text() == "cached"  # the command writes its cache
    assert sorted(p.name for p in cache.iterdir()) == ["from-command"]
    judged_log = Path(baseline.log_path).with_suffix(".eval.log").read_text()
    assert "REFUSED eval" in judged_log and "Read-only file system" in judged_log, judged_log
    holdout_log = Path(baseline.log_path).with_suffix(".holdout.log").read_text()
    assert "REFUSED holdout" in holdout_log, holdout_log


# --- what the model sees: hex longer than a digest is cut ----------------------------------------


def test_scrub_cuts_hex_longer_than_a_digest_and_keeps_digests() -> None:
    dumped = os.urandom(48).hex()  # a key or a file a run read, hex-encoded
    assert scrub(f"dump {dumped} end") == "dump [REDACTED] end"
    assert scrub(f"x={dumped.upper()}") == "x=[REDACTED]"
    assert dumped[:20] not in scrub(f"{dumped}{dumped}")
    sha256 = hashlib.sha256(b"data").hexdigest()
    commit = hashlib.sha1(b"commit").hexdigest()
    for line in (f"sha256:{sha256}", f"commit {commit}", f"{commit}..{commit}"):
        assert scrub(line) == line


# --- the ssh host carries artefacts as the clean room does ---------------------------------------


def test_the_ssh_evaluator_carries_no_link_on_the_way_and_the_same_caps(tmp_path: Path) -> None:
    """The shipped wrapper, booted as an ssh host boots it, with the run's folder holding a
    link in an artefact's path, a sparse file past the cap, and the room a link to elsewhere."""
    root, elsewhere, secret = tmp_path / "remote", tmp_path / "elsewhere", tmp_path / "secret"
    for folder in (root / "base", root / "slots" / "s" / "models", elsewhere, secret):
        folder.mkdir(parents=True)
    (root / "base" / "models").symlink_to(elsewhere)  # committed: the copy must not follow it
    ran = root / "slots" / "s"  # the command's folder, as it left it
    (secret / "weights").write_text("SECRET")
    (ran / "ckpt").symlink_to(secret)
    (ran / "models" / "m.bin").write_text("model")
    with open(ran / "big", "wb") as big:
        big.truncate(ARTEFACT_LIMIT + 1)  # sparse: costs nothing to copy, but over the cap
    (ran / "ok.txt").write_text("fine")
    job = Job(
        experiment=1,
        command="true",
        worktree=tmp_path,
        log_path=tmp_path / "1.log",
        budget_s=5,
        timeout_s=30,
        carry=("ckpt/weights", "models/m.bin", "big", "ok.txt"),
    )
    token, marker = uuid.uuid4().hex, f"@@{uuid.uuid4().hex}@@"
    request = run_request(str(root), "s", job, Slot("s"), token, marker, SandboxConfig("none"))
    done = subprocess.run(
        [sys.executable, "-c", BOOT, "ssh", token],
        input=wrapper_input(request),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"{marker} end" in done.stderr, done.stderr
    room = root / "slots" / "s.eval"
    assert (room / "ok.txt").read_text() == "fine"
    assert not (room / "ckpt").exists() and not (room / "big").exists()
    assert list(elsewhere.iterdir()) == []
