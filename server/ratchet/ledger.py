"""The record of every experiment: SQLite (WAL) in `.ratchet/` (its tables and migrations in
ledger_schema), and each loop's results.tsv (results_tsv).

An experiment is written before it runs and again when it ends, so a loop killed at any
moment leaves a row that says where it stopped. Work promised but not yet started (a
person's edit, a revert, a re-measure) is a row of `queue` until its experiment is written.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import results_tsv
from .case_packing import pack, unpack
from .cases import CaseRun
from .experiment import Experiment
from .ledger_schema import (
    LEDGER_NAME,
    LIGHT,
    LOOP_COLUMNS,
    QUOTED,
    READ,
    Decoder,
    encode,
    open_record,
)

# A run's purpose: "measure" (an experiment's first run), "rerun" (its runs the judge asked
# for), "remeasure" (the best measured again: remeasure_every, a confirmation) or "control"
# (the best measured again beside a candidate: not one of its own measurements).
CONTROL = "control"
_RUN_READ = (
    "SELECT experiment, metric, recorded_at, purpose FROM runs WHERE tag=? ORDER BY experiment, run"
)
_RUN_FIELDS = ("run", "metric", "wall_s", "purpose", "recorded_at", "beside")


@dataclasses.dataclass(frozen=True)
class LightRecord:
    """A loop's light rows (the query's columns, COLUMNS) and its runs (experiment, metric,
    recorded_at, purpose), as one read saw them at `generation`."""

    generation: int
    rows: list[tuple[Any, ...]]
    runs: list[tuple[int, float | None, float | None, str | None]]


class Ledger:
    def __init__(self, folder: Path, read_only: bool = False) -> None:
        """`read_only`: a reader's view (log, show, report, the editor): nothing is created or
        written, not even the folder; a ledger of an older schema is upgraded once."""
        self.folder = folder
        self.path = folder / LEDGER_NAME
        self._lock = threading.Lock()
        self._experiment = Decoder()
        self._case_ids: dict[str, dict[str, int]] = {}  # each loop's case-id dictionary
        self._db = open_record(folder, read_only)

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

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- loops -------------------------------------------------------------------------------

    def loop(self, tag: str) -> dict[str, Any] | None:
        rows = self._all(f"SELECT {', '.join(LOOP_COLUMNS)} FROM loops WHERE tag=?", (tag,))
        if not rows:
            return None
        loop = dict(zip(LOOP_COLUMNS, rows[0], strict=True))
        for name in ("rules", "hardware"):
            loop[name] = json.loads(loop[name]) if loop[name] else None
        return loop

    def tags(self) -> list[str]:
        """Loops, the most recently used last."""
        rows = self._all(
            "SELECT l.tag FROM loops l LEFT JOIN experiments e ON e.tag = l.tag "
            "GROUP BY l.tag ORDER BY MAX(COALESCE(e.started_at, l.created_at))"
        )
        return [row[0] for row in rows]

    def add_loop(
        self,
        tag: str,
        start_commit: str,
        metric_name: str,
        goal: str,
        rules: dict[str, Any] | None = None,  # None: pinned when the loop next opens
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO loops (tag, created_at, start_commit, metric_name, goal, "
                "rules) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    tag,
                    time.time(),
                    start_commit,
                    metric_name,
                    goal,
                    json.dumps(rules) if rules else None,
                ),
            )

    def set_loop(self, tag: str, **values: Any) -> None:
        """Updates the loop's pinned record: `rules`, `hardware`, `start_commit`."""
        assert set(values) <= {"rules", "hardware", "start_commit"}
        encoded = {k: json.dumps(v) if k != "start_commit" else v for k, v in values.items()}
        with self._transaction() as db:
            for name, value in encoded.items():
                db.execute(f"UPDATE loops SET {name}=? WHERE tag=?", (value, tag))

    def forget_loop(self, tag: str) -> None:
        """Drops a loop's record whole (a loop whose baseline never succeeded)."""
        with self._transaction() as db:
            self._case_ids.pop(tag, None)
            for table, column in (
                ("experiments", "tag"),
                ("runs", "tag"),
                ("loops", "tag"),
                ("notes", "tag"),
                ("queue", "tag"),
                ("cases", "tag"),
                ("case_ids", "tag"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column}=?", (tag,))

    # --- experiments -------------------------------------------------------------------------

    def next_id(self, tag: str) -> int:
        (row,) = self._all("SELECT MAX(id) FROM experiments WHERE tag=?", (tag,))
        return 0 if row[0] is None else row[0] + 1

    def save(self, experiment: Experiment, consumes: int | None = None) -> None:
        """Writes the experiment; `consumes` is the queued work item it carries out, deleted in
        the same transaction so the work is never lost nor done twice."""
        values = encode(experiment)
        placeholders = ", ".join("?" for _ in values)
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO experiments ({QUOTED}) VALUES ({placeholders})",
                values,
            )
            if consumes is not None:
                db.execute("DELETE FROM queue WHERE id=?", (consumes,))

    def set_holdout(self, tag: str, experiment: int, value: float | None) -> None:
        """The holdout's number of one experiment, measured after it was recorded: only that
        column is written (a re-measure of the same best may be writing its metric)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE experiments SET holdout=? WHERE tag=? AND id=?", (value, tag, experiment)
            )

    def set_metric(self, tag: str, experiment: int, value: float) -> None:
        """A best's metric, measured again after it was recorded: only that column is written
        (its holdout may be being written beside it)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE experiments SET judged=COALESCE(judged, metric), metric=? "
                "WHERE tag=? AND id=?",
                (value, tag, experiment),
            )

    def experiments(self, tag: str, *, light: bool = False) -> list[Experiment]:
        """Every experiment of the loop; `light` leaves out diff, log and trace tails."""
        rows = self._all(
            f"SELECT {LIGHT if light else READ} FROM experiments WHERE tag=? ORDER BY id",
            (tag,),
        )
        return self.build(rows)

    def build(self, rows: list[tuple[Any, ...]]) -> list[Experiment]:
        return [self._experiment(row) for row in rows]

    def generation(self) -> int:
        (row,) = self._all("SELECT n FROM record_generation")
        return int(row[0])

    def light_record(self, tag: str) -> LightRecord:
        """The light rows and the runs in one read transaction, with the generation it saw."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                (generation,) = self._db.execute("SELECT n FROM record_generation").fetchone()
                rows = self._db.execute(
                    f"SELECT {LIGHT} FROM experiments WHERE tag=? ORDER BY id", (tag,)
                ).fetchall()
                runs = self._db.execute(_RUN_READ, (tag,)).fetchall()
            finally:
                self._db.execute("COMMIT")
        return LightRecord(generation, rows, runs)

    def get(self, tag: str, experiment: int) -> Experiment | None:
        rows = self._all(f"SELECT {READ} FROM experiments WHERE tag=? AND id=?", (tag, experiment))
        return self._experiment(rows[0]) if rows else None

    def get_many(self, tag: str, ids: Iterable[int]) -> dict[int, Experiment]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        rows = self._all(
            f"SELECT {READ} FROM experiments WHERE tag=? AND id IN ({marks})", (tag, *wanted)
        )
        found = [self._experiment(row) for row in rows]
        return {e.id: e for e in found}

    # --- runs (each measurement of an experiment) --------------------------------------------

    def add_run(
        self,
        tag: str,
        experiment: int,
        metric: float | None,
        wall_s: float,
        purpose: str,
        beside: int | None = None,
        cases: dict[str, float] | None = None,
        seed: int = 0,
    ) -> float:
        """Records one run, and its per-case scores in one packed row when it reported cases
        (case ids new to the loop join its dictionary); returns when (the time recorded)."""
        now = time.time()
        with self._transaction() as db:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM runs WHERE tag=? AND experiment=?", (tag, experiment)
            ).fetchone()
            db.execute(
                "INSERT INTO runs (tag, experiment, run, metric, wall_s, purpose, recorded_at, "
                "beside) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (tag, experiment, count, metric, wall_s, purpose, now, beside),
            )
            if cases:
                numbers = self._case_numbers(db, tag, cases)
                db.execute(
                    "INSERT OR REPLACE INTO cases (tag, experiment, run, seed, beside, control, "
                    "scores) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        tag,
                        experiment,
                        count,
                        seed,
                        beside,
                        int(purpose == CONTROL),
                        pack({numbers[name]: score for name, score in cases.items()}),
                    ),
                )
        if cases:
            self._case_ids[tag] = numbers
        return now

    def _case_numbers(
        self, db: sqlite3.Connection, tag: str, cases: dict[str, float]
    ) -> dict[str, int]:
        """The loop's case-id dictionary, read once per loop and kept; new ids are added (to
        the table here, to the kept copy only after the commit: a rollback leaves it true)."""
        known = self._case_ids.get(tag)
        if known is None:
            rows = db.execute("SELECT name, id FROM case_ids WHERE tag=?", (tag,)).fetchall()
            known = self._case_ids[tag] = dict(rows)
        new = [name for name in cases if name not in known]
        if new:
            start = max(known.values(), default=-1) + 1
            added = {name: start + i for i, name in enumerate(new)}
            db.executemany(
                "INSERT INTO case_ids (tag, id, name) VALUES (?, ?, ?)",
                [(tag, number, name) for name, number in added.items()],
            )
            return {**known, **added}  # kept by the caller once the transaction commits
        return known

    def case_runs(self, tag: str, experiment: int, beside: int | None = None) -> list[CaseRun]:
        """One experiment's own runs that reported cases, in order, and with `beside` also its
        control runs beside that candidate (each read through an index)."""
        columns = "SELECT run, seed, beside, control, scores FROM cases WHERE tag=? "
        try:
            rows = self._all(columns + "AND experiment=? AND control=0", (tag, experiment))
            if beside is not None:
                rows += self._all(
                    columns + "AND beside=? AND experiment=? AND control=1",
                    (tag, beside, experiment),
                )
        except sqlite3.OperationalError:  # a reader of a record written before the table
            return []
        rows.sort(key=lambda row: row[0])
        return [
            CaseRun(seed or 0, beside, bool(control), unpack(blob))
            for _, seed, beside, control, blob in rows
        ]

    def kept_at(self, tag: str, commit: str) -> int | None:
        """The kept experiment of this commit (the best a candidate was made from), if any."""
        rows = self._all(
            "SELECT id FROM experiments WHERE tag=? AND \"commit\"=? AND status='kept' "
            "ORDER BY id DESC LIMIT 1",
            (tag, commit),
        )
        return rows[0][0] if rows else None

    def case_names(self, tag: str, numbers: Iterable[int]) -> dict[int, str]:
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        found: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            try:
                rows = self._all(
                    f"SELECT id, name FROM case_ids WHERE tag=? AND id IN ({marks})", (tag, *chunk)
                )
            except sqlite3.OperationalError:
                return {}
            found.update(rows)
        return found

    def run_groups(self, tag: str) -> dict[int, list[float]]:
        """The metric of every successful run, by experiment (control runs left out)."""
        rows = self._all(
            "SELECT experiment, metric FROM runs WHERE tag=? AND metric IS NOT NULL "
            f"AND COALESCE(purpose, '') != '{CONTROL}' ORDER BY experiment, run",
            (tag,),
        )
        groups: dict[int, list[float]] = {}
        for experiment, metric in rows:
            groups.setdefault(experiment, []).append(metric)
        return groups

    def runs(self, tag: str, experiment: int, controls: bool = False) -> list[dict[str, Any]]:
        """The experiment's runs in order: its own measurements, and with `controls` also the
        control runs of it measured beside later candidates."""
        rows = self._all(
            f"SELECT {', '.join(_RUN_FIELDS)} FROM runs WHERE tag=? AND experiment=? "
            + ("" if controls else f"AND COALESCE(purpose, '') != '{CONTROL}' ")
            + "ORDER BY run",
            (tag, experiment),
        )
        return [dict(zip(_RUN_FIELDS, row, strict=True)) for row in rows]

    def controls_beside(self, tag: str, experiment: int) -> list[dict[str, Any]]:
        """The control runs measured beside this experiment (runs of the best of its time)."""
        rows = self._all(
            f"SELECT experiment, {', '.join(_RUN_FIELDS)} FROM runs WHERE tag=? AND beside=? "
            f"AND purpose='{CONTROL}' ORDER BY recorded_at",
            (tag, experiment),
        )
        return [dict(zip(("experiment", *_RUN_FIELDS), row, strict=True)) for row in rows]

    # --- queued work -------------------------------------------------------------------------

    def enqueue(self, tag: str, payload: dict[str, Any]) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO queue (tag, payload, created_at) VALUES (?, ?, ?)",
                (tag, json.dumps(payload), time.time()),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def dequeue(self, item: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM queue WHERE id=?", (item,))

    def queued(self, tag: str) -> list[tuple[int, dict[str, Any]]]:
        rows = self._all("SELECT id, payload FROM queue WHERE tag=? ORDER BY id", (tag,))
        return [(item, json.loads(payload)) for item, payload in rows]

    # --- notes for the agent -----------------------------------------------------------------

    def add_note(self, tag: str, text: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO notes (tag, text, created_at) VALUES (?, ?, ?)",
                (tag, text, time.time()),
            )

    def notes(self, tag: str) -> list[str]:
        rows = self._all("SELECT text FROM notes WHERE tag=? OR tag='' ORDER BY id", (tag,))
        return [row[0] for row in rows]

    # --- results.tsv (each loop's, kept beside the record: results_tsv.py) --------------------

    def write_results(
        self, tag: str, metric_name: str, experiments: Iterable[Experiment] | None = None
    ) -> None:
        """A loop's results.tsv rewritten whole from the record, or from `experiments`."""
        rows = self.experiments(tag, light=True) if experiments is None else experiments
        results_tsv.write_results(self.folder, tag, metric_name, rows)


def group_runs(
    runs: Iterable[tuple[int, float | None, float | None, str | None]],
) -> tuple[dict[int, list[float]], dict[int, int]]:
    """(experiment, metric, recorded_at, purpose) rows as the metrics of each experiment's
    successful runs and the count of its runs; control runs are not its measurements."""
    groups: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    for experiment, metric, _, purpose in runs:
        if purpose == CONTROL:
            continue
        counts[experiment] = counts.get(experiment, 0) + 1
        if metric is not None:
            groups.setdefault(experiment, []).append(metric)
    return groups, counts
