"""An autoresearch-shaped folder as it is (issue 23), every file written here: prepare.py (data
and evaluation, TIME_BUDGET), a train.py that trains a tiny model on the CPU in a fraction of a
second and prints autoresearch's summary block, program.md, pyproject.toml, a .gitignore with
.venv and a real .venv. `ratchet init` then `ratchet run` with the default offline agent and no
edit to what init wrote: the baseline runs with the .venv's interpreter from a worktree that
has no .venv, and a real gain is kept, found by moving one or two constants at a time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import commit_all, git, needs_sandbox
from ratchet import hardware
from ratchet.agents.space import parse_changes
from ratchet.cli import main
from ratchet.config import load_config
from ratchet.ledger import Ledger

PREPARE = textwrap.dedent(
    """\
    \"\"\"Data and evaluation (locked): a tiny corpus, split once, scored in bits per byte.\"\"\"
    import math

    TIME_BUDGET = 20  # training time budget in seconds
    TEXT = "the quick brown fox jumps over the lazy dog. " * 40
    VOCAB = sorted(set(TEXT))


    def tokens():
        ids = [VOCAB.index(c) for c in TEXT]
        cut = len(ids) * 9 // 10
        return ids[:cut], ids[cut:]


    def evaluate_bpb(logits, ids):
        \"\"\"Mean cross-entropy of the next character in bits (a character is a byte).\"\"\"
        total = 0.0
        for a, b in zip(ids, ids[1:]):
            top = max(logits[a])
            log_z = top + math.log(sum(math.exp(x - top) for x in logits[a]))
            total += log_z - logits[a][b]
        return total / (len(ids) - 1) / math.log(2)
    """
)

# A bigram model trained by full-batch gradient descent, stdlib only (0.15 s). LEARNING_RATE is
# far below its best: every step up its inferred range lowers val_bpb, deterministically.
TRAIN = textwrap.dedent(
    """\
    import math
    import os
    import sys
    import time

    from prepare import TIME_BUDGET, VOCAB, evaluate_bpb, tokens

    LEARNING_RATE = 0.01
    WEIGHT_DECAY = 0.0
    NUM_STEPS = 30
    H100_BF16_PEAK_FLOPS = 989.5e12  # only feeds the printed MFU

    t0 = time.time()
    train_ids, val_ids = tokens()
    v = len(VOCAB)
    counts = [[0] * v for _ in range(v)]
    for a, b in zip(train_ids, train_ids[1:]):
        counts[a][b] += 1
    logits = [[0.0] * v for _ in range(v)]
    for step in range(NUM_STEPS):
        for a in range(v):
            n = sum(counts[a])
            if n == 0:
                continue
            row = logits[a]
            top = max(row)
            exps = [math.exp(x - top) for x in row]
            z = sum(exps)
            for b in range(v):
                grad = exps[b] / z - counts[a][b] / n
                row[b] -= LEARNING_RATE * (grad + WEIGHT_DECAY * row[b])
        print(f"\\rstep {step:05d} | lr {LEARNING_RATE:g}", end="", flush=True)
        if time.time() - t0 > TIME_BUDGET:
            break
    print()
    training_seconds = time.time() - t0
    val_bpb = evaluate_bpb(logits, val_ids)
    mfu = 100 * NUM_STEPS * v * v * 6 / max(training_seconds, 1e-9) / H100_BF16_PEAK_FLOPS
    print(f"python {sys.prefix} in {os.getcwd()}, a .venv here: {os.path.isdir('.venv')}")
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"mfu_percent:      {mfu:.2f}")
    print(f"num_steps:        {step + 1}")
    """
)
BASELINE_BPB = 4.527834  # TRAIN as written

PROGRAM = textwrap.dedent(
    """\
    # autoresearch

    ## Setup

    1. **Create the branch**: `git checkout -b autoresearch/<tag>` from current master.

    ## Experimentation

    **What you CAN do:** modify `train.py`: learning rate, schedule, model.

    ## The experiment loop

    LOOP FOREVER: git commit, `uv run train.py > run.log 2>&1`, git reset if worse.
    """
)


@pytest.fixture
def autoresearch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(hardware, "local_gpus", lambda: ())  # the CPU judge, on any machine
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the default agent is offline
    root = tmp_path / "autoresearch"
    root.mkdir()
    git(root, "init", "-q", "-b", "master")
    for name, text in {
        "prepare.py": PREPARE,
        "train.py": TRAIN,
        "program.md": PROGRAM,
        "pyproject.toml": '[project]\nname = "autoresearch"\nrequires-python = ">=3.10"\n',
        ".gitignore": ".venv\n__pycache__/\n",
    }.items():
        (root / name).write_text(text)
    # Stdlib only, so the interpreter's own packages do (no network); no pip: it is not needed.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", ".venv"],
        cwd=root,
        check=True,
        timeout=60,
    )
    commit_all(root)
    return root


@needs_sandbox
def test_an_autoresearch_folder_with_its_venv_runs_and_keeps_a_gain(autoresearch: Path) -> None:
    assert main(["-C", str(autoresearch), "init"]) == 0
    config = load_config(autoresearch)
    venv = autoresearch / ".venv"
    assert config.loop.command == f"{venv}/bin/python train.py"
    assert config.loop.budget_s == 20  # prepare.py's TIME_BUDGET
    assert (config.judge.baseline_runs, config.judge.max_runs) == (2, 3)  # no GPU
    commit_all(autoresearch, "ratchet init")  # as init wrote it
    assert main(["-C", str(autoresearch), "run", "--max-experiments", "6"]) == 0

    ledger = Ledger(autoresearch / ".ratchet")
    base, *rest = ledger.experiments(ledger.tags()[-1])
    assert str(base.status) == "kept" and base.metric == pytest.approx(BASELINE_BPB), base.reason
    # The .venv's interpreter ran, in a worktree (not the project) that has no .venv.
    ran = next(line for line in base.log_tail.splitlines() if line.startswith("python "))
    where = ran.split(" in ", 1)[1].split(",")[0]
    assert ran.startswith(f"python {venv} in ") and Path(where) != autoresearch
    assert ran.endswith("a .venv here: False")

    assert len(rest) == 5
    for exp in rest:  # moves a person can read, never the print-only constant
        moved = parse_changes(exp.description)
        assert 1 <= len(moved) <= 2 and "H100_BF16_PEAK_FLOPS" not in moved, exp.description
    gains = [e for e in rest if str(e.status) == "kept"]
    assert gains, [(e.description, e.metric, str(e.status)) for e in rest]
    best = min(e.metric for e in gains if e.metric is not None)
    assert best < BASELINE_BPB - 0.1  # a real gain, far beyond rounding
    results = (autoresearch / ".ratchet" / "results.tsv").read_text().splitlines()
    assert [row.split("\t")[3] for row in results[1:]].count("keep") == 1 + len(gains)
