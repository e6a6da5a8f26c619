"""Evolve-style folders as they are (issue 23): an OpenEvolve-shaped folder (initial_program.py,
evaluator.py with a dict-returning `evaluate`) and a ShinkaEvolve-shaped one (initial.py,
evaluate.py writing results/metrics.json and correct.json), each written here, go through
`ratchet init` then a real loop with no edit to what init wrote: the baseline succeeds, a real
gain is kept, an edit that prints the metric (at import and at exit) changes nothing, and an
evaluator's `error` or `correct: false` is a failure with its reason, never a zero."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import commit_all, git, needs_sandbox
from loops import engine_for, run
from ratchet import initialize
from ratchet.cli import main
from ratchet.config import ConfigError, load_config
from ratchet.errors import RatchetError

LOOP_DEADLINE_S = 240  # a loop that hangs fails here, before pytest's own timeout

PROGRAM = textwrap.dedent(
    """\
    # EVOLVE-BLOCK-START
    def search():
        x = 0.0
        return x
    # EVOLVE-BLOCK-END


    if __name__ == "__main__":
        print(search())
    """
)

OPENEVOLVE_EVALUATOR = textwrap.dedent(
    """\
    import importlib.util


    def evaluate(program_path):
        spec = importlib.util.spec_from_file_location("program", program_path)
        program = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(program)
        x = program.search()
        if not isinstance(x, float):
            return {"combined_score": 0.0, "error": f"search() returned {x!r}, not a float"}
        if x < 0:
            return {"combined_score": 0.0, "correct": False}
        print(f"evaluated x = {x}")
        return {"combined_score": 1.0 / (1.0 + (x - 1.0) ** 2), "distance": abs(x - 1.0)}
    """
)

# ShinkaEvolve's evaluate.py, as its run_shinka_eval writes them (without the library).
SHINKA_EVALUATOR = textwrap.dedent(
    """\
    import argparse
    import importlib.util
    import json
    import os


    def main(program_path, results_dir):
        os.makedirs(results_dir, exist_ok=True)
        spec = importlib.util.spec_from_file_location("program", program_path)
        program = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(program)
        x = program.search()
        correct = isinstance(x, float) and x >= 0
        metrics = {"combined_score": 1.0 / (1.0 + (x - 1.0) ** 2) if correct else 0.0,
                   "public": {"x": x if correct else None}, "execution_time_mean": 0.01}
        with open(os.path.join(results_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f)
        with open(os.path.join(results_dir, "correct.json"), "w") as f:
            json.dump({"correct": correct, "error": None if correct else "x out of range"}, f)


    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("--program_path", default="initial.py")
        parser.add_argument("--results_dir", default="results")
        args = parser.parse_args()
        main(args.program_path, args.results_dir)
    """
)

# The program prints the metric, at import and at exit: never read as the metric.
SPOOF = (
    "\nimport atexit\nprint('combined_score: 99.0')\n"
    "atexit.register(print, 'combined_score: 99.0')\n"
)


# The program writes a file beside itself, in the evaluator's clean room.
WRITE_BESIDE = (
    "\nimport os\nopen(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'm.json'), 'w')\n"
)


def _folder(tmp_path: Path, files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for name, text in files.items():
        (root / name).write_text(text)
    commit_all(root)
    bin_dir = tmp_path / "bin"  # `python` on PATH is this interpreter
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(shutil.which('git') or '').parent}")
    return root


@pytest.fixture
def openevolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    files = {
        "initial_program.py": PROGRAM,
        "evaluator.py": OPENEVOLVE_EVALUATOR,
        "config.yaml": "max_iterations: 100\nevaluator:\n  timeout: 30\n  cascade: false\n",
    }
    return _folder(tmp_path, files, monkeypatch)


@pytest.fixture
def shinka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _folder(tmp_path, {"initial.py": PROGRAM, "evaluate.py": SHINKA_EVALUATOR}, monkeypatch)


def _loop(root: Path, steps: list) -> list:
    """`ratchet init`'s files committed as they are, then the loop over `steps`."""
    commit_all(root, "ratchet init")
    engine = engine_for(root, ScriptedAgent(steps))
    asyncio.run(asyncio.wait_for(run(engine, len(steps) + 1), LOOP_DEADLINE_S))
    return engine.ledger.experiments("t")


def test_init_recognises_an_openevolve_folder(
    openevolve: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(openevolve), "init"]) == 0
    said = capsys.readouterr().out
    assert "OpenEvolve" in said and "evaluator.py:evaluate" in said
    config = load_config(openevolve)
    assert config.loop.editable == "initial_program.py"  # not evaluator.py, alphabetically first
    assert "evaluator.py" in config.loop.locked
    assert config.metric.evaluate == "evaluator.py:evaluate"
    assert (config.metric.name, config.metric.goal) == ("combined_score", "maximize")
    assert config.loop.budget_s == 30  # config.yaml's evaluator timeout
    assert config.loop.command == "python -m py_compile initial_program.py"


