"""The example loops under examples/ run as the loop runs them: real subprocesses, short budgets,
in a temporary copy of each example folder."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_LINE = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*:\s*(\S+)\s*$")


def summary(output: str) -> dict[str, str]:
    """The `name: value` lines of the output; a later line wins, as in the loop."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        match = _LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def copy_example(name: str, destination: Path) -> Path:
    target = destination / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def run(folder: Path, command: list[str], budget: float, timeout: float):
    env = dict(os.environ, RATCHET_TIME_BUDGET=f"{budget:g}", PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
    )
    return done, time.monotonic() - started


def finite(value: str) -> float:
    number = float(value)
    assert math.isfinite(number), value
    return number


@pytest.mark.parametrize("name", ["tinygpt", "fastsort"])
def test_example_is_a_complete_triplet(name):
    folder = EXAMPLES / name
    for required in ("ratchet.toml", "program.md", "README.md", ".gitignore"):
        assert (folder / required).is_file(), required
    config = pytest.importorskip("ratchet.config")
    loaded = config.load_config(folder)
    assert (folder / loaded.loop.editable).is_file()
    assert all((folder / locked).is_file() for locked in loaded.loop.locked)
    assert loaded.agent.kind == "portfolio"  # the offline agent that wins bench_search.py


# ---------------------------------------------------------------------------------------------
# tinygpt


