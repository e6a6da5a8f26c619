"""The experiment is the adversary, and its folder its weapon: after a run Ratchet reads the
trace, hashes the locked files and copies the artefacts out of it. Through the real loop, in the
real sandbox, a run leaves another kind of file where a regular one is expected (a FIFO, a
socket, a link to /dev/zero, a 1 TiB sparse file, a folder); each ends refused, voided or
harmless, the loop never hangs nor ends, and an honest edit in the same loop is still kept
(issue items 5 and 6). Every attack prints MADE once its file is really there."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from agents import ScriptedAgent
from conftest import MakeProject
from loops import engine_for, run
from ratchet.engine import Engine
from ratchet.events import Event, OutputLine
from ratchet.experiment import Experiment, Status
from ratchet.ledger import Ledger
from ratchet.runners import wrapper
from ratchet.runners.sandbox import find_bwrap, probe
from test_sandbox_attacks import FAST, HONEST, attack

pytestmark = [
    pytest.mark.skipif(probe(find_bwrap()) is not None, reason="no bubblewrap sandbox here"),
    # A run that blocks Ratchet fails the session with every stack shown, never hangs it (a
    # thread blocked on a FIFO would also hold up the event loop's close after a plain fail).
    pytest.mark.timeout(240, method="thread"),
]
LOOP_DEADLINE_S = 200
TIB = "1 << 40"  # in the runs' code
TIB_BYTES = 1 << 40
LIST = 'print("MADE", os.popen("ls -laR").read())\nsys.stdout.flush()\n'


def made(body: str) -> tuple[object, str]:
    """An attack whose body ends by listing what it made (`ls -laR`, checked in its log)."""
    return attack(body + "\n" + LIST)


async def run_loop(engine: Engine, n: int) -> list[Event]:
    return await asyncio.wait_for(run(engine, n), LOOP_DEADLINE_S)


def log_of(exp: Experiment) -> str:
    return Path(exp.log_path).read_text(errors="replace")


def assert_made(log: str, name: str, kind: str, size: int | None = None) -> None:
    """The run's own listing shows `name` as `kind` (ls's first letter: p FIFO, s socket,
    l link, d folder, - file) of `size`: the hostile file really was there when it ended."""
    lines = [line.split() for line in log.splitlines() if "MADE" not in line]
    found = [f for f in lines if len(f) > 8 and f[8] == name and len(f[0]) == 10]
    assert found and found[0][0][0] == kind, (name, kind, log)
    assert size is None or found[0][4] == str(size), found[0]


TRACE_CONFIG = FAST.replace('goal = "minimize"\n', 'goal = "minimize"\ntrace = "failures.txt"\n')

TRACE_ATTACKS = {
    "fifo": made('os.mkfifo("failures.txt")'),
    "zero": made('os.symlink("/dev/zero", "failures.txt")'),
    "socket": made(
        'import socket\nsock = socket.socket(socket.AF_UNIX)\nsock.bind("failures.txt")'
    ),
    "folder": made('os.makedirs("failures.txt/inside")'),
    "sparse": made(f'open("failures.txt", "wb").close()\nos.truncate("failures.txt", {TIB})'),
    "locked_sparse": made(f'os.truncate("prepare.py", {TIB})'),
    "locked_fifo": made('os.remove("prepare.py")\nos.mkfifo("prepare.py")'),
    "locked_urandom": made('os.remove("prepare.py")\nos.symlink("/dev/urandom", "prepare.py")'),
    "locked_folder": made('os.remove("prepare.py")\nos.mkdir("prepare.py")'),
}

TRACE_PROOF = {
    "fifo": ("failures.txt", "p"),
    "zero": ("failures.txt", "l"),
    "socket": ("failures.txt", "s"),
    "folder": ("failures.txt", "d"),
    "sparse": ("failures.txt", "-", TIB_BYTES),
    "locked_sparse": ("prepare.py", "-", TIB_BYTES),
    "locked_fifo": ("prepare.py", "p"),
    "locked_urandom": ("prepare.py", "l"),
    "locked_folder": ("prepare.py", "d"),
}


async def test_hostile_files_at_the_trace_and_locked_paths_are_refused_unread(
    make_project: MakeProject,
) -> None:
    root = make_project(config=TRACE_CONFIG)
    engine = engine_for(root, ScriptedAgent([*TRACE_ATTACKS.values(), HONEST]))
    await run_loop(engine, len(TRACE_ATTACKS) + 2)
    rows = engine.ledger.experiments("t")
    assert len(rows) == len(TRACE_ATTACKS) + 2  # the loop went through every one
    by_name = dict(zip(TRACE_ATTACKS, rows[1:-1], strict=True))
    for name, exp in by_name.items():
        assert_made(log_of(exp), *TRACE_PROOF[name])
        assert exp.status is not Status.KEPT, name
    # The trace: named, never opened or followed; the run itself is judged on its score.
    expected = {
        "fifo": "named pipe",
        "zero": "symbolic link",
        "socket": "not a regular file",
        "folder": "folder",
    }
    for name, words in expected.items():
        exp = by_name[name]
        assert "the trace was not read" in exp.trace_tail and words in exp.trace_tail, (
            name,
            exp.trace_tail,
        )
        assert exp.status is Status.DISCARDED and exp.metric == pytest.approx(5.0), name
    sparse = by_name["sparse"]
    assert sparse.trace_tail.startswith("\0" * 100) and "cut" in sparse.trace_tail
    assert len(sparse.trace_tail) < 5000 and sparse.status is Status.DISCARDED
    # A locked file of another size or kind voids the run, unread (1 TiB costs nothing).
    for name in ("locked_sparse", "locked_fifo", "locked_urandom", "locked_folder"):
        exp = by_name[name]
        assert exp.status is Status.VOIDED and "prepare.py" in exp.reason, (name, exp.reason)
    honest = rows[-1]
    assert honest.status is Status.KEPT, honest.reason
    assert engine.workspace.branch_tip() == honest.commit
    assert (root / "prepare.py").read_text().startswith("# locked")  # the user's file


EVAL_TRAIN = """\
import os
LR = 0.5