def test_init_recognises_a_shinkaevolve_folder(
    shinka: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(shinka), "init"]) == 0
    assert "ShinkaEvolve" in capsys.readouterr().out
    config = load_config(shinka)
    assert config.loop.editable == "initial.py" and config.loop.locked == ("evaluate.py",)
    assert (
        config.metric.eval == "python evaluate.py --program_path initial.py --results_dir results"
    )
    assert (config.metric.file, config.metric.metric_key) == (
        "results/metrics.json",
        "combined_score",
    )


def test_init_flags_name_the_editable_file_and_the_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("alpha.py", "best_program.py", "evaluator.py", "solver.py"):
        (tmp_path / name).write_text("print('loss: 1')\n")
    # Several candidates and no layout: no silent alphabetical pick, the flags are named.
    with pytest.raises(RatchetError, match=r"alpha\.py, solver\.py.*--editable FILE"):
        initialize.init(tmp_path)
    assert main(["-C", str(tmp_path), "init"]) == 2
    assert not (tmp_path / "ratchet.toml").exists()
    code = main(
        [
            "-C",
            str(tmp_path),
            "init",
            "--editable",
            "solver.py",
            "--metric",
            "loss",
            "--goal",
            "minimize",
        ]
    )
    assert code == 0
    said = capsys.readouterr().out
    assert "as --editable named it" in said and "as --metric named it" in said
    config = load_config(tmp_path)
    assert (config.loop.editable, config.metric.name, config.metric.goal) == (
        "solver.py",
        "loss",
        "minimize",
    )
    # One candidate: taken, and said to be a guess.
    other = tmp_path / "other"
    other.mkdir()
    (other / "evaluate.py").write_text("")
    (other / "model.py").write_text("print('score: 1')\n")
    _, triplet = initialize.init(other)
    assert triplet.editable == "model.py"
    assert any("only Python file" in note and "guess" in note for note in triplet.notes)
    assert any("placeholder" in note for note in triplet.notes)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('evaluate = "evaluator.py"', "a Python file and a function"),
        ('evaluate = "missing.py:evaluate"', "does not exist"),
        ('evaluate = "train.py:evaluate"', "is the editable file"),
        ('evaluate = "prepare.py:evaluate"\neval = "python x.py"', "either `eval`"),
        ('key = "combined_score"', "`key` names the metric"),
        ('file = "../metrics.json"', "outside the project"),
        ('evaluate = "prepare.py:f"\nfile = "m.json"', "remove one of them"),
        ('file = "m.json"\npattern = "s=([0-9.]+)"', "remove `pattern`"),
        ('python = "python3"', "`python` runs `evaluate`"),
    ],
)
def test_the_evaluator_keys_are_checked_where_they_are(
    make_project, line: str, message: str
) -> None:
    from conftest import CONFIG

    config = CONFIG.replace('goal = "minimize"', 'goal = "minimize"\n' + line)
    root = make_project(config=config)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(root)
    assert str(caught.value).startswith("ratchet.toml:1") and caught.value.line >= 8


def test_a_metric_file_is_read_here_so_it_needs_the_local_runner(make_project) -> None:
    from conftest import CONFIG

    config = CONFIG.replace('goal = "minimize"', 'goal = "minimize"\nfile = "m.json"')
    root = make_project(config=config + '\n[runner]\nkind = "ssh"\nhosts = ["u@h:22"]\n')
    with pytest.raises(ConfigError, match="the ssh runner runs elsewhere") as caught:
        load_config(root)
    assert (caught.value.line, caught.value.col) == (10, 8)  # on the value of `file`


@needs_sandbox
def test_an_openevolve_folder_runs_as_init_wrote_it(
    openevolve: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(openevolve), "init"]) == 0
    experiments = _loop(
        openevolve,
        [
            (replace("x = 0.0", "x = 0.7"), "closer to 1"),
            (lambda text: text + SPOOF, "spoof"),
            (replace("x = 0.7", "x = 'far'"), "not a float"),
            (replace("x = 0.7", "x = -0.5"), "negative"),
            (lambda text: text + WRITE_BESIDE, "writes beside the evaluator"),
        ],
    )
    base, gain, spoof, error, incorrect, writer = experiments
    assert base.status == "kept" and base.metric == pytest.approx(0.5)
    assert base.secondary.get("distance") == pytest.approx(1.0)
    assert gain.status == "kept" and gain.metric == pytest.approx(1 / 1.09)
    assert spoof.metric == pytest.approx(1 / 1.09) and spoof.status == "discarded", spoof.reason
    assert error.status == "crashed" and "not a float" in error.reason and error.metric is None
    assert incorrect.status == "crashed" and "correct: false" in incorrect.reason
    # Confined: the program (imported by the evaluator) cannot write the evaluator's folder.
    assert writer.status == "crashed" and "Read-only file system" in writer.reason
    # `show` gives the evaluator's log tail, which holds the metric, beside the command's.
    capsys.readouterr()
    assert main(["-C", str(openevolve), "show", str(gain.id)]) == 0
    shown = capsys.readouterr().out
    evaluator = shown.split("evaluator log tail", 1)[1]
    assert "evaluated x = 0.7" in evaluator and "combined_score: 0.917" in evaluator


