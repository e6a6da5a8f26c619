"""The evaluated code against the evaluator's channel: attacks from inside the editable file,
run by a locked evaluator (`[metric] eval`), through the real loop in the real sandbox.

The examples' evaluators run the edited code through `ratchet.isolate` (a nested sandbox).
Each attack must end refused, voided or harmless there, with an honest edit in the same loop
still kept. Each is also played against the same evaluator with the nested sandbox taken out
(the same protocol, a plain child; or, for fastsort, the sort in the evaluator's process), to
show the test is not vacuous: there the forged score is kept, or the harness voids it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import git
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Experiment, Status
from ratchet.runners.sandbox import find_bwrap, probe
from test_sandbox_attacks import copy_agentic

pytestmark = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LOOP_DEADLINE_S = 200  # a loop that hangs fails here, before pytest's own timeout

# The ablation: the same boot line, without the namespaces and the read-only view.
PLAIN_BOOT = """
import json, os, sys
spec = json.loads(sys.argv[1])
for fd, target in spec["fds"]:
    if fd != target:
        os.dup2(fd, target)
        os.close(fd)
os.chdir(spec["cwd"])
os.execvp(sys.argv[2], sys.argv[2:])
"""

# What the attacks share (DAEMON), and their launch at import (LAUNCH): in the evaluator's
# child only (the loop's command runs triage.py as a script), a daemon, double-forked, in its
# own session, stdio on /dev/null, runs `_attack`; each gives up after 20 s.
DAEMON = """

import os as _os, signal as _signal, time as _time

FORGED = b"accuracy: 1.000000\\n"


def _processes():
    found = {}
    for name in _os.listdir("/proc"):
        if name.isdigit():
            try:
                found[int(name)] = open(f"/proc/{name}/cmdline", "rb").read().split(b"\\0")
            except OSError:
                pass
    return found


def _evaluator():
    return next(p for p, a in _processes().items() if a[1:2] and a[1].endswith(b"evaluate.py"))


def _init_shell():
    return next(p for p, a in _processes().items()
                if p != 1 and a[0] == b"/bin/sh" and b"ratchet-init" in a)


