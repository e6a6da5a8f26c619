"""The record of every experiment: SQLite (WAL) in `.ratchet/`, and each loop's results.tsv
(`.ratchet/loops/<tag>/results.tsv`; `.ratchet/results.tsv` links to the loop opened last).

An experiment is written before it runs and again when it ends, so a loop killed at any
moment leaves a row that says where it stopped. Work promised but not yet started (a
person's edit, a revert, a re-measure) is a row of `queue` until its experiment is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .cases import CaseRun, pack, unpack
from .errors import RatchetError
from .experiment import Experiment, Status

LEDGER_NAME = "ledger.sqlite"
RESULTS_NAME = "results.tsv"
# 0: the first Ratchet (no version); 1: runs; 2: loop rules, queue; 3: the record's generation;
# 4: an experiment's holdout; 5: runs `beside` (a control run: the experiment it was measured
# beside), an experiment's `effect` and `resolvable` (its verdict in σ); per-case scores: each
# run's in one packed row of `cases`, keyed by the loop's dictionary of case ids `case_ids`
SCHEMA_VERSION = 5

_FIELDS = {f.name: f for f in dataclasses.fields(Experiment)}
_COLUMNS = list(_FIELDS)
COLUMNS = tuple(_COLUMNS)  # the order of every row the light and full reads return
_HEAVY = ("diff", "log_tail", "trace_tail")  # read by id, never for the whole record
_JSON_COLUMNS = {"secondary", "hardware"}
_FACTORIES = {
    name: spec.default_factory
    for name, spec in _FIELDS.items()
    if spec.default_factory is not dataclasses.MISSING
}
_DEFAULTS = {
    name: None if spec.default is dataclasses.MISSING else spec.default
    for name, spec in _FIELDS.items()
    if name not in _FACTORIES
}


def _sql_default(name: str) -> str:
    """A column as read: a value an older Ratchet never wrote reads as the field's default."""
    if name in _JSON_COLUMNS:
        return f"""COALESCE("{name}", '{{}}')"""
    default = _DEFAULTS.get(name)
    if default is None:
        return f'"{name}"'
    return (
        f'COALESCE("{name}", {default!r})'
        if not isinstance(default, bool)
        else (f'COALESCE("{name}", {int(default)})')
    )


