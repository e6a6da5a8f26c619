"""The ledger's file: its tables, their columns as an Experiment's fields, the migrations from
every older schema, and opening it (read-write, or a reader's read-only view)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from .errors import RatchetError
from .experiment import Experiment, Status

LEDGER_NAME = "ledger.sqlite"
# 0: the first Ratchet (no version); 1: runs; 2: loop rules, queue; 3: the record's generation;
# 4: an experiment's holdout; 5: runs `beside` (a control run: the experiment it was measured
# beside), an experiment's `effect` and `resolvable` (its verdict in σ); per-case scores: each
# run's in one packed row of `cases`, keyed by the loop's dictionary of case ids `case_ids`;
# 6: an experiment's `judged` metric (a best's, kept when its level is revised)
SCHEMA_VERSION = 6

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


QUOTED = ", ".join(f'"{name}"' for name in _COLUMNS)  # `commit` is an SQL keyword
READ = ", ".join(_sql_default(name) for name in _COLUMNS)
LIGHT = ", ".join(
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
LOOP_COLUMNS = ("tag", "created_at", "start_commit", "metric_name", "goal", "rules", "hardware")

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


def encode(experiment: Experiment) -> list[Any]:
    """The experiment as one row of `experiments`, in the order of COLUMNS."""
    return [_encode(name, getattr(experiment, name)) for name in _COLUMNS]


def _encode(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        return json.dumps(value)
    if name == "status":
        return str(value)
    return value


class Decoder:
    """Rows read through READ or LIGHT as Experiments. Rows repeat the same few machines and
    secondary numbers: each distinct JSON text is parsed once and shared (the loop replaces
    these dicts, it never edits one in place)."""

    def __init__(self) -> None:
        self._parsed: dict[str, dict[str, Any]] = {}

    def __call__(self, row: tuple[Any, ...]) -> Experiment:
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


def open_record(folder: Path, read_only: bool) -> sqlite3.Connection:
    """The ledger in `folder`, at the current schema. `read_only`: a reader's view (log, show,
    report, the editor): nothing is created or written, not even the folder; a ledger of an
    older schema is upgraded once."""
    path = folder / LEDGER_NAME
    try:
        db = _open_for_reading(path) if read_only else None
        if db is not None:
            return db
        folder.mkdir(parents=True, exist_ok=True)
        if _emptied(path, folder):
            raise RatchetError(damaged(path, "it is empty (0 bytes), yet loops ran here"))
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a handful of writes per experiment
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        with db:  # commits, or rolls back on an error
            _migrate(db, path)
        return db
    except sqlite3.DatabaseError as error:
        raise RatchetError(damaged(path, error)) from None
    except OSError as error:
        raise RatchetError(f"cannot open the record {path}: {error.strerror}") from None


def _emptied(path: Path, folder: Path) -> bool:
    """A 0-byte ledger beside loops' folders lost its record: never started afresh over them
    (a 0-byte one alone is a first start that was killed, and is started again)."""
    return path.exists() and path.stat().st_size == 0 and any((folder / "loops").glob("*"))


def _open_for_reading(path: Path) -> sqlite3.Connection | None:
    """The ledger open read-only at the current schema; None for an older schema (opened
    read-write once, to be upgraded)."""
    if not path.exists():
        raise RatchetError(f"no record at {path}: start the loop with `ratchet run`")
    if path.stat().st_size == 0:
        raise RatchetError(damaged(path, "it is empty (0 bytes)"))
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    try:
        db, version = _connect(uri)
    except sqlite3.OperationalError:
        # SQLite could not make its shared-memory file (a full disk, a read-only folder):
        # then no loop can be writing either, and the file is read as it stands.
        db, version = _connect(uri + "&immutable=1")
    if version == SCHEMA_VERSION:
        return db
    db.close()
    if version > SCHEMA_VERSION:
        raise RatchetError(newer(path, version))
    return None


def _connect(uri: str) -> tuple[sqlite3.Connection, int]:
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=5000")
    (version,) = db.execute("PRAGMA user_version").fetchone()
    return db, int(version)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Explicit, ordered migrations from whichever version wrote this ledger."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RatchetError(newer(path, version))
    present = {row[1] for row in db.execute("PRAGMA table_info(experiments)")}
    if version < 6:  # columns added since (1: most; 4: holdout; 5: effect; 6: judged) read
        # as defaults
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