@needs_sandbox
def test_a_shinkaevolve_folder_runs_as_init_wrote_it(shinka: Path) -> None:
    assert main(["-C", str(shinka), "init"]) == 0
    experiments = _loop(
        shinka,
        [
            (replace("x = 0.0", "x = 0.7"), "closer to 1"),
            (lambda text: text + SPOOF, "spoof"),
            (replace("x = 0.7", "x = -0.5"), "negative"),
        ],
    )
    base, gain, spoof, incorrect = experiments
    assert base.status == "kept" and base.metric == pytest.approx(0.5)
    assert base.secondary.get("execution_time_mean") == pytest.approx(0.01)
    assert gain.status == "kept" and gain.metric == pytest.approx(1 / 1.09)
    assert spoof.metric == pytest.approx(1 / 1.09) and spoof.status == "discarded", spoof.reason
    assert incorrect.status == "crashed" and "x out of range" in incorrect.reason


def test_doctor_says_when_the_offline_agent_has_nothing_to_tune(
    openevolve: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["-C", str(openevolve), "init"]) == 0
    capsys.readouterr()
    assert main(["-C", str(openevolve), "doctor"]) == 1
    said = " ".join(capsys.readouterr().out.split())
    assert "the portfolio agent has nothing to tune in initial_program.py" in said
    assert "evaluate: evaluator.py defines evaluate(program_path)" in said
    # With a module-level constant, it has something to tune.
    program = openevolve / "initial_program.py"
    program.write_text("START = 0.0\n" + program.read_text())
    assert main(["-C", str(openevolve), "doctor"]) in (0, 1)
    said = " ".join(capsys.readouterr().out.split())
    assert "the portfolio agent tunes 1 constant of initial_program.py: START" in said


@needs_sandbox
def test_without_evaluate_the_printed_score_wins(openevolve: Path) -> None:
    """Not vacuous: the same spoof against a hand-written adapter that prints the score (the
    way such folders were run before `evaluate`) is believed."""
    (openevolve / "adapter.py").write_text(
        "import evaluator\n"
        "result = evaluator.evaluate('initial_program.py')\n"
        "print(f\"combined_score: {result['combined_score']}\")\n"
    )
    assert main(["-C", str(openevolve), "init"]) == 0
    toml = openevolve / "ratchet.toml"
    lines = [
        'eval = "python adapter.py"' if line.startswith("evaluate") else line
        for line in toml.read_text().splitlines()
        if not line.startswith("python ")
    ]
    toml.write_text("\n".join(lines) + "\n")
    spoof = (lambda text: text + SPOOF, "spoof")
    base, forged = _loop(openevolve, [spoof])
    assert base.status == "kept" and base.metric == pytest.approx(0.5)
    assert forged.status == "kept" and forged.metric == 99.0


def test_evaluate_reads_an_evaluation_result_object(tmp_path: Path) -> None:
    """OpenEvolve's EvaluationResult (metrics and artifacts, numbers of other types) read
    through the driver as a loop runs it, without a loop: `.metrics`, numbers only."""
    import dataclasses
    import subprocess

    from ratchet.config import MetricConfig
    from ratchet.evaluate_call import EvaluateReader, evaluate_command
    from ratchet.isolate import available

    if problem := available():
        pytest.skip(f"no nested sandbox here: {problem}")

    (tmp_path / "initial_program.py").write_text(PROGRAM)
    (tmp_path / "evaluator.py").write_text(
        textwrap.dedent(
            """\
            from dataclasses import dataclass, field
            from fractions import Fraction

            @dataclass
            class EvaluationResult:
                metrics: dict
                artifacts: dict = field(default_factory=dict)

            def evaluate(program_path):
                return EvaluationResult(
                    {"combined_score": Fraction(3, 4), "steps": 7, "note": [1]},
                    {"stdout": b"bytes are not JSON"},
                )
            """
        )
    )
    metric = MetricConfig(
        "combined_score", "maximize", None, None, 0.0, None, evaluate="evaluator.py:evaluate"
    )
    python = dataclasses.replace(metric, python=sys.executable)
    command = evaluate_command(python, "initial_program.py", "secret-token", limit_s=30)
    output = subprocess.run(
        command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60
    ).stdout
    reader = EvaluateReader(metric, "secret-token")
    for line in output.splitlines():
        reader.feed(line)
    measurement = reader.result()
    assert measurement.value == 0.75 and measurement.secondary == {"steps": 7.0}, output
    forged = EvaluateReader(metric, "another-token")
    for line in output.splitlines():
        forged.feed(line)
    assert forged.result().value is None  # a line with another token is nobody's answer
