"""Nothing lost under faults: a real `ratchet run` killed with SIGKILL at random moments.

After every kill, a restart must find the ledger, the branch, the refs and results.tsv in
agreement, with no experiment lost or counted twice. RATCHET_FAULT_TRIALS sets how many
trials run (the closing figures used 100; the suite runs fewer to stay quick).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import CONFIG, MakeProject, git
from ratchet.config import load_config
from ratchet.control import spawn
from ratchet.control.client import LoopClient
from ratchet.engine import LOOP_VARIABLE, Engine
from ratchet.errors import RatchetError
from ratchet.experiment import Status
from ratchet.ledger import Ledger
from ratchet.results_tsv import results_row
from ratchet.runners.processes import processes_with_token

TRIALS = int(os.environ.get("RATCHET_FAULT_TRIALS", "12"))

# A metric with a little noise and runs of varying length, so kills land everywhere.
TRAIN = """\
import os, random, time
LR = 0.5


WIDTH = 8
random.seed(os.urandom(8))
time.sleep(random.random() * 0.15)
print("score:", (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100 + random.random() * 1e-4)
"""


def check_agreement(root: Path) -> int:
    """Opens the loop as a restart would and checks every invariant; returns experiments."""
    engine = Engine(load_config(root), tag="f")
    engine.lock.acquire()
    try:
        engine.opening.open_branch()  # the recovery a restart performs
    finally:
        engine.lock.release()
    experiments = engine.ledger.experiments("f")
    ids = [e.id for e in experiments]
    # No double. A gap is allowed: with two slots, a number handed out to work killed before
    # its first write is not used again; the work itself stays queued (checked by the callers:
    # every acknowledged submit is measured, no count goes down).
    assert ids == sorted(set(ids)) and (not ids or ids[0] == 0), "a double or no baseline"
    assert all(e.status.is_final for e in experiments), "an unfinished experiment survived"
    refs = engine.workspace.experiment_refs()
    for exp in experiments:
        if exp.commit is not None:
            assert refs.get(exp.id) == exp.commit, f"exp {exp.id}'s ref disagrees with the ledger"
    kept = [e for e in experiments if e.status is Status.KEPT]
    start = engine.ledger.loop("f")["start_commit"]  # type: ignore[index]
    chain = git(root, "rev-list", "--first-parent", f"{start}..ratchet/f").split()
    assert chain == [e.commit for e in reversed(kept)], "the branch is not the kept experiments"
    rows = (root / ".ratchet" / "loops" / "f" / "results.tsv").read_text().splitlines()[1:]
    expected_rows = [row for e in experiments if (row := results_row(e)) is not None]
    # Rows are appended as experiments finish (with two slots, not in id order); a recovery
    # rewrites them in id order: the same rows either way.
    assert sorted(rows) == sorted(expected_rows), "results.tsv disagrees with the ledger"
    worktrees = git(root, "worktree", "list", "--porcelain").count("worktree ")
    assert worktrees == 1, "stale worktrees were left: " + git(root, "worktree", "list")
    return len(experiments)


def test_sigkill_at_random_moments_loses_nothing(make_project: MakeProject) -> None:
    config = CONFIG.replace("[agent]", "[judge]\nbaseline_runs = 2\nmax_runs = 2\n\n[agent]")
    root = make_project(train=TRAIN, config=config)
    rng = random.Random(1234)
    survived = 0
    previous = 0
    for _ in range(TRIALS):
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "ratchet.cli", "--version"], capture_output=True)
        start_up = time.monotonic() - started
        process = subprocess.Popen(
            [sys.executable, "-m", "ratchet.cli", "-C", str(root), "run", "--tag", "f"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # On a loaded machine the interpreter alone may take seconds to start: the random
        # moment is counted from when it would be up, so the loop still gets somewhere.
        time.sleep(start_up + 0.4 + rng.random() * 1.6)
        os.killpg(process.pid, signal.SIGKILL)  # the loop and its experiment, at once
        process.wait()
        count = check_agreement(root)
        assert count >= previous, "experiments disappeared"
        previous = count
        survived += 1
    ledger = Ledger(root / ".ratchet")
    interrupted = [e for e in ledger.experiments("f") if e.status is Status.INTERRUPTED]
    rerun = {e.rerun_of for e in ledger.experiments("f") if e.rerun_of is not None}
    assert survived == TRIALS and previous > TRIALS / 2
    # Interrupted experiments are measured again on a later start (all but the last kill's).
    waiting = [
        e
        for e in interrupted
        if e.source != "baseline" and e.rerun_of is None and e.id not in rerun
    ]
    assert len(waiting) <= 1
    print(
        f"{survived}/{TRIALS} SIGKILL trials survived; {previous} experiments, "
        f"{len(interrupted)} interrupted, {len(rerun)} re-run"
    )


def test_a_killed_loop_leaves_no_experiment_running(make_project: MakeProject) -> None:
    slow = (
        "import time\nLR = 0.5\nprint('started', flush=True)\ntime.sleep(120)\nprint('score: 1')\n"
    )
    root = make_project(train=slow)
    process = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "-C", str(root), "run", "--tag", "f"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = root / ".ratchet" / "loops" / "f" / "logs" / "0.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and "started" in log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.kill()  # the loop only: its experiment is in a session of its own
    process.wait()
    engine = Engine(load_config(root), tag="f")
    # The sandbox dies with its parent (bubblewrap's --die-with-parent): nothing outlives it.
    deadline = time.monotonic() + 10
    while processes_with_token(engine.loop_id, variable=LOOP_VARIABLE):
        assert time.monotonic() < deadline, "the experiment outlived its loop"
        time.sleep(0.05)
    engine.lock.acquire()
    engine.opening.open_branch()
    engine.lock.release()
    assert processes_with_token(engine.loop_id, variable=LOOP_VARIABLE) == []
    assert engine.ledger.experiments("f")[0].status is Status.INTERRUPTED


LOOP_RUN = (sys.executable, "-m", "ratchet.cli", "-C")
TWO_SLOTS = "[judge]\nbaseline_runs = 2\nmax_runs = 2\n\n[runner]\ngpus = [0, 1]\n\n[agent]"


async def _submit(root: Path, text: str, description: str) -> bool:
    """A person's edit through the control socket, as the editor sends it; whether the loop
    answered `submitted` (only an acknowledged edit is owed a measurement)."""

    try:
        client = await LoopClient.attach(root, lambda message: None, lambda client: None)
    except (RatchetError, OSError):
        return False
    if client is None:
        return False
    try:
        answer = await client.request("submit", {"text": text, "description": description})
        return bool(answer.get("submitted"))
    except RatchetError:
        return False
    finally:
        client.close()


def test_sigkill_with_two_slots_loses_no_acknowledged_human_edit(
    make_project: MakeProject,
) -> None:
    """Each trial a person submits an edit to a loop running 2 slots, which is then killed at
    a random moment: every edit the loop acknowledged is measured in the end."""
    root = make_project(train=TRAIN, config=CONFIG.replace("[agent]", TWO_SLOTS))
    rng = random.Random(99)
    socket = root / ".ratchet" / "control.sock"
    acknowledged: list[str] = []
    for trial in range(max(2, TRIALS // 2)):
        process = subprocess.Popen(
            [sys.executable, "-m", "ratchet.cli", "-C", str(root), "run", "--tag", "f"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while spawn.lock_holder(root) != process.pid or not socket.exists():
                assert process.poll() is None and time.monotonic() < deadline, "no loop"
                time.sleep(0.05)
            description = f"a person's edit {trial}"
            text = TRAIN.replace("WIDTH = 8", f"WIDTH = {9 + trial}")
            if asyncio.run(asyncio.wait_for(_submit(root, text, description), 30)):
                acknowledged.append(description)
            time.sleep(rng.random() * 1.5)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        check_agreement(root)
    assert acknowledged, "no submit was ever answered"
    # The last start owes what is still queued: it runs until each has a measurement.
    held = len(Ledger(root / ".ratchet").experiments("f"))
    done = subprocess.run(
        [*LOOP_RUN, str(root), "run", "--tag", "f", "--max-experiments", str(held + 12)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    measured = {
        e.description.removesuffix(" (re-run)")
        for e in Ledger(root / ".ratchet").experiments("f")
        if e.source == "human" and e.metric is not None
    }
    missing = [d for d in acknowledged if not any(m.startswith(d) for m in measured)]
    assert not missing, (missing, done.stdout[-2000:])