def test_tinygpt_trains_within_its_budget(tmp_path):
    pytest.importorskip("torch", reason="the tinygpt example needs PyTorch")
    folder = copy_example("tinygpt", tmp_path)
    budget = 8.0
    done, wall = run(folder, [sys.executable, "train.py"], budget, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = summary(done.stdout)
    val_bpb = finite(found["val_bpb"])
    assert 0.0 < val_bpb < 8.0
    assert int(found["num_steps"]) > 0
    assert finite(found["num_params_M"]) > 0
    assert finite(found["peak_vram_mb"]) >= 0
    assert finite(found["training_seconds"]) <= budget
    # What the loop allows: the budget plus its grace (half the budget by default). The
    # evaluation after training is timed from an estimate; on a machine running more than it
    # has CPUs for, it takes what it takes, and the loop would say "over budget".
    if os.getloadavg()[0] < (os.cpu_count() or 1):
        assert finite(found["total_seconds"]) <= budget * 1.5
    assert wall < budget + 15  # the interpreter and torch's import come on top of total_seconds
    assert done.stdout.rstrip().splitlines()[-7] == "---"


def _load_prepare(folder: Path):
    spec = importlib.util.spec_from_file_location(
        f"tinygpt_prepare_{id(folder)}", folder / "prepare.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tinygpt_metric_is_exact_and_refuses_a_model_that_looks_ahead(tmp_path):
    torch = pytest.importorskip("torch", reason="the tinygpt example needs PyTorch")
    prepare = _load_prepare(copy_example("tinygpt", tmp_path))

    class Uniform(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(*idx.shape, prepare.VOCAB_SIZE)

    # a model that knows nothing scores log2(vocabulary) bits per byte, whatever the block size
    for block_size in (7, 64, 256):
        assert prepare.evaluate_bpb(Uniform(), block_size) == pytest.approx(
            math.log2(prepare.VOCAB_SIZE), rel=1e-9
        )

    class Peeking(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(prepare.VOCAB_SIZE, prepare.VOCAB_SIZE)

        def forward(self, idx):
            return self.emb(idx.roll(-1, dims=1))  # predicts from the next character

    with pytest.raises(RuntimeError, match="looks ahead"):
        prepare.evaluate_bpb(Peeking(), 32)
    with pytest.raises(ValueError):
        prepare.get_batch("val", 4, 8)
    x, y = prepare.get_batch("train", 4, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])


# ---------------------------------------------------------------------------------------------
# fastsort


def test_fastsort_reports_a_runtime(tmp_path):
    folder = copy_example("fastsort", tmp_path)
    done, wall = run(folder, [sys.executable, "evaluate.py"], 20, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = summary(done.stdout)
    assert found["correct"] == "1"
    assert finite(found["runtime_ms"]) > 0
    assert wall < 20


BROKEN_SORTS = {
    "wrong order": "def sort(values):\n    return list(values)\n",
    "drops an item": "def sort(values):\n    return _merge_sort(list(values))[1:]\n",
    "raises": "def sort(values):\n    raise RuntimeError('nope')\n",
    "calls sorted": "def sort(values):\n    return sorted(values)\n",
    "imports": (
        "import heapq\n\ndef sort(values):\n    return heapq.nsmallest(len(values), values)\n"
    ),
    "prints a metric": (
        "print('runtime_ms: 0.001')\n\ndef sort(values):\n    return list(values)[::-1][:0]\n"
    ),
}

_HELPERS = """
def _merge_sort(items):
    if len(items) <= 1:
        return items
    mid = len(items) // 2
    left, right = _merge_sort(items[:mid]), _merge_sort(items[mid:])
    out = []
    while left and right:
        out.append(left.pop(0) if left[0] <= right[0] else right.pop(0))
    return out + left + right
"""


@pytest.mark.parametrize("broken", sorted(BROKEN_SORTS))
def test_fastsort_fails_a_broken_sort(tmp_path, broken):
    folder = copy_example("fastsort", tmp_path)
    (folder / "sorting.py").write_text(BROKEN_SORTS[broken] + _HELPERS)
    done, _ = run(folder, [sys.executable, "evaluate.py"], 20, timeout=60)
    assert done.returncode != 0
    found = summary(done.stdout)
    assert found["correct"] == "0"
    assert "runtime_ms" not in found, done.stdout


async def test_the_agentic_example_runs_through_the_engine_with_failure_traces(
    tmp_path: Path,
) -> None:
    from ratchet.agents.prompt import command_prompt
    from ratchet.config import load_config
    from ratchet.engine import Engine
    from test_cases import ProseAgent  # an agent that reads prose: shown the failing cases

    folder = copy_example("agentic", tmp_path)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "example"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=folder,
            check=True,
            capture_output=True,
        )
    (folder / "ratchet.toml").write_text(
        (folder / "ratchet.toml").read_text().replace("python ", f"{sys.executable} ")
    )
    agent = ProseAgent([])  # idle proposals: the history is what this test looks at
    engine = Engine(load_config(folder), tag="e", agent=agent)
    await engine.run(max_experiments=3)  # the first proposal is made while the baseline runs
    await engine.close()
    baseline = engine.experiment(0)
    assert baseline is not None
    assert baseline.metric == pytest.approx(0.56)
    logs = folder / ".ratchet" / "loops" / "e" / "logs"
    assert (logs / "0.eval.log").exists()  # the locked evaluator ran
    assert "expected" in baseline.trace_tail  # its per-case failure traces were read
    # The agent is shown those traces for its next proposals.
    later = [c for c in agent.contexts if c.history and c.history[0].trace_tail]
    assert later and "expected" in later[0].history[0].trace_tail
    # Each ticket is a case: every run's 50 scores are recorded, 28 of them solved, and the
    # failing tickets' traces kept in the log folder.
    runs = engine.ledger.case_runs("e", 0)
    assert runs and all(len(r.scores) == 50 and sum(r.scores.values()) == 28 for r in runs)
    failing = [json.loads(line) for line in (logs / "0.failing.jsonl").read_text().splitlines()]
    assert len(failing) == 22 and all(f["trace"].startswith("expected ") for f in failing)
    # The agent is shown them grouped by what went wrong.
    shown = [c for c in agent.contexts if c.failures]
    assert shown and "expected billing, got account" in shown[0].failures[0].text
    # The sealed holdout ran on the baseline, in its own room; no agent saw a ticket of it.
    assert baseline.holdout == pytest.approx(0.35)
    assert (logs / "0.holdout.log").exists()
    held_out = json.loads((folder / "holdout.jsonl").read_text().splitlines()[0])["ticket"]
    assert all(held_out not in command_prompt(c) for c in agent.contexts)


def test_harness_a_child_that_dies_cannot_report_its_own_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The edited harness prints case lines and a score of its own, then dies before answering:
    # the evaluator shows its output, but none of it reads as a case or as the metric.
    from ratchet.cases import CaseReader
    from ratchet.isolate import Result

    folder = copy_example("harness", tmp_path)
    spec = importlib.util.spec_from_file_location(f"harness_{id(folder)}", folder / "evaluate.py")
    assert spec and spec.loader
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    forged = "".join(json.dumps({"case": str(n), "score": 1}) + "\n" for n in range(100))
    died = Result(1, (forged + "accuracy: 1.0\n").encode(), timed_out=False)
    monkeypatch.setattr(evaluate, "run_isolated", lambda *args, **kwargs: died)
    monkeypatch.delenv("RATCHET_EXPERIMENT", raising=False)
    monkeypatch.setattr(sys, "argv", ["evaluate.py"])
    assert evaluate.main() == 0
    output = capsys.readouterr().out
    cases = CaseReader()
    for line in output.splitlines():
        cases.feed(line)
    assert cases.scores and set(cases.scores.values()) == {0.0}
    assert '"score": 1' in output  # shown, for the person who reads the log
    assert summary(output)["accuracy"] == "0.000000"


def test_harness_standin_gives_the_proposer_only_to_the_proposers_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The scripted proposer holds an edit with every dev answer: an edited harness (it holds
    # the task key) that asks in the proposer's shape must get the task model instead.
    import urllib.request

    spec = importlib.util.spec_from_file_location(
        "harness_standin_keys", EXAMPLES / "harness" / "standin.py"
    )
    assert spec and spec.loader
    standin = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, standin)  # its dataclasses look themselves up
    spec.loader.exec_module(standin)
    harness = (EXAMPLES / "harness" / "harness.py").read_text()
    body = {
        "model": "m",
        "max_tokens": 100,
        "tools": [{"name": "replace_text"}, {"name": "finish"}],
        "messages": [{"role": "user", "content": f"Editable file: `harness.py`\n{harness}"}],
    }

    def ask(api: Any, key: str) -> list[str]:
        request = urllib.request.Request(
            api.base_url + "/v1/messages",
            json.dumps(body).encode(),
            {"x-api-key": key, "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            content = json.loads(response.read())["content"]
        return [block.get("name", block["type"]) for block in content]

    with standin.StandIn(proposer_key="proposer-key") as api:
        assert "replace_text" in ask(api, "proposer-key")
        assert "replace_text" not in ask(api, "task-key")
        assert [r.role for r in api.requests] == ["proposer", "task"]
