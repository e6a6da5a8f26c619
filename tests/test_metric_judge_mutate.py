"""The small pure pieces: reading the metric, judging, the offline agent's search."""

from __future__ import annotations

import ast
import asyncio

from ratchet.agents.mutate import MutateAgent, apply, find_constants
from ratchet.config import MetricConfig
from ratchet.experiment import ProposalContext
from ratchet.judge import Judge
from ratchet.metric import read_metric
from ratchet.novelty import digest

METRIC = MetricConfig(
    name="val_bpb", goal="minimize", pattern=None, eval=None, min_delta=0.0, trace=None
)

SUMMARY = """\
step 100 loss 2.3
val_bpb: 1.5
---
val_bpb:          0.997900
training_seconds: 300.1
peak_vram_mb:     45060.2
num_steps:        953
done
"""


def test_the_last_metric_line_wins_and_its_summary_is_kept() -> None:
    measurement = read_metric(METRIC, SUMMARY.splitlines())
    assert measurement.value == 0.9979
    assert measurement.secondary == {
        "training_seconds": 300.1,
        "peak_vram_mb": 45060.2,
        "num_steps": 953.0,
    }


def test_missing_nan_and_infinite_metrics_are_crashes_not_zero() -> None:
    missing = read_metric(METRIC, ["loss: 1.0"])
    assert missing.value is None and "no `val_bpb: <number>` line" in (missing.problem or "")
    for bad in ("nan", "inf", "-inf"):
        measurement = read_metric(METRIC, [f"val_bpb: {bad}"])
        assert measurement.value is None
        assert "not a finite number" in (measurement.problem or "")


def test_a_pattern_reads_any_format() -> None:
    config = MetricConfig(
        name="bpb", goal="minimize", pattern=r"bpb=([0-9.]+)", eval=None, min_delta=0.0, trace=None
    )
    assert read_metric(config, ["epoch 1 bpb=1.25", "epoch 2 bpb=1.125 ok"]).value == 1.125


def test_judge_direction_and_min_delta() -> None:
    lower = Judge(lower_is_better=True, min_delta=0.01)
    assert lower.assess([0.98], [1.0], None).keep
    assert not lower.assess([0.995], [1.0], None).keep  # better, but within min_delta
    assert "within min_delta" in lower.assess([0.995], [1.0], None).reason
    assert not lower.assess([1.2], [1.0], None).keep
    higher = Judge(lower_is_better=False)
    assert higher.assess([0.9], [0.8], None).keep and not higher.assess([0.8], [0.8], None).keep


SOURCE = """\
import torch
LEARNING_RATE = 3e-3  # tuned
N_LAYER: int = 2
DROPOUT = 0.0
NEG = -5
SEED = 1337
name = "x"
def f():
    HIDDEN = 3
"""


def test_constants_are_found_by_ast_and_rewritten_in_place() -> None:
    constants = {c.name: c for c in find_constants(SOURCE)}
    assert set(constants) == {"LEARNING_RATE", "N_LAYER", "DROPOUT", "NEG"}  # SEED skipped
    new = apply(SOURCE, [(constants["LEARNING_RATE"], 0.006), (constants["NEG"], -10)])
    assert "LEARNING_RATE = 0.006  # tuned" in new and "NEG = -10" in new
    assert new.count("\n") == SOURCE.count("\n")
    ast.parse(new)


def context(text: str, experiment: int, tried: frozenset[str] = frozenset()) -> ProposalContext:
    return ProposalContext(
        experiment=experiment,
        editable_path="train.py",
        editable_text=text,
        program="",
        metric_name="val_bpb",
        goal="minimize",
        best_metric=1.0,
        history=(),
        tried_digests=tried,
    )


def test_mutate_is_seeded_and_avoids_what_was_tried() -> None:
    agent = MutateAgent(seed=7)
    first = asyncio.run(agent.propose(context(SOURCE, 1)))
    again = asyncio.run(MutateAgent(seed=7).propose(context(SOURCE, 1)))
    assert first.edits == again.edits and first.description == again.description
    assert "→" in first.description
    tried = frozenset({digest(first.edits["train.py"])})
    other = asyncio.run(agent.propose(context(SOURCE, 1, tried)))
    assert other.edits["train.py"] != first.edits["train.py"]


def test_mutate_without_constants_is_a_failure_not_an_exception() -> None:
    proposal = asyncio.run(MutateAgent().propose(context("print('hi')\n", 1)))
    assert proposal.failure and "the mutate agent has nothing to tune" in proposal.failure
    assert proposal.final  # it never will have: the loop stops instead of spinning


def test_novelty_ignores_comments_and_layout_but_not_structure() -> None:
    assert digest("x = 1  # a\ny = 2\n") == digest("x   =   1\n\n# b\ny = 2\n")
    assert digest("if a:\n    b()\nc()\n") != digest("if a:\n    b()\n    c()\n")