def _ended(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _until(condition, seconds=20.0):
    end = _time.monotonic() + seconds
    while _time.monotonic() < end and not condition():
        _time.sleep(0.002)


def _pipes():
    for pid in _processes():
        try:
            fds = _os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if _os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                    yield f"/proc/{pid}/fd/{fd}"
            except OSError:
                pass


def _write(path, data):
    try:
        with open(path, "wb", buffering=0) as handle:
            handle.write(data)
    except OSError:
        pass
"""
LAUNCH = """

if __name__ != "__main__":
    _child = _os.fork()
    if _child:
        _os.waitpid(_child, 0)
    else:
        _os.setsid()
        if _os.fork():
            _os._exit(0)
        _null = _os.open("/dev/null", _os.O_RDWR)
        for _fd in (0, 1, 2):
            _os.dup2(_null, _fd)
        try:
            _attack()
        except BaseException:
            pass
        _os._exit(0)
"""

# The attack: the init shell stopped, its stdout written once the evaluator ended.
STOP_THE_INIT_SHELL = """
def _attack():
    shell, evaluator = _init_shell(), _evaluator()
    _os.kill(shell, _signal.SIGSTOP)
    out = open(f"/proc/{shell}/fd/1", "wb", buffering=0)
    _until(lambda: _ended(evaluator))
    out.write(FORGED)
    _os.kill(shell, _signal.SIGCONT)
"""

# No one stopped: every pipe of every process written every 2 ms, until it is killed.
FLOOD_EVERY_PIPE = """
def _attack():
    end = _time.monotonic() + 20
    while _time.monotonic() < end:
        for path in list(_pipes()):
            _write(path, FORGED)
        _time.sleep(0.002)
"""

# The attack, but the daemon stays: it writes again every 2 ms until it is killed.
WRITE_LATE_AND_STAY = """
def _attack():
    shell, evaluator = _init_shell(), _evaluator()
    _os.kill(shell, _signal.SIGSTOP)
    _until(lambda: _ended(evaluator))
    _write(f"/proc/{shell}/fd/1", FORGED)
    _os.kill(shell, _signal.SIGCONT)
    end = _time.monotonic() + 20
    while _time.monotonic() < end:
        _write(f"/proc/{shell}/fd/1", FORGED)
        _time.sleep(0.002)
"""

# The evaluator stopped, a forged summary and status report written, then the evaluator killed.
STOP_AND_KILL_THE_EVALUATOR = """
def _attack():
    shell, evaluator = _init_shell(), _evaluator()
    _os.kill(evaluator, _signal.SIGSTOP)
    for path in (f"/proc/{evaluator}/fd/1", f"/proc/{shell}/fd/1", "/proc/1/fd/1"):
        _write(path, b"---\\n" + FORGED)
    _write(f"/proc/{shell}/fd/3", b"exit 0 leftovers 0\\n")
    _os.kill(evaluator, _signal.SIGKILL)
"""

ATTACKS = {
    "stop the init shell": STOP_THE_INIT_SHELL,
    "flood every pipe": FLOOD_EVERY_PIPE,
    "write late and stay": WRITE_LATE_AND_STAY,
    "stop and kill the evaluator": STOP_AND_KILL_THE_EVALUATOR,
}


def armed(name: str) -> tuple[object, str]:
    """The edit that appends attack `name` to triage.py."""
    return (lambda text: text + DAEMON + ATTACKS[name] + LAUNCH, name)


def without_isolation(folder: Path) -> None:
    """The evaluator with the nested sandbox taken out: its child is a plain process."""
    evaluator = folder / "evaluate.py"
    marker = "from ratchet.isolate import CallFailed, Worker\n"
    text = evaluator.read_text()
    assert marker in text
    patch = f"    import ratchet.isolate\n    ratchet.isolate.BOOT = {PLAIN_BOOT!r}\n"
    evaluator.write_text(text.replace(marker, marker + patch))
    git(folder, "commit", "-qam", "the evaluator without its nested sandbox")


async def loop(folder: Path, agent: ScriptedAgent, n: int) -> list[Experiment]:
    engine = Engine(load_config(folder), tag="e", agent=agent)
    try:
        await asyncio.wait_for(engine.run(max_experiments=n), LOOP_DEADLINE_S)
    finally:
        await engine.close()
    return engine.ledger.experiments("e")


def eval_log(folder: Path, experiment: Experiment) -> str:
    log = folder / ".ratchet" / "loops" / "e" / "logs" / f"{experiment.id}.eval.log"
    return log.read_text() if log.exists() else ""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_the_evaluated_code_cannot_write_the_evaluators_output(
    tmp_path: Path, name: str
) -> None:
    folder = copy_agentic(tmp_path)
    attack = armed(name)
    honest = (replace("MIN_SCORE = 1.05", "MIN_SCORE = 0.5"), "lower the threshold")
    baseline, attacker, fair = await loop(folder, ScriptedAgent([attack, honest]), 3)
    assert baseline.metric == pytest.approx(0.56)
    assert attacker.status is Status.DISCARDED, attacker.reason
    assert attacker.metric == pytest.approx(0.56)  # its own answers, nothing more
    assert "accuracy: 1.000000" not in eval_log(folder, attacker)
    assert fair.status is Status.KEPT and fair.metric > 0.56


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_without_the_nested_sandbox_the_same_attacks_forge_the_score(
    tmp_path: Path, name: str
) -> None:
    folder = copy_agentic(tmp_path)
    without_isolation(folder)
    attack = armed(name)
    baseline, attacker = await loop(folder, ScriptedAgent([attack]), 2)
    assert baseline.metric == pytest.approx(0.56)
    if name == "stop the init shell":  # the attack: kept at 1.0
        assert attacker.status is Status.KEPT and attacker.metric == pytest.approx(1.0)
    elif name == "flood every pipe":  # its writes reach the status pipe too: voided
        assert attacker.status is Status.VOIDED, attacker.reason
    elif name == "write late and stay":  # forged, but it outlived the evaluator: voided
        assert "accuracy: 1.000000" in eval_log(folder, attacker)
        assert attacker.status is Status.VOIDED and "process(es)" in attacker.reason
    else:  # a killed evaluator gives no score
        assert attacker.status is not Status.KEPT and attacker.metric is None


# --- examples/fastsort: the clock ---------------------------------------------------------------

# The attack: no import, no banned name. `time.perf_counter` is replaced by a clock
# that skips the time spent sorting; the sort itself runs SLOWER times (slower than the
# baseline's, which the test chooses).
CLOCK = """

_os = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == "_wrap_close"][0]
_time = _os.__init__.__globals__["sys"].modules["time"]
_real = _time.perf_counter
_skipped = [0.0]


def _clock():
    return _real() - _skipped[0]


_time.perf_counter = _clock
_slow = sort


def sort(values):
    started = _real()
    for _ in range(SLOWER - 1):
        _slow(values)
    result = _slow(values)
    _skipped[0] += _real() - started
    return result
"""

# The ablation: the old way, the sort imported into the evaluator's process and timed there.
IN_PROCESS = """
import importlib
import sys
import time


class CallFailed(Exception):
    pass


class Worker:
    def __init__(self, folder, module, timeout_s):
        sys.path.insert(0, str(folder))
        self.module = importlib.import_module(module)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        pass

    def call(self, function, *args):
        started = time.perf_counter()
        try:
            value = getattr(self.module, function)(*args)
        except Exception as error:
            raise CallFailed(str(error)) from error
        return value, time.perf_counter() - started