WIDTH = 8
score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100
with open("model.txt", "w") as out:
    out.write(f"{score:.6f}\\n")
print("trained")
"""

EVALUATE = """\
import os, sys
if os.path.isdir("outputs"):
    print("carried:", sorted(os.listdir("outputs")), os.listdir("outputs/deep"))
try:
    with open("model.txt") as handle:
        score = float(handle.read())
except (OSError, ValueError) as error:
    sys.exit(f"no model: {error}")
if score == 7:  # an evaluator a model can steer into leaving a FIFO where its trace goes
    os.mkfifo("failures.txt")
    print("MADE", os.popen("ls -la").read())
elif score > 1:
    with open("failures.txt", "w") as out:
        out.write(f"EVAL-TRACE case 1: score {score} is too high\\n")
print(f"score: {score}")
"""

EVAL_CONFIG = FAST.replace('locked = ["prepare.py"]', 'locked = ["prepare.py", "evaluate.py"]')
EVAL_CONFIG = EVAL_CONFIG.replace(
    'goal = "minimize"\n',
    'goal = "minimize"\neval = "{python} evaluate.py"\ntrace = "failures.txt"\n'
    'artefacts = ["model.txt", "outputs"]\n',
)
WORSE = 'open("model.txt", "w").write("5.0\\n")'

EVAL_ATTACKS = {
    "worse": made(WORSE),  # evaluated: its clean room holds the evaluator's trace
    "crash": made('os.mkfifo("failures.txt")\n' + LIST + "sys.exit(3)"),
    "eval_fifo": made('open("model.txt", "w").write("7\\n")'),
    "model_fifo": made('os.mkfifo("model.txt")'),
    "model_zero": made('os.symlink("/dev/zero", "model.txt")'),
    "model_sparse": made(f'open("model.txt", "wb").close()\nos.truncate("model.txt", {TIB})'),
    "folder": made(
        WORSE + '\nos.makedirs("outputs/deep")\nopen("outputs/deep/ok.txt", "w").write("ok")\n'
        'os.mkfifo("outputs/pipe")\nos.symlink("/dev/urandom", "outputs/random")\n'
        f'open("outputs/holes", "wb").close()\nos.truncate("outputs/holes", {TIB})\n'
        'import socket\nsocket.socket(socket.AF_UNIX).bind("outputs/sock")'
    ),
}

EVAL_PROOF = {
    "worse": [("model.txt", "-")],
    "crash": [("failures.txt", "p")],
    "eval_fifo": [("model.txt", "-")],
    "model_fifo": [("model.txt", "p")],
    "model_zero": [("model.txt", "l")],
    "model_sparse": [("model.txt", "-", TIB_BYTES)],
    "folder": [("pipe", "p"), ("random", "l"), ("holes", "-", TIB_BYTES), ("sock", "s")],
}


async def test_hostile_artefacts_stay_behind_and_a_crash_shows_no_other_runs_trace(
    make_project: MakeProject,
) -> None:
    root = make_project(train=EVAL_TRAIN, config=EVAL_CONFIG, extra={"evaluate.py": EVALUATE})
    honest = (HONEST[0], HONEST[1])
    engine = engine_for(root, ScriptedAgent([*EVAL_ATTACKS.values(), honest]))
    events = await run_loop(engine, len(EVAL_ATTACKS) + 2)
    rows = engine.ledger.experiments("t")
    assert len(rows) == len(EVAL_ATTACKS) + 2
    baseline, by_name = rows[0], dict(zip(EVAL_ATTACKS, rows[1:-1], strict=True))
    assert baseline.status is Status.KEPT and baseline.metric == pytest.approx(0.2)
    for name, exp in by_name.items():
        for proof in EVAL_PROOF[name]:
            assert_made(log_of(exp), *proof)
        assert exp.status is not Status.KEPT, name
    notes = [e.line for e in events if isinstance(e, OutputLine) and "not carried" in e.line]
    # The evaluator's trace is shown for the run it evaluated...
    assert "EVAL-TRACE" in by_name["worse"].trace_tail
    # ...and never for the next run, whose command crashed before any evaluator ran.
    crash = by_name["crash"]
    assert crash.status is Status.CRASHED and "exit code 3" in crash.reason, crash.reason
    assert "EVAL-TRACE" not in crash.trace_tail and "named pipe" in crash.trace_tail
    # An evaluator that leaves a FIFO at its trace: named, never opened.
    steered = by_name["eval_fifo"]
    assert_made(Path(steered.log_path).with_suffix(".eval.log").read_text(), "failures.txt", "p")
    assert "named pipe" in steered.trace_tail and steered.metric == pytest.approx(7.0)
    # An artefact that is not a regular file of a sane size is not carried: the evaluator
    # finds no model and says so; Ratchet never blocked on it nor read 1 TiB.
    for name, words in (
        ("model_fifo", "named pipe"),
        ("model_zero", "symbolic link"),
        ("model_sparse", "over"),
    ):
        exp = by_name[name]
        assert exp.status is Status.CRASHED and "no model" in exp.reason, (name, exp.reason)
        assert any("model.txt" in note and words in note for note in notes), (name, notes)
        assert "not carried" in exp.log_tail and words in exp.log_tail, exp.log_tail  # recorded
    # A folder is copied entry by entry: the regular files carried, the rest noted.
    folder = by_name["folder"]
    assert folder.status is Status.DISCARDED and folder.metric == pytest.approx(5.0)
    assert "carried: ['deep'] ['ok.txt']" in Path(folder.log_path).with_suffix(
        ".eval.log"
    ).read_text(errors="replace")
    for entry in ("outputs/pipe", "outputs/random", "outputs/holes", "outputs/sock"):
        assert any(entry in note for note in notes), (entry, notes)
    assert rows[-1].status is Status.KEPT, rows[-1].reason


async def test_an_error_measuring_one_run_voids_it_and_the_loop_goes_on(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever Ratchet hits reading a run (here the MemoryError a 1 TiB read once raised)
    becomes that experiment's status and reason; the next honest edit is still kept."""
    real = wrapper.hash_files
    calls = {"n": 0}

    def failing(
        root: Path, paths: Iterable[str], expected: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        calls["n"] += 1
        if calls["n"] == 4:  # the first experiment's check after its run
            raise MemoryError("reading a locked file")
        return real(root, paths, expected)

    monkeypatch.setattr(wrapper, "hash_files", failing)
    root = make_project(config=FAST)
    engine = engine_for(root, ScriptedAgent([made("pass"), HONEST]))
    await run_loop(engine, 3)
    _baseline, broken, honest = engine.ledger.experiments("t")
    assert calls["n"] >= 4
    assert broken.status is Status.VOIDED, broken.reason
    assert "Ratchet could not measure this run: MemoryError" in broken.reason
    assert honest.status is Status.KEPT, honest.reason


DYING_RUN = """
import asyncio, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from agents import ScriptedAgent, replace
from ratchet import measure
from ratchet.config import load_config
from ratchet.engine import Engine

real = measure.Measurer.run


async def dying(self, **kw):
    if "HOSTILE" in kw["text"]:
        os._exit(71)  # the harness killed while it measures (the kernel's OOM killer, say)
    return await real(self, **kw)


measure.Measurer.run = dying
steps = [(lambda text: text + "\\nHOSTILE = 1\\n", "hostile")] if sys.argv[1] == "1" else []
steps.append((replace("WIDTH = 8", "WIDTH = 12"), "honest"))
engine = Engine(load_config(Path({root!r})), tag="t", agent=ScriptedAgent(steps))
asyncio.run(engine.run(max_experiments=int(sys.argv[2])))
asyncio.run(engine.close())
"""


def test_a_run_that_kills_the_harness_is_dropped_after_three_starts_not_run_at_every_start(
    make_project: MakeProject,
) -> None:
    root = make_project(config=FAST)
    script = root.parent / "dying_run.py"
    script.write_text(DYING_RUN.format(tests=str(Path(__file__).parent), root=str(root)))
    codes = []
    for start, quota in ((1, 2), (2, 2), (3, 2), (4, 3)):
        done = subprocess.run(
            [sys.executable, str(script), str(start), str(quota)],
            capture_output=True,
            text=True,
            timeout=LOOP_DEADLINE_S,
        )
        codes.append(done.returncode)
    # Killed, run again twice and killed each time, then dropped (said) and the loop goes on.
    assert codes == [71, 71, 71, 0], codes
    rows = Ledger(root / ".ratchet").experiments("t")
    assert [(e.status, e.rerun_of) for e in rows] == [
        (Status.KEPT, None),
        (Status.INTERRUPTED, None),
        (Status.INTERRUPTED, 1),
        (Status.INTERRUPTED, 2),
        (Status.KEPT, None),
    ], [(e.status, e.rerun_of, e.description) for e in rows]
