"""The history in memory: what it derives must agree with a fresh read of the ledger."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from ratchet.experiment import Experiment, Status
from ratchet.history import History
from ratchet.judge import estimate_noise
from ratchet.ledger import Ledger

STATUSES = [Status.KEPT, Status.DISCARDED, Status.CRASHED, Status.INVALID, Status.TIMEOUT]


def experiment(n: int, status: Status, rng: random.Random) -> Experiment:
    return Experiment(
        id=n,
        tag="t",
        status=status,
        description=f"exp {n}",
        agent="test",
        base_commit="0" * 40,
        commit=f"{n:040x}",
        metric=rng.random(),
        cost_usd=0.01,
        digest=f"{rng.randrange(40):x}",
        source="baseline" if n == 0 else "agent",
        diff=f"diff {n}",
    )


def test_the_history_kept_current_agrees_with_a_fresh_read(tmp_path: Path) -> None:
    rng = random.Random(3)
    history = History(Ledger(tmp_path), "t")
    history.load()
    order = list(range(300))
    rng.shuffle(order[1:])  # slots finish out of order
    for n in order:
        exp = experiment(n, Status.KEPT if n == 0 else rng.choice(STATUSES), rng)
        history.save(exp)
        for _ in range(rng.randint(0, 3)):
            history.add_run(n, rng.gauss(1.0, 0.1), 1.0, "measure")
        if rng.random() < 0.1:  # a status change later (a keep overtaken, say)
            exp.status = Status.DISCARDED if exp.status is Status.KEPT else exp.status
            history.save(exp)
    fresh = History(history.ledger, "t")
    fresh.load()
    assert [e.id for e in history.experiments] == list(range(300))
    for name in ("kept", "finished", "crashed"):
        assert getattr(history, name) == getattr(fresh, name), name
    assert history.cost_usd == pytest.approx(fresh.cost_usd)
    assert history.best is not None and fresh.best is not None
    assert history.best.id == fresh.best.id
    assert history.noise() == pytest.approx(estimate_noise(list(fresh.runs.values())))
    assert set(history.tried_keys()) == set(fresh.tried_keys())
    assert [e.id for e in history.since(250, 10)] == [e.id for e in fresh.since(250, 10)]
    assert all(e.diff == "" for e in history.experiments)  # light in memory
    full = history.full(7)
    assert full is not None and full.diff == "diff 7"  # heavy by id
