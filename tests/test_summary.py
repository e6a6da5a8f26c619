"""The history summary: grouped by what was changed, bounded at 10,000 experiments, and every
earlier idea still in it."""

from __future__ import annotations

import random
import time

from ratchet.experiment import Experiment, Status
from ratchet.summary import SUMMARY_CHARS, summarise

IDEAS = [f"idea{n:03d}" for n in range(300)]


def history(n: int) -> list[Experiment]:
    rng = random.Random(0)
    rows = [Experiment(0, "t", Status.KEPT, "baseline", "m", "c0", "k0", 1.0, source="baseline")]
    base, metric = "k0", 1.0
    for i in range(1, n):
        if i % 3:
            word = IDEAS[(i - i // 3 - 1) % len(IDEAS)]
            description = f"use {word} in the attention block"
        else:
            old = rng.choice((0.01, 0.02))
            description = f"LR {old} → {old * 2}, WIDTH 64 → 96"
        value = metric + rng.gauss(0.01, 0.02)
        kept = value < metric
        status = Status.KEPT if kept else rng.choice((Status.DISCARDED, Status.CRASHED))
        row = Experiment(i, "t", status, description, "m", base, f"k{i}", value)
        if status is Status.CRASHED:
            row.metric = None
        rows.append(row)
        if kept:
            base, metric = f"k{i}", value
    return rows


def test_groups_say_tries_best_effect_and_last_result() -> None:
    rows = history(30)
    text = summarise(rows)
    lr = next(line for line in text.splitlines() if line.startswith("- LR:"))
    tried = sum(1 for r in rows if r.description.startswith("LR "))
    assert f"tried {tried}x" in lr and "best " in lr and "last exp " in lr
    assert any(line.startswith("- idea001:") for line in text.splitlines())


def test_ten_thousand_experiments_fit_and_every_idea_is_findable() -> None:
    rows = history(10_000)
    started = time.monotonic()
    text = summarise(rows)
    assert time.monotonic() - started < 2.0
    assert len(text) <= SUMMARY_CHARS
    assert text.startswith("9999 experiments")
    missing = [idea for idea in IDEAS if idea not in text]
    assert not missing, missing[:5]
    assert "- LR:" in text and "- WIDTH:" in text


def test_the_direction_of_the_metric_orders_the_groups() -> None:
    rows = history(200)
    lower = summarise(rows, lower_is_better=True).splitlines()[1]
    higher = summarise(rows, lower_is_better=False).splitlines()[1]
    assert lower != higher
    assert "best -" in lower and "best +" in higher