_QUOTED = ", ".join(f'"{name}"' for name in _COLUMNS)  # `commit` is an SQL keyword
_READ = ", ".join(_sql_default(name) for name in _COLUMNS)
_LIGHT = ", ".join(
    f"'' AS \"{name}\"" if name in _HEAVY else _sql_default(name) for name in _COLUMNS
)
_STATUSES = {str(status): status for status in Status}
_SECONDARY, _HARDWARE, _STATUS = (_COLUMNS.index(n) for n in ("secondary", "hardware", "status"))
_DECLARED = ", ".join(
    f'"{name}"' + (" INTEGER" if name == "id" else "") for name in _COLUMNS if name != "tag"
)
# Per-case scores (cases.py): a loop's dictionary of case ids, and one row per run holding its
# scores packed (the run's `run` number, its seed, and the candidate a control run was beside).
_CASE_TABLES = (
    "CREATE TABLE IF NOT EXISTS case_ids (tag TEXT NOT NULL, id INTEGER NOT NULL, "
    "name TEXT NOT NULL, PRIMARY KEY (tag, id))",
    "CREATE TABLE IF NOT EXISTS cases (tag TEXT NOT NULL, experiment INTEGER NOT NULL, "
    "run INTEGER NOT NULL, seed INTEGER, beside INTEGER, control INTEGER, scores BLOB NOT NULL, "
    "PRIMARY KEY (tag, experiment, run))",
    # A verdict reads the best's own runs and the controls beside one candidate: neither read
    # grows with the controls the best gathered beside earlier candidates.
    "CREATE INDEX IF NOT EXISTS cases_own ON cases (tag, experiment, control)",
    "CREATE INDEX IF NOT EXISTS cases_beside ON cases (tag, beside)",
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
    beside INTEGER,
    PRIMARY KEY (tag, experiment, run)
);
{_CASE_TABLES[0]};
{_CASE_TABLES[1]};
{_CASE_TABLES[2]};
{_CASE_TABLES[3]};
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
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL
);
"""
_LOOP_COLUMNS = ("tag", "created_at", "start_commit", "metric_name", "goal", "rules", "hardware")

# Every write to the record, by any process or version from 3 on, bumps one number: a copy of
# the record taken at generation N (history's snapshot) is exact while it is still N.
_GENERATION = (
    "CREATE TABLE IF NOT EXISTS record_generation (n INTEGER NOT NULL)",
    "INSERT INTO record_generation SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM record_generation)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_{event.lower()} AFTER {event} ON {table} "
        "BEGIN UPDATE record_generation SET n = n + 1; END"
        for table in ("experiments", "runs")
        for event in ("INSERT", "UPDATE", "DELETE")
    ),
)
# A run's purpose: "measure" (an experiment's first run), "rerun" (its runs the judge asked
# for), "remeasure" (the best measured again: remeasure_every, a confirmation) or "control"
# (the best measured again beside a candidate: not one of its own measurements).
CONTROL = "control"
_RUN_READ = (
    "SELECT experiment, metric, recorded_at, purpose FROM runs WHERE tag=? ORDER BY experiment, run"
)


def damaged(path: Path, error: object) -> str:
    """One line for a record that cannot be read, with what to do; nothing is changed."""
    said = str(error)
    if "full" in said:
        return f"the disk holding {path} is full: free some space, then run the command again"
    return (
        f"the record {path} cannot be read ({said}): it was damaged or is not a Ratchet ledger; "
        "move it aside (its loops' branches and refs stay in git) to start a new record"
    )


def newer(path: Path, version: int) -> str:
    return (
        f"{path} was written by a newer Ratchet (schema {version}, this one reads up to "
        f"{SCHEMA_VERSION}); upgrade Ratchet to open it"
    )


@dataclasses.dataclass(frozen=True)
class LightRecord:
    """A loop's light rows (the query's columns, _COLUMNS) and its runs (experiment, metric,
    recorded_at, purpose), as one read saw them at `generation`."""

    generation: int
    rows: list[tuple[Any, ...]]
    runs: list[tuple[int, float | None, float | None, str | None]]


class Ledger:
    def __init__(self, folder: Path, read_only: bool = False) -> None:
        """`read_only`: a reader's view (log, show, report, the editor): nothing is created or
        written, not even the folder; a ledger of an older schema is upgraded once."""
        self.path = folder / LEDGER_NAME
        self.folder = folder
        self.results_path = folder / RESULTS_NAME  # a link to the loop opened last
        self._lock = threading.Lock()
        # Rows repeat the same few machines and secondary numbers: each distinct JSON text is
        # parsed once and shared (the loop replaces these dicts, it never edits one in place).
        self._parsed: dict[str, dict[str, Any]] = {}
        self._case_ids: dict[str, dict[str, int]] = {}  # each loop's case-id dictionary
        try:
            if read_only and self._open_for_reading():
                return
            folder.mkdir(parents=True, exist_ok=True)
            if self._emptied(folder):
                raise RatchetError(damaged(self.path, "it is empty (0 bytes), yet loops ran here"))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a handful of writes per experiment
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            with self._transaction() as db:
                self._migrate(db)
        except sqlite3.DatabaseError as error:
            raise RatchetError(damaged(self.path, error)) from None
        except OSError as error:
            raise RatchetError(f"cannot open the record {self.path}: {error.strerror}") from None

    def _emptied(self, folder: Path) -> bool:
        """A 0-byte ledger beside loops' folders lost its record: never started afresh over
        them (a 0-byte one alone is a first start that was killed, and is started again)."""
        return (
            self.path.exists()
            and self.path.stat().st_size == 0
            and any((folder / "loops").glob("*"))
        )

    def _open_for_reading(self) -> bool:
        """True when the ledger is open read-only at the current schema."""
        if not self.path.exists():
            raise RatchetError(f"no record at {self.path}: start the loop with `ratchet run`")
        if self.path.stat().st_size == 0:
            raise RatchetError(damaged(self.path, "it is empty (0 bytes)"))
        uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
        try:
            version = self._connect(uri)
        except sqlite3.OperationalError:
            # SQLite could not make its shared-memory file (a full disk, a read-only folder):
            # then no loop can be writing either, and the file is read as it stands.
            version = self._connect(uri + "&immutable=1")
        if version == SCHEMA_VERSION:
            return True
        self._db.close()
        if version > SCHEMA_VERSION:
            raise RatchetError(newer(self.path, version))
        return False  # an older schema: opened read-write once, to be upgraded

    def _connect(self, uri: str) -> int:
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=5000")
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Explicit, ordered migrations from whichever version wrote this ledger."""
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RatchetError(newer(self.path, version))
        present = {row[1] for row in db.execute("PRAGMA table_info(experiments)")}
        if version < 5:  # columns added since (1: most; 4: holdout; 5: effect) read as defaults
            for name in _COLUMNS:
                if name not in present:
                    db.execute(f'ALTER TABLE experiments ADD COLUMN "{name}"')
        if version < 1 and "source" not in present:  # the first Ratchet's exp 0: its baseline
            db.execute("UPDATE experiments SET source='baseline' WHERE id=0")
        if version < 2:
            present = {row[1] for row in db.execute("PRAGMA table_info(loops)")}
            for name in ("rules", "hardware"):
                if name not in present:
                    db.execute(f"ALTER TABLE loops ADD COLUMN {name} TEXT")
        if version < 3:
            for statement in _GENERATION:
                db.execute(statement)
        if version < 5:
            present = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "beside" not in present:
                db.execute("ALTER TABLE runs ADD COLUMN beside INTEGER")
            for statement in _CASE_TABLES:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
        rows = self._all(f"SELECT {', '.join(_LOOP_COLUMNS)} FROM loops WHERE tag=?", (tag,))
        if not rows:
            return None
        loop = dict(zip(_LOOP_COLUMNS, rows[0], strict=True))
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
        values = [_encode(name, getattr(experiment, name)) for name in _COLUMNS]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO experiments ({_QUOTED}) VALUES ({placeholders})",
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
                "UPDATE experiments SET metric=? WHERE tag=? AND id=?", (value, tag, experiment)
            )

    def experiments(self, tag: str, *, light: bool = False) -> list[Experiment]:
        """Every experiment of the loop; `light` leaves out diff, log and trace tails."""
        rows = self._all(
            f"SELECT {_LIGHT if light else _READ} FROM experiments WHERE tag=? ORDER BY id",
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
                    f"SELECT {_LIGHT} FROM experiments WHERE tag=? ORDER BY id", (tag,)
                ).fetchall()
                runs = self._db.execute(_RUN_READ, (tag,)).fetchall()
            finally:
                self._db.execute("COMMIT")
        return LightRecord(generation, rows, runs)

    def get(self, tag: str, experiment: int) -> Experiment | None:
        rows = self._all(f"SELECT {_READ} FROM experiments WHERE tag=? AND id=?", (tag, experiment))
        return self._experiment(rows[0]) if rows else None

    def get_many(self, tag: str, ids: Iterable[int]) -> dict[int, Experiment]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        rows = self._all(
            f"SELECT {_READ} FROM experiments WHERE tag=? AND id IN ({marks})", (tag, *wanted)
        )
        found = [self._experiment(row) for row in rows]
        return {e.id: e for e in found}

    def _experiment(self, row: tuple[Any, ...]) -> Experiment:
        # Defaults are filled in by the query, whose columns are _COLUMNS (no strict zip: a
        # tenth of the build at 100,000 rows).
        values = dict(zip(_COLUMNS, row))  # noqa: B905
        values["secondary"] = self._json(row[_SECONDARY])
        values["hardware"] = self._json(row[_HARDWARE])
        values["status"] = _STATUSES[row[_STATUS]]
        # 100,000 rows at open: the values are complete, so __init__'s work is skipped.
        exp = object.__new__(Experiment)
        exp.__dict__ = values
        return exp

    def _json(self, raw: str) -> dict[str, Any]:
        parsed = self._parsed.get(raw)
        if parsed is None:
            parsed = self._parsed.setdefault(raw, json.loads(raw) if raw else {})
        return parsed

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

    # --- results.tsv -------------------------------------------------------------------------

    def results_of(self, tag: str) -> Path:
        """One loop's results.tsv: its rows only, so a notebook pointed at it compares that
        loop's baseline with that loop's best."""
        return self.folder / "loops" / tag / RESULTS_NAME

    def link_results(self, tag: str) -> None:
        """`.ratchet/results.tsv` made a link to this loop's file (where autoresearch's users
        look); a file there from an older Ratchet, every loop's rows mixed, is replaced."""
        target = Path("loops") / tag / RESULTS_NAME
        try:
            if self.results_path.is_symlink() and Path(os.readlink(self.results_path)) == target:
                return
            scratch = self.folder / f".results-link-{os.getpid()}-{threading.get_ident()}"
            scratch.unlink(missing_ok=True)
            os.symlink(target, scratch)
            os.replace(scratch, self.results_path)
        except OSError:
            return  # no links here (a file system without them): the loop's own file stands

    def append_result(self, experiment: Experiment, metric_name: str) -> None:
        """One finished experiment appended to its loop's results.tsv (the header first, if
        new): one row written, whatever the record holds."""
        line = results_row(experiment)
        if line is None:
            return
        path = self.results_of(experiment.tag)
        fresh = not path.exists()
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as results:
            if fresh:
                results.write(results_header(metric_name) + "\n")
            results.write(line + "\n")

    def write_results(
        self, tag: str, metric_name: str, experiments: Iterable[Experiment] | None = None
    ) -> None:
        """A loop's results.tsv rewritten whole from the record (recovery), through a
        temporary file of its own so that concurrent writers never share one."""
        rows = self.experiments(tag, light=True) if experiments is None else experiments
        lines = results_lines(rows, metric_name)
        path = self.results_of(tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, scratch = tempfile.mkstemp(prefix=".results-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
            os.replace(scratch, path)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise


# autoresearch knows three statuses; every failure is a crash there, at metric 0 as it writes
# them. Experiments that never came to a verdict (interrupted, cancelled, rejected) are left out.
_TSV_STATUS = {
    Status.KEPT: "keep",
    Status.DISCARDED: "discard",
    Status.ABORTED: "discard",
    Status.CRASHED: "crash",
    Status.TIMEOUT: "crash",
    Status.INVALID: "crash",
    Status.VOIDED: "crash",
    Status.LOST: "crash",
    Status.OVER_BUDGET: "crash",
}


def results_header(metric_name: str) -> str:
    return f"commit\t{metric_name}\tmemory_gb\tstatus\tdescription"


_RUN_FIELDS = ("run", "metric", "wall_s", "purpose", "recorded_at", "beside")


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


def in_results(status: Status) -> bool:
    """Whether an experiment of this status has a row in results.tsv."""
    return status in _TSV_STATUS


def results_row(exp: Experiment) -> str | None:
    status = _TSV_STATUS.get(exp.status)
    if status is None:
        return None
    memory_gb = exp.secondary.get("peak_vram_mb", 0.0) / 1024
    value = exp.metric if status != "crash" and exp.metric is not None else 0.0
    description = " ".join(exp.description.split())
    return f"{(exp.commit or '')[:7]}\t{value:.6f}\t{memory_gb:.1f}\t{status}\t{description}"


def results_lines(experiments: Iterable[Experiment], metric_name: str) -> list[str]:
    rows = (results_row(e) for e in experiments)
    return [results_header(metric_name), *(row for row in rows if row is not None)]


def _encode(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        return json.dumps(value)
    if name == "status":
        return str(value)
    return value