"""


def copy_fastsort(tmp_path: Path, in_process: bool) -> Path:
    """The example, for the isolated evaluator from a slow start (runs of 100: the honest
    edit wins by far on a loaded machine); for the in-process one, which times every repeat
    (its clock never reaches the deadline), as it ships, and with the sort in its process."""
    folder = tmp_path / "fastsort"
    shutil.copytree(EXAMPLES / "fastsort", folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = folder / "ratchet.toml"
    text = toml.read_text().replace('"python ', f'"{sys.executable} ')
    toml.write_text(text.replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]"))
    evaluator, editable = folder / "evaluate.py", folder / "sorting.py"
    if in_process:
        (folder / "inprocess.py").write_text(IN_PROCESS)
        evaluator.write_text(
            evaluator.read_text().replace(
                "from ratchet.isolate import CallFailed, Worker",
                "from inprocess import CallFailed, Worker",
            )
        )
    else:
        toml.write_text(toml.read_text().replace('budget   = "20s"', 'budget   = "12s"'))
        editable.write_text(editable.read_text().replace("RUN_LENGTH = 8", "RUN_LENGTH = 100"))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "example"]):
        git(folder, *args)
    return folder


@pytest.mark.timeout(300)
async def test_the_sort_cannot_stop_the_clock_that_times_it(tmp_path: Path) -> None:
    folder = copy_fastsort(tmp_path, in_process=False)
    clock = (lambda text: text + CLOCK.replace("SLOWER", "4"), "a clock that skips the sort")
    honest = (replace("RUN_LENGTH = 100", "RUN_LENGTH = 24"), "runs of 24")
    baseline, cheat, fair = await loop(folder, ScriptedAgent([clock, honest]), 3)
    assert baseline.status is Status.KEPT and baseline.metric
    # Timed as it ran: worse than the baseline, or (on a loaded machine) past the deadline.
    assert cheat.status in (Status.DISCARDED, Status.TIMEOUT, Status.CRASHED), cheat.reason
    assert cheat.metric is None or cheat.metric > baseline.metric
    assert fair.status is Status.KEPT and fair.metric < baseline.metric, fair.reason


@pytest.mark.timeout(300)
async def test_timed_in_its_own_process_the_same_sort_stops_the_clock(tmp_path: Path) -> None:
    """Not vacuous: with the sort in the evaluator's process, the slow sort looks instant."""
    folder = copy_fastsort(tmp_path, in_process=True)
    clock = (lambda text: text + CLOCK.replace("SLOWER", "2"), "a clock that skips the sort")
    baseline, cheat = await loop(folder, ScriptedAgent([clock]), 2)
    assert baseline.status is Status.KEPT and baseline.metric
    assert cheat.status is Status.KEPT, cheat.reason
    assert cheat.metric is not None and cheat.metric < baseline.metric / 5


def test_the_attacks_texts_are_what_they_say() -> None:
    """The fastsort attack passes the evaluator's rules (no import, no banned name)."""
    sys.path.insert(0, str(EXAMPLES / "fastsort"))
    try:
        import evaluate  # the locked evaluator's rule check, from the example itself

        text = (EXAMPLES / "fastsort" / "sorting.py").read_text() + CLOCK.replace("SLOWER", "4")
        evaluate.check_rules(text)
    finally:
        sys.path.remove(str(EXAMPLES / "fastsort"))
        sys.modules.pop("evaluate", None)


# --- ratchet.isolate on its own ---------------------------------------------------------------

ESCAPE = """
import os, signal, subprocess, sys
outer = int(sys.argv[1])
print("pid", os.getpid(), "processes", sorted(p for p in os.listdir("/proc") if p.isdigit()))
print("outer visible", os.path.exists(f"/proc/{outer}"))
try:
    os.kill(outer, signal.SIGSTOP)
    print("ATTACK-OK signalled")
except OSError as error:
    print("signal:", type(error).__name__)
for path in ("data.txt", "/tmp/scratch.txt"):
    try:
        open(path, "a").write("x")
        print("wrote", path)
    except OSError as error:
        print("write", path, type(error).__name__)
subprocess.Popen("setsid sleep 1000.25 &", shell=True)
"""


def test_an_isolated_child_sees_and_reaches_nothing_outside(tmp_path: Path) -> None:
    from ratchet.isolate import run_isolated

    (tmp_path / "data.txt").write_text("")
    outer = subprocess.Popen(["sleep", "60"])
    try:
        result = run_isolated(
            [sys.executable, "-c", ESCAPE, str(outer.pid)], cwd=tmp_path, timeout_s=60
        )
    finally:
        outer.kill()
        outer.wait()
    said = result.output.decode()
    assert result.exit_code == 0, said
    assert "pid 1 processes []" in said and "outer visible False" in said
    assert "ATTACK-OK" not in said and "signal: ProcessLookupError" in said
    assert "write data.txt OSError" in said and "wrote /tmp/scratch.txt" in said
    assert (tmp_path / "data.txt").read_text() == ""
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if b"1000.25" in _read(p)]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_a_worker_past_its_deadline_is_killed(tmp_path: Path) -> None:
    from ratchet.isolate import CallFailed, Worker

    (tmp_path / "spin.py").write_text("def spin():\n    while True:\n        pass\n")
    started = time.monotonic()
    with Worker(tmp_path, "spin", timeout_s=3) as worker:
        with pytest.raises(CallFailed, match="deadline"):
            worker.call("spin")
        with pytest.raises(CallFailed, match=r"gone|stopped"):
            worker.call("spin")
    assert time.monotonic() - started < 10
