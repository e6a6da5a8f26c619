"""The record of every experiment: SQLite (WAL) in `.ratchet/`, and results.tsv beside it.

An experiment is written before it runs and again when it ends, so a loop killed at any
moment leaves a row that says where it stopped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from .experiment import Experiment, Status

LEDGER_NAME = "ledger.sqlite"
RESULTS_NAME = "results.tsv"

_COLUMNS = [f.name for f in fields(Experiment)]
_QUOTED = ", ".join(f'"{name}"' for name in _COLUMNS)  # `commit` is an SQL keyword
_JSON_COLUMNS = {"secondary", "hardware"}
_DECLARED = ", ".join(
    f'"{name}"' + (" INTEGER" if name == "id" else "") for name in _COLUMNS if name != "tag"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS experiments (
    tag TEXT NOT NULL,
    {_DECLARED},
    PRIMARY KEY (tag, id)
);
CREATE TABLE IF NOT EXISTS runs (
    tag TEXT NOT NULL,
    experiment INTEGER NOT NULL,
    run INTEGER NOT NULL,
    metric REAL,
    wall_s REAL,
    purpose TEXT,
    recorded_at REAL,
    PRIMARY KEY (tag, experiment, run)
);
CREATE TABLE IF NOT EXISTS loops (
    tag TEXT PRIMARY KEY,
    created_at REAL,
    start_commit TEXT,
    metric_name TEXT,
    goal TEXT
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT,
    text TEXT,
    created_at REAL
);
"""


class Ledger:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LEDGER_NAME
        self.results_path = folder / RESULTS_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._add_new_columns()

    def _add_new_columns(self) -> None:
        """A ledger written by an older Ratchet gains the columns added since (as NULL)."""
        present = {row[1] for row in self._db.execute("PRAGMA table_info(experiments)")}
        for name in _COLUMNS:
            if name not in present:
                self._db.execute(f'ALTER TABLE experiments ADD COLUMN "{name}"')

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- loops -------------------------------------------------------------------------------

    def loop(self, tag: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT tag, created_at, start_commit, metric_name, goal FROM loops WHERE tag=?",
                (tag,),
            ).fetchone()
        if row is None:
            return None
        return dict(
            zip(("tag", "created_at", "start_commit", "metric_name", "goal"), row, strict=True)
        )

    def tags(self) -> list[str]:
        """Loops, the most recently used last."""
        with self._lock:
            rows = self._db.execute(
                "SELECT l.tag FROM loops l LEFT JOIN experiments e ON e.tag = l.tag "
                "GROUP BY l.tag ORDER BY MAX(COALESCE(e.started_at, l.created_at))"
            ).fetchall()
        return [row[0] for row in rows]

    def add_loop(self, tag: str, start_commit: str, metric_name: str, goal: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO loops VALUES (?, ?, ?, ?, ?)",
                (tag, time.time(), start_commit, metric_name, goal),
            )

    # --- experiments -------------------------------------------------------------------------

    def next_id(self, tag: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(id) FROM experiments WHERE tag=?", (tag,)).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def save(self, experiment: Experiment) -> None:
        values = [
            json.dumps(getattr(experiment, name))
            if name in _JSON_COLUMNS
            else str(getattr(experiment, name))
            if name == "status"
            else getattr(experiment, name)
            for name in _COLUMNS
        ]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO experiments ({_QUOTED}) VALUES ({placeholders})",
                values,
            )

    def experiments(self, tag: str) -> list[Experiment]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_QUOTED} FROM experiments WHERE tag=? ORDER BY id", (tag,)
            ).fetchall()
        return [_experiment(row) for row in rows]

    def get(self, tag: str, experiment: int) -> Experiment | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_QUOTED} FROM experiments WHERE tag=? AND id=?",
                (tag, experiment),
            ).fetchone()
        return _experiment(row) if row else None

    # --- runs (each measurement of an experiment) --------------------------------------------

    def add_run(
        self, tag: str, experiment: int, metric: float | None, wall_s: float, purpose: str
    ) -> None:
        with self._transaction() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM runs WHERE tag=? AND experiment=?", (tag, experiment)
            ).fetchone()
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tag, experiment, count, metric, wall_s, purpose, time.time()),
            )

    def run_groups(self, tag: str) -> dict[int, list[float]]:
        """The metric of every successful run, by experiment."""
        with self._lock:
            rows = self._db.execute(
                "SELECT experiment, metric FROM runs WHERE tag=? AND metric IS NOT NULL "
                "ORDER BY experiment, run",
                (tag,),
            ).fetchall()
        groups: dict[int, list[float]] = {}
        for experiment, metric in rows:
            groups.setdefault(experiment, []).append(metric)
        return groups

    def runs(self, tag: str, experiment: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT run, metric, wall_s, purpose FROM runs WHERE tag=? AND experiment=? "
                "ORDER BY run",
                (tag, experiment),
            ).fetchall()
        return [dict(zip(("run", "metric", "wall_s", "purpose"), row, strict=True)) for row in rows]

    # --- notes for the agent -----------------------------------------------------------------

    def add_note(self, tag: str, text: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO notes (tag, text, created_at) VALUES (?, ?, ?)",
                (tag, text, time.time()),
            )

    def notes(self, tag: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT text FROM notes WHERE tag=? OR tag='' ORDER BY id", (tag,)
            ).fetchall()
        return [row[0] for row in rows]

    # --- results.tsv -------------------------------------------------------------------------

    def write_results(self, tag: str, metric_name: str) -> None:
        """autoresearch's results.tsv: commit, metric, memory_gb, status, description."""
        lines = [f"commit\t{metric_name}\tmemory_gb\tstatus\tdescription"]
        for exp in self.experiments(tag):
            if not exp.status.is_final:
                continue
            memory_gb = exp.secondary.get("peak_vram_mb", 0.0) / 1024
            metric = f"{exp.metric:.6f}" if exp.metric is not None else "0.000000"
            description = " ".join(exp.description.split())
            lines.append(
                f"{(exp.commit or '')[:7]}\t{metric}\t{memory_gb:.1f}\t"
                f"{_TSV_STATUS.get(exp.status, str(exp.status))}\t{description}"
            )
        scratch = self.results_path.with_suffix(".tsv.tmp")
        scratch.write_text("\n".join(lines) + "\n", encoding="utf-8")
        scratch.replace(self.results_path)


_TSV_STATUS = {Status.KEPT: "keep", Status.DISCARDED: "discard", Status.CRASHED: "crash"}


def _experiment(row: tuple[Any, ...]) -> Experiment:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON_COLUMNS:
        values[name] = json.loads(values[name]) if values[name] else {}
    values["status"] = Status(values["status"])
    return Experiment(**values)
