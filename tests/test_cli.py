"""The command line as a user meets it: real `ratchet` processes on real repositories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import CONFIG, MakeProject, git
from ratchet.ledger import Ledger

RATCHET = [sys.executable, "-m", "ratchet.cli"]


def ratchet(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RATCHET, "-C", str(root), *args], capture_output=True, text=True, timeout=timeout
    )


def test_run_then_log_json_tsv_show_and_plot(make_project: MakeProject, tmp_path: Path) -> None:
    root = make_project()
    result = ratchet(root, "run", "--max-experiments", "4", "--tag", "cli")
    assert result.returncode == 0, result.stderr
    assert "exp 0 kept" in result.stdout and "loop cli: best score" in result.stdout
    rows = json.loads(ratchet(root, "log", "--json").stdout)
    assert [row["id"] for row in rows] == [0, 1, 2, 3]
    assert {"id", "status", "metric", "description", "commit"} <= set(rows[0])
    assert rows[0]["status"] == "kept" and rows[0]["description"] == "baseline"
    tsv = ratchet(root, "log", "--tsv").stdout.splitlines()
    assert tsv[0].split("\t") == ["commit", "score", "memory_gb", "status", "description"]
    assert len(tsv) == 5
    assert len(rows[0]["runs"]) == 3  # the baseline, measured three times by default
    table = ratchet(root, "log").stdout
    assert "baseline" in table and "score" in table
    assert "noise band: ±0 " in table  # this toy metric does not vary between runs
    shown = ratchet(root, "show", "1").stdout
    assert "exp 1" in shown and "diff" in shown and "log tail" in shown
    output = tmp_path / "progress.png"
    plotted = ratchet(root, "plot", "-o", str(output))
    assert plotted.returncode == 0 and output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = [row for row in rows if row["status"] == "kept"]
    subjects = git(root, "log", "--format=%s", "main..ratchet/cli").splitlines()
    assert len(subjects) == len(kept)
    # A note for the agent is the one thing a reader writes.
    noted = ratchet(root, "note", "try a smaller WIDTH")
    assert noted.returncode == 0 and "noted for loop cli" in noted.stdout, noted.stderr
    assert Ledger(root / ".ratchet", read_only=True).notes("cli") == ["try a smaller WIDTH"]


def test_user_mistakes_are_one_clear_line_without_a_traceback(
    make_project: MakeProject, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = ratchet(empty, "run")
    assert missing.returncode == 2
    assert "no ratchet.toml" in missing.stderr and "ratchet init" in missing.stderr
    assert "Traceback" not in missing.stderr

    root = make_project(config=CONFIG.replace('goal = "minimize"', 'gaol = "minimize"'))
    bad = ratchet(root, "run")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert 'ratchet.toml:9:1: unknown key `gaol` in [metric]; did you mean "goal"?' in " ".join(
        bad.stderr.split()
    )

    dirty = make_project(name="dirty")
    (dirty / "train.py").write_text("LR = 2\n")
    refused = ratchet(dirty, "run")
    assert refused.returncode == 2 and "uncommitted changes to train.py" in refused.stderr
    assert (dirty / "train.py").read_text() == "LR = 2\n"

    nothing = ratchet(make_project(name="fresh"), "log")
    assert nothing.returncode == 2 and "ratchet run" in nothing.stderr


SLOW = """\
import time
LR = 0.5
print("started", flush=True)
time.sleep(0.5 if LR == 0.5 else 60)
print("score:", LR)
"""


def test_ctrl_c_records_interrupted_and_the_next_run_resumes(make_project: MakeProject) -> None:
    # A budget long enough that exp 1 is still running when Ctrl-C comes (not over budget).
    root = make_project(train=SLOW, config=CONFIG.replace('budget = "10s"', 'budget = "60s"'))
    process = subprocess.Popen(
        [*RATCHET, "-C", str(root), "run", "--tag", "c"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = root / ".ratchet" / "loops" / "c" / "logs" / "1.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and "started" in log.read_text()):
        assert time.monotonic() < deadline, "experiment 1 never started"
        time.sleep(0.1)
    # While exp 1 runs, a second loop on the same project is refused.
    second = ratchet(root, "run", "--tag", "c")
    assert second.returncode == 2 and "already running" in second.stderr
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    rows = json.loads(ratchet(root, "log", "--json").stdout)
    assert rows[1]["status"] == "interrupted"
    # The next run resumes: numbering goes on after the interrupted one.
    resumed = ratchet(root, "run", "--tag", "c", "--max-experiments", "1", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    ids = [row["id"] for row in json.loads(ratchet(root, "log", "--json").stdout)]
    assert ids == [0, 1, 2]
    assert not any(pid_alive(p) for p in child_pids(process.pid))


def child_pids(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_init_recognises_an_autoresearch_folder(tmp_path: Path) -> None:
    for name in ("prepare.py", "train.py"):
        (tmp_path / name).write_text("# x\n")
    (tmp_path / "program.md").write_text("mine\n")
    result = ratchet(tmp_path, "init")
    assert result.returncode == 0 and "autoresearch-style" in result.stdout
    config = (tmp_path / "ratchet.toml").read_text()
    assert 'editable = "train.py"' in config and 'locked   = ["prepare.py"]' in config
    assert 'name = "val_bpb"' in config and 'goal = "minimize"' in config
    assert (tmp_path / "program.md").read_text() == "mine\n"  # the user's own is kept
    again = ratchet(tmp_path, "init")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_doctor_reports_git_python_and_gpus(make_project: MakeProject) -> None:
    result = ratchet(make_project(), "doctor")
    assert result.returncode == 0, result.stdout
    assert "git version" in result.stdout and "python 3." in result.stdout
    assert "GPU" in result.stdout or "no NVIDIA GPU" in result.stdout


def test_the_review_gate_without_a_terminal_says_how_to_answer(make_project: MakeProject) -> None:
    root = make_project(
        config=CONFIG.replace('budget = "10s"', 'budget = "10s"\nreview = "propose"')
    )
    result = ratchet(root, "run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert 'review = "auto"' in result.stderr and "editor" in result.stderr


def test_readers_never_write_and_a_damaged_record_is_one_clear_line(
    make_project: MakeProject,
) -> None:
    root = make_project()
    assert ratchet(root, "run", "--max-experiments", "2", "--tag", "r").returncode == 0
    folder = root / ".ratchet"
    ledger = folder / "ledger.sqlite"

    def state() -> dict[str, tuple[int, int]]:
        """Every file of .ratchet/ but SQLite's own shared-memory pair, which any reader of a
        WAL database maps (it holds no record)."""
        return {
            p.name: (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.iterdir()
            if not p.name.endswith(("-wal", "-shm"))
        }

    before = state()
    for args in (("log",), ("log", "--json"), ("log", "--tsv"), ("show", "1")):
        assert ratchet(root, *args).returncode == 0, args
    assert state() == before  # not a byte of the record, nor a new file beside it

    for bad in ("bad tag", "a..b", "-x", "x.lock"):
        refused = ratchet(root, "log", f"--tag={bad}")
        assert refused.returncode == 2 and "cannot name a loop" in refused.stderr, bad
        assert "Traceback" not in refused.stderr

    good = ledger.read_bytes()
    for damage, said in ((b"", "empty (0 bytes)"), (b"not a database" * 100, "cannot be read")):
        for suffix in ("-wal", "-shm"):
            (folder / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
        ledger.write_bytes(damage)
        for args in (("log",), ("run", "--max-experiments", "1")):
            result = ratchet(root, *args)
            assert result.returncode == 2, (args, result.stderr)
            assert said in result.stderr and "Traceback" not in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) <= 3  # one line, perhaps wrapped
        assert ledger.read_bytes() == damage  # refused, never "repaired" into a new record
    ledger.write_bytes(good)


SPENT = """\
FLAG = True
print("score: 1.0" if FLAG else "score: 2.0")
"""


def test_an_agent_with_nothing_left_ends_the_loop_and_the_exit_summary_is_bounded(
    make_project: MakeProject,
) -> None:
    one_run = CONFIG.replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]")
    spent = make_project(train=SPENT, config=one_run.replace("mutate", "portfolio"), name="spent")
    # No --max-experiments: only the agent's running out can end this loop.
    result = ratchet(spent, "run", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "no more proposals: the portfolio agent drew" in " ".join(result.stdout.split())
    statuses = [row["status"] for row in json.loads(ratchet(spent, "log", "--json").stdout)]
    assert statuses[:2] == ["kept", "discarded"] and set(statuses[2:]) == {"invalid"}
    assert len(statuses) <= 2 + 3 + 2  # three in a row close it; a slot may have had one more

    root = make_project(config=one_run)
    result = ratchet(root, "run", "--max-experiments", "26", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split("│")[0].strip() for line in result.stdout.splitlines() if "│" in line]
    numbers = [int(n) for n in rows if n.isdigit()]
    assert numbers and len(numbers) <= 20 and numbers[-1] == 25, numbers
    assert "(and 6 earlier experiments: `ratchet log --all`)" in result.stdout


def test_a_running_experiment_shows_its_time_so_far() -> None:
    from ratchet.experiment import Experiment, Status
    from ratchet.view import experiments_table
    from rich.console import Console

    running = Experiment(3, "t", Status.RUNNING, "slow one", "portfolio", "abc")
    running.started_at = time.time() - 75
    console = Console(width=120, record=True)
    console.print(experiments_table([running], "score"))
    assert "1:15" in console.export_text() or "1:16" in console.export_text()


def test_each_loop_has_its_own_results_tsv_and_log_tsv_prints_it(
    make_project: MakeProject,
) -> None:
    one_run = CONFIG.replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]")
    root = make_project(config=one_run)
    (root / ".ratchet").mkdir()
    old = "commit\tscore\tmemory_gb\tstatus\tdescription\nabc1234\t9.0\t0.0\tkeep\told row\n"
    (root / ".ratchet" / "results.tsv").write_text(old)  # every loop mixed, as Ratchet wrote it
    (root / ".ratchet" / "loops" / "a").mkdir(parents=True)
    (root / ".ratchet" / "loops" / "a" / "results.tsv").write_text(old)  # a forgotten loop's
    for tag, runs in (("a", "3"), ("b", "2")):
        result = ratchet(root, "run", "--tag", tag, "--max-experiments", runs, timeout=120)
        assert result.returncode == 0, result.stderr
    for tag, rows in (("a", 3), ("b", 2)):
        own = (root / ".ratchet" / "loops" / tag / "results.tsv").read_text()
        lines = own.splitlines()
        assert lines[0] == "commit\tscore\tmemory_gb\tstatus\tdescription"
        assert len(lines) == 1 + rows and lines[1].endswith("\tkeep\tbaseline")
        # `ratchet log --tsv` (the notebook's source) prints exactly that loop's file.
        assert ratchet(root, "log", "--tsv", "--tag", tag).stdout == own
    # Where autoresearch's users look: the loop that ran last, alone.
    latest = root / ".ratchet" / "results.tsv"
    assert latest.is_symlink()
    assert latest.read_text() == (root / ".ratchet" / "loops" / "b" / "results.tsv").read_text()
