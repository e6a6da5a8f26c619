"""The history in memory: what it derives must agree with a fresh read of the ledger."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from ratchet.experiment import Experiment, Status
from ratchet.history import History
from ratchet.ledger import Ledger
from ratchet.noise import estimate_noise

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
    for name in ("kept", "finished", "crashed", "in_results"):
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


def _recorded(tmp_path: Path, snapshot: Path | None) -> History:
    rng = random.Random(5)
    history = History(Ledger(tmp_path / ".ratchet"), "t", snapshot)
    history.load()
    for n in range(60):
        history.save(experiment(n, Status.KEPT if n == 0 else rng.choice(STATUSES), rng))
        for _ in range(rng.randint(0, 3)):
            history.add_run(n, rng.gauss(1.0, 0.1), 1.0, "measure")
    return history


def _same(a: History, b: History) -> None:
    assert [e.__dict__ for e in a.experiments] == [e.__dict__ for e in b.experiments]
    assert (a.runs, a.attempts) == (b.runs, b.attempts)
    assert a.best is not None and b.best is not None and a.best.id == b.best.id
    assert a.noise() == b.noise()


def test_the_snapshot_taken_at_close_is_read_only_while_no_one_has_written(
    tmp_path: Path,
) -> None:
    snapshot = tmp_path / "loops" / "t" / "record.snapshot"
    history = _recorded(tmp_path, snapshot)
    history.save_snapshot()
    from_ledger = History(history.ledger, "t")
    from_ledger.load()
    again = History(history.ledger, "t", snapshot)
    again.load()
    assert again.from_snapshot
    _same(again, from_ledger)
    # Another process writes (any writer: the trigger is in the ledger): the copy is stale.
    for change in (
        "UPDATE experiments SET description='changed elsewhere' WHERE id=3",
        "INSERT INTO runs VALUES ('t', 3, 9, 0.5, 1.0, 'measure', 0, NULL)",
        "DELETE FROM experiments WHERE id=59",
    ):
        history.save_snapshot()
        with sqlite3.connect(history.ledger.path) as other:
            other.execute(change)
        stale = History(history.ledger, "t", snapshot)
        stale.load()
        fresh = History(history.ledger, "t")
        fresh.load()
        assert not stale.from_snapshot, change
        _same(stale, fresh)
    assert stale.by_id[3].description == "changed elsewhere" and 59 not in stale.by_id


def test_a_damaged_or_foreign_snapshot_is_ignored(tmp_path: Path) -> None:
    snapshot = tmp_path / "loops" / "t" / "record.snapshot"
    history = _recorded(tmp_path, snapshot)
    history.save_snapshot()
    whole = snapshot.read_bytes()
    other_loop = History(history.ledger, "u", snapshot)  # a snapshot of loop t, read as u
    other_loop.load()
    assert not other_loop.from_snapshot and other_loop.experiments == []
    for damaged in (whole[: len(whole) // 2], b"\x00" * 64, b""):
        snapshot.write_bytes(damaged)
        read = History(history.ledger, "t", snapshot)
        read.load()
        assert not read.from_snapshot and len(read.experiments) == 60


def test_a_ledger_from_before_the_generation_gains_it(tmp_path: Path) -> None:
    folder = tmp_path / ".ratchet"
    Ledger(folder).close()
    with sqlite3.connect(folder / "ledger.sqlite") as old:  # as version 2 left it
        old.execute("DROP TABLE record_generation")
        for name in [
            r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]:
            old.execute(f"DROP TRIGGER {name}")
        old.execute("PRAGMA user_version = 2")
    ledger = Ledger(folder)
    before = ledger.generation()
    ledger.add_run("t", 0, 1.0, 1.0, "measure")
    assert ledger.generation() == before + 1


def test_a_holdout_and_a_metric_written_at_once_are_both_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new best's holdout (one slot) and a control's metric of it (another) are written from
    # worker threads at the same time.
    history = History(Ledger(tmp_path), "t")
    history.load()
    history.save(experiment(0, Status.KEPT, random.Random(1)))
    write = History._replace

    def slow_replace(self: History, exp: Experiment) -> None:
        time.sleep(0.2)  # the other thread comes in meanwhile
        write(self, exp)

    monkeypatch.setattr(History, "_replace", slow_replace)
    writers = [
        threading.Thread(target=history.set_holdout, args=(0, 0.25)),
        threading.Thread(target=history.set_metric, args=(0, 0.5)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(5)
    kept = history.by_id[0]
    assert (kept.holdout, kept.metric) == (0.25, 0.5)
    assert history.best is kept


def test_a_best_whose_level_is_revised_keeps_the_metric_it_was_kept_on(tmp_path: Path) -> None:
    # results.tsv logs each verdict; a best's later runs revise its metric (its level), and a
    # recovery that rewrites results.tsv from the ledger must write the row that was appended.
    from ratchet.results_tsv import results_row

    history = History(Ledger(tmp_path), "t")
    history.load()
    best = experiment(0, Status.KEPT, random.Random(1))
    history.save(best)
    appended = results_row(history.by_id[0])
    history.set_metric(0, 0.5)
    history.set_metric(0, 0.25)  # a second control: `judged` is still the verdict's
    revised = history.by_id[0]
    assert (revised.metric, revised.judged) == (0.25, best.metric)
    assert results_row(revised) == appended
    reread = Ledger(tmp_path).experiments("t")[0]
    assert (reread.metric, reread.judged) == (0.25, best.metric)
    assert results_row(reread) == appended
