"""`ratchet init` adopts an autoresearch-style folder as it is (a fake one, in tmp): budget
from prepare.py, a timeout with room, the project's interpreter, data folders, a program.md
that runs git itself; `ratchet doctor` checks the experiment's own interpreter."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CONFIG, MakeProject, commit_all, git
from loops import engine_for, run
from ratchet import initialize
from ratchet.cli import main
from ratchet.config import ConfigError, load_config
from ratchet.ledger import Ledger

PREPARE = textwrap.dedent(
    """\
    import os
    MAX_SEQ_LEN = 2048
    TIME_BUDGET = 1800       # training time budget in seconds (30 minutes)
    CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "autoresearch")
    """
)
TRAIN = textwrap.dedent(
    """\
    from prepare import TIME_BUDGET
    DEPTH = 8
    print("---")
    print("val_bpb:          0.997900")
    print(f"training_seconds: {TIME_BUDGET:.1f}")
    print("peak_vram_mb:     45060.2")
    """
)
PROGRAM = textwrap.dedent(
    """\
    # autoresearch

    This is an experiment to have the LLM do its own research.

    ## Setup

    1. **Create the branch**: `git checkout -b autoresearch/<tag>` from current master.

    ## Experimentation

    **What you CAN do:** modify `train.py`. Try a deeper model before a wider one.

    ## Logging results

    Log each run to `results.tsv`.

    ## The experiment loop

    LOOP FOREVER: git commit, `uv run train.py > run.log 2>&1`, git reset if worse.
    """
)


@pytest.fixture
def autoresearch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "autoresearch"
    root.mkdir()
    git(root, "init", "-q", "-b", "master")
    for name, text in {
        "prepare.py": PREPARE,
        "train.py": TRAIN,
        "program.md": PROGRAM,
        "uv.lock": "version = 1\n",
        "pyproject.toml": '[project]\nname = "autoresearch"\n',
    }.items():
        (root / name).write_text(text)
    commit_all(root)
    bin_dir = tmp_path / "bin"  # `python` on PATH is this interpreter; no uv unless a test adds it
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(shutil.which('git') or '').parent}")
    monkeypatch.chdir(root)
    return root


def test_an_autoresearch_folder_runs_as_init_wrote_it(autoresearch: Path) -> None:
    assert main(["-C", str(autoresearch), "init"]) == 0
    config = load_config(autoresearch)
    assert config.loop.budget_s == 1800  # prepare.py's TIME_BUDGET, not a default
    assert config.loop.timeout_s == 2 * 1800 + 120
    assert config.loop.command == "python train.py"  # uv.lock, but no uv installed
    assert config.loop.locked == ("prepare.py",)
    text = (autoresearch / "ratchet.toml").read_text()
    assert "uv is not installed" in text and '"~/.cache/autoresearch"' in text
    # program.md tells the agent to run git: a Ratchet program keeps the research part.
    assert config.loop.program == "program.ratchet.md"
    assert (autoresearch / "program.md").read_text() == PROGRAM
    adapted = (autoresearch / "program.ratchet.md").read_text()
    assert "Try a deeper model before a wider one." in adapted
    assert "git checkout" not in adapted and "git reset" not in adapted
    assert '"Setup", "Logging results", "The experiment loop"' in adapted
    commit_all(autoresearch, "ratchet")
    assert main(["-C", str(autoresearch), "run", "--max-experiments", "1"]) == 0
    results = (autoresearch / ".ratchet" / "results.tsv").read_text().splitlines()
    assert results[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    assert results[1].split("\t")[1:4] == ["0.997900", "44.0", "keep"]  # peak_vram_mb → GB


def test_the_projects_interpreter_is_used(autoresearch: Path, tmp_path: Path) -> None:
    venv_python = autoresearch / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    # By its absolute path: experiments run in worktrees, which hold no (git-ignored) .venv.
    assert initialize.guess(autoresearch).command == f"{venv_python} train.py"
    (autoresearch / ".gitignore").write_text(".venv/\n")
    assert main(["-C", str(autoresearch), "init"]) == 0
    toml = (autoresearch / "ratchet.toml").read_text()
    assert f'command  = "{venv_python} train.py"' in toml
    assert 'grace    = "' in toml  # warm-up and evaluation fit: not stopped at budget x 1.5
    commit_all(autoresearch, "ratchet")
    assert main(["-C", str(autoresearch), "run", "--max-experiments", "1"]) == 0  # as written
    (baseline,) = Ledger(autoresearch / ".ratchet").experiments(
        Ledger(autoresearch / ".ratchet").tags()[-1]
    )
    assert str(baseline.status) == "kept" and baseline.metric == pytest.approx(0.9979)
    venv_python.unlink()
    uv = tmp_path / "bin" / "uv"
    uv.write_text("#!/bin/sh\nexit 0\n")
    uv.chmod(0o755)
    assert initialize.guess(autoresearch).command == "uv run train.py"  # uv.lock and uv


def test_doctor_checks_the_experiments_own_command(
    autoresearch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(autoresearch), "init"]) == 0
    assert main(["-C", str(autoresearch), "doctor"]) == 0
    assert "has what train.py imports" in capsys.readouterr().out
    toml = autoresearch / "ratchet.toml"
    toml.write_text(toml.read_text().replace('"python train.py"', '"uv run train.py"'))
    assert main(["-C", str(autoresearch), "doctor"]) == 1
    assert "`uv` not found" in capsys.readouterr().out
    toml.write_text(toml.read_text().replace('"uv run train.py"', '"python train.py"'))
    train = autoresearch / "train.py"
    train.write_text("import torch_that_is_not_here\n" + TRAIN)
    assert main(["-C", str(autoresearch), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "torch_that_is_not_here" in out and "does not have" in out


def test_a_missing_editable_file_gets_a_did_you_mean(autoresearch: Path) -> None:
    assert main(["-C", str(autoresearch), "init"]) == 0
    toml = autoresearch / "ratchet.toml"
    toml.write_text(toml.read_text().replace('"train.py"', '"trian.py"', 1))
    with pytest.raises(ConfigError, match=r'did you mean "train\.py"'):
        load_config(autoresearch)


def test_a_plain_folder_and_its_program(tmp_path: Path) -> None:
    (tmp_path / "solve.py").write_text("print('score: 1')\n")
    written, triplet = initialize.init(tmp_path)
    assert written == ["ratchet.toml", "program.md"]
    assert triplet.editable == "solve.py" and triplet.timeout is None
    assert load_config(tmp_path).loop.editable == "solve.py"


async def test_the_timeout_error_names_the_key_to_raise(make_project: MakeProject) -> None:
    config = CONFIG.replace('budget = "10s"', 'budget = "1s"\ntimeout = "2s"\ngrace = "5s"')
    root = make_project(train="import time\ntime.sleep(30)\n", config=config)
    engine = engine_for(root)
    await run(engine, 1)
    (exp,) = engine.ledger.experiments("t")
    assert str(exp.status) == "timeout"
    assert "raise `timeout` under [loop] in ratchet.toml" in exp.reason


def test_doctor_follows_the_projects_own_modules_to_what_they_import(
    autoresearch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # train.py imports prepare (the project's own), and prepare imports a package that is not
    # installed: the experiment cannot start, and doctor says so, naming the way there.
    assert main(["-C", str(autoresearch), "init"]) == 0
    capsys.readouterr()
    prepare = autoresearch / "prepare.py"
    prepare.write_text(
        "try:\n    import optional_speedups_not_here\nexcept ImportError:\n    pass\n"
        + "import rustbpe_not_here\nfrom tokenizing import helpers\n"
        + "def download():\n    import requests_not_here\n"
        + PREPARE
    )
    (autoresearch / "tokenizing").mkdir()
    (autoresearch / "tokenizing" / "__init__.py").write_text("")
    (autoresearch / "tokenizing" / "helpers.py").write_text("import tiktoken_not_here\n")
    train = autoresearch / "train.py"
    train.write_text("import prepare\n" + TRAIN)
    assert main(["-C", str(autoresearch), "doctor"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "rustbpe_not_here (via train.py → prepare.py)" in out, out
    assert "tiktoken_not_here (via train.py → prepare.py → tokenizing/helpers.py)" in out
    assert "optional_speedups_not_here" not in out  # guarded: the file runs without it
    assert "requests_not_here" not in out  # only if a function the run may not call runs
    assert "the experiment cannot start" in out
    prepare.write_text(PREPARE)
    assert main(["-C", str(autoresearch), "doctor"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "has what train.py imports and what its own modules import (prepare.py)" in out


@pytest.mark.parametrize("gpus", [(), ({"index": "0", "name": "H100", "driver": "550"},)])
def test_without_a_gpu_init_writes_the_judges_cpu_defaults_and_says_so(
    gpus: tuple[dict[str, str], ...],
    autoresearch: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ratchet import hardware

    monkeypatch.setattr(hardware, "local_gpus", lambda: gpus)
    assert main(["-C", str(autoresearch), "init"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    judge = load_config(autoresearch).judge
    if gpus:  # a GPU: the defaults, nothing said
        assert (judge.baseline_runs, judge.max_runs) == (3, 5)
        assert "[judge]" not in (autoresearch / "ratchet.toml").read_text()
        assert "No GPU seen" not in out
    else:  # a 5-minute baseline is 10 minutes on the CPU, not 15; a candidate 3 runs, not 5
        assert (judge.baseline_runs, judge.max_runs) == (2, 3)
        assert "No GPU seen: CPU runs are slow, so [judge] baseline_runs = 2, max_runs = 3" in out
