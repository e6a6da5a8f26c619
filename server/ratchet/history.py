"""The loop's experiments in memory: loaded once at open, kept current by the one writer.

Everything the loop derives from its record (the best, the baseline, counts, cost, the
digests already tried, the runs behind the noise) is derived here, in one place, and updated
per experiment in O(1): no experiment reads the whole ledger. Heavy fields (diff, log and
trace tails) stay in the ledger and are read by id.
"""

from __future__ import annotations

import bisect
import gc
import threading
from collections.abc import Callable, Iterable, KeysView
from dataclasses import replace
from pathlib import Path

from . import snapshot
from .experiment import Experiment, Pending, Status
from .ledger import CONTROL, Ledger, LightRecord, group_runs
from .ledger_schema import COLUMNS
from .noise import group_spread, pooled_noise
from .results_tsv import in_results
from .track import Timed

# Not real measurements of the change they describe: never a reason to skip an edit as tried.
_NOT_TRIED = (Status.INVALID, Status.INTERRUPTED, Status.REJECTED, Status.LOST, Status.CANCELLED)
_CRASHES = (Status.CRASHED, Status.TIMEOUT, Status.OVER_BUDGET)


_AGAIN = (CONTROL, "remeasure")  # runs of a best measured after it was judged


def timeline(
    runs: list[tuple[int, float | None, float | None, str | None]],
) -> tuple[dict[int, list[Timed]], int]:
    """Each experiment's successful runs on the loop's clock (the rank of when each run was
    recorded, ties in the record's order), and the clock now."""
    order = sorted(range(len(runs)), key=lambda i: (runs[i][2] or 0.0, i))
    rank = [0] * len(runs)
    for tick, index in enumerate(order, start=1):
        rank[index] = tick
    series: dict[int, list[Timed]] = {}
    for index, (experiment, metric, _, purpose) in enumerate(runs):
        if metric is not None:
            series.setdefault(experiment, []).append(Timed(metric, rank[index], purpose in _AGAIN))
    for values in series.values():
        values.sort(key=lambda run: run.at)
    return series, len(runs)


def _counts(exp: Experiment) -> bool:
    return (
        exp.source != "rebase"
        and exp.rerun_of is None
        and not (
            exp.source == "baseline" and exp.description.startswith("baseline, measured again")
        )
    )


def light(exp: Experiment) -> Experiment:
    return replace(exp, diff="", log_tail="", trace_tail="")


class History:
    def __init__(self, ledger: Ledger, tag: str, snapshot: Path | None = None) -> None:
        self.ledger = ledger
        self.tag = tag
        self.snapshot = snapshot  # where the light record is kept between a close and an open
        self.from_snapshot = False  # whether the last load came from it
        self.experiments: list[Experiment] = []
        self.by_id: dict[int, Experiment] = {}
        self.runs: dict[int, list[float]] = {}  # each experiment's measurements
        self.attempts: dict[int, int] = {}  # runs of each experiment, failed ones too
        # Each experiment's successful runs in time, control runs of it included; time is the
        # loop's clock: one tick per run recorded, in the order they were recorded.
        self.series: dict[int, list[Timed]] = {}
        self.clock = 0
        self.control_runs = 0  # runs of a best beside a candidate: a cost of the loop
        self._tried: dict[str, int] = {}  # digest → the experiment that measured it
        self._by_commit: dict[str, Experiment] = {}  # kept experiments by commit
        self.best: Experiment | None = None
        self.baseline: Experiment | None = None
        self.kept = 0  # kept changes, the baseline not counted
        self.finished = 0
        self.crashed = 0
        self.in_results = 0  # rows results.tsv holds
        self.cost_usd = 0.0
        self.run_s = 0.0  # every run's time, all experiments together
        self._pool = _Pool()
        self.tip = ""  # the loop's branch: start_at when the loop opens, advance with each keep
        self._next_id = 0  # the number the next experiment takes (see allocate_id)
        self._columns = threading.Lock()  # one column of a row written at a time (_set)

    def load(self) -> None:
        """One read of the light columns and one of the runs: the whole record, once."""
        # Millions of objects and no cycles among them: a collection during the read would
        # only walk what it has made so far, again and again (0.4 s of 2 at 100,000).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._load()
        finally:
            if collecting:
                gc.enable()

    def _load(self) -> None:
        self.experiments, self.by_id, self._tried, self._by_commit = [], {}, {}, {}
        self.best = self.baseline = None
        self.kept = self.finished = self.crashed = self.in_results = 0
        self.cost_usd = self.run_s = 0.0
        record = self._snapshot_record()
        self.from_snapshot = record is not None
        if record is None:
            record = self.ledger.light_record(self.tag)
        self.experiments = self.ledger.build(record.rows)  # in id order
        self.by_id = {e.id: e for e in self.experiments}
        for exp in self.experiments:
            self._count(exp, +1)
            self._update_best(exp)
        self.runs, self.attempts = group_runs(record.runs)
        self.series, self.clock = timeline(record.runs)
        self.control_runs = sum(1 for run in record.runs if run[3] == CONTROL)
        self._pool = _Pool.of(self.runs)
        self._next_id = self.next_id()

    def _snapshot_record(self) -> LightRecord | None:
        if self.snapshot is None:
            return None
        return snapshot.read(self.snapshot, self.tag, COLUMNS, self.ledger.generation())

    def save_snapshot(self) -> None:
        """Keeps the record as the ledger holds it now, for the next open (off any
        experiment's path: the loop calls it as it closes)."""
        if self.snapshot is not None:
            snapshot.write(self.snapshot, self.tag, COLUMNS, self.ledger.light_record(self.tag))

    # --- the one writer ----------------------------------------------------------------------

    def start_at(self, tip: str) -> None:
        """The loop's branch as the loop finds it when it opens."""
        self.tip = tip

    def advance(self, commit: str) -> None:
        """A keep moved the loop's branch to its commit."""
        self.tip = commit

    def promise(self, pending: Pending, priority: int, counted: bool) -> int:
        """Work the loop owes, written to the ledger's queue before anything depends on it (a
        stop, a crash or a SIGKILL loses none of it); returns its row, which the experiment
        that carries it out consumes (`save`)."""
        proposal = pending.proposal
        return self.ledger.enqueue(
            self.tag,
            {
                "source": proposal.source,
                "description": proposal.description,
                "edits": proposal.edits,
                "rerun_of": proposal.rerun_of,
                "base_commit": pending.base_commit,
                "hardware": pending.hardware,
                "priority": priority,
                "counted": counted,
            },
        )

    def save(self, exp: Experiment, consumes: int | None = None) -> None:
        """Writes the experiment to the ledger, then to memory (light)."""
        self.ledger.save(exp, consumes)
        self._replace(light(exp))

    def set_holdout(self, exp_id: int, value: float | None) -> None:
        """An experiment's holdout, written alone (to the ledger, then to memory)."""
        self.ledger.set_holdout(self.tag, exp_id, value)
        self._set(exp_id, lambda exp: replace(exp, holdout=value))

    def set_metric(self, exp_id: int, value: float) -> None:
        """A best's metric after it was measured again, written alone (ledger, then memory);
        the metric it was kept on stays as `judged`."""
        self.ledger.set_metric(self.tag, exp_id, value)
        self._set(
            exp_id,
            lambda exp: replace(
                exp, metric=value, judged=exp.metric if exp.judged is None else exp.judged
            ),
        )

    def _set(self, exp_id: int, change: Callable[[Experiment], Experiment]) -> None:
        # A new best's holdout and a control's metric of it come from worker threads at once:
        # each reads the row the other wrote, so neither value is lost in memory.
        with self._columns:
            current = self.by_id.get(exp_id)
            if current is not None:
                self._replace(change(current))

    def add_run(
        self,
        exp_id: int,
        value: float | None,
        wall_s: float,
        purpose: str,
        beside: int | None = None,
        cases: dict[str, float] | None = None,
        seed: int = 0,
    ) -> int:
        """Records one run (a control run of the best: `purpose` "control", `beside` the
        candidate), with its per-case scores if it reported them (kept in the ledger only:
        read back by experiment, never loaded whole); returns its time on the loop's clock."""
        self.ledger.add_run(self.tag, exp_id, value, wall_s, purpose, beside, cases, seed)
        self.clock += 1
        if value is not None:
            self.series.setdefault(exp_id, []).append(Timed(value, self.clock, purpose in _AGAIN))
        if purpose == CONTROL:
            self.control_runs += 1
            return self.clock
        self.attempts[exp_id] = self.attempts.get(exp_id, 0) + 1
        if value is not None:
            values = self.runs.setdefault(exp_id, [])
            values.append(value)
            self._pool.set(exp_id, values)
        return self.clock

    def _replace(self, exp: Experiment) -> None:
        old = self.by_id.get(exp.id)
        if old is None:
            self._add(exp)
            return
        self._count(old, -1)
        self.experiments[self._index(exp.id)] = exp
        self.by_id[exp.id] = exp
        self._count(exp, +1)
        if self.best is old or (self.best is not None and self.best.id == exp.id):
            self._find_best()
        if self.baseline is not None and self.baseline.id == exp.id:
            baselines = [e for e in reversed(self.experiments) if self._is_baseline(e)]
            self.baseline = baselines[0] if baselines else None
        self._update_best(exp)

    def _add(self, exp: Experiment) -> None:
        # Kept in id order; slots finish out of order, but almost always near the end.
        if not self.experiments or self.experiments[-1].id < exp.id:
            self.experiments.append(exp)
        else:
            self.experiments.insert(self._lower_bound(exp.id), exp)
        self.by_id[exp.id] = exp
        self._count(exp, +1)
        self._update_best(exp)

    def _index(self, exp_id: int) -> int:
        index = self._lower_bound(exp_id)
        if index < len(self.experiments) and self.experiments[index].id == exp_id:
            return index
        raise KeyError(exp_id)

    def _count(self, exp: Experiment, sign: int) -> None:
        self.cost_usd += sign * exp.cost_usd
        self.run_s += sign * exp.run_s
        if exp.status.is_final:
            self.finished += sign
        if exp.status in _CRASHES:
            self.crashed += sign
        if in_results(exp.status):
            self.in_results += sign
        if exp.status is Status.KEPT:
            if exp.source != "baseline":
                self.kept += sign
            if exp.commit:
                if sign > 0:
                    self._by_commit[exp.commit] = exp
                else:
                    self._by_commit.pop(exp.commit, None)
        if exp.digest and exp.status.is_final and exp.status not in _NOT_TRIED:
            if sign > 0:
                self._tried.setdefault(exp.digest, exp.id)
            elif self._tried.get(exp.digest) == exp.id:
                del self._tried[exp.digest]

    @staticmethod
    def _is_baseline(exp: Experiment) -> bool:
        return exp.status is Status.KEPT and exp.source == "baseline"

    def _update_best(self, exp: Experiment) -> None:
        if exp.status is Status.KEPT and (self.best is None or exp.id >= self.best.id):
            self.best = exp
        # The latest baseline: a loop re-measured on new hardware or rules starts a new one.
        if self._is_baseline(exp) and (self.baseline is None or exp.id >= self.baseline.id):
            self.baseline = exp

    def _find_best(self) -> None:
        kept = [e for e in reversed(self.experiments) if e.status is Status.KEPT]
        self.best = kept[0] if kept else None

    # --- what the loop derives ---------------------------------------------------------------

    def noise(self) -> float | None:
        """The run-to-run noise (noise.estimate_noise), from spreads kept current per run."""
        return self._pool.noise()

    def tried(self, digest: str) -> Experiment | None:
        exp_id = self._tried.get(digest)
        return None if exp_id is None else self.by_id.get(exp_id)

    def tried_keys(self) -> KeysView[str]:
        """The digests already measured, as a live view (no copy per proposal)."""
        return self._tried.keys()

    def kept_by_commit(self, commit: str) -> Experiment | None:
        return self._by_commit.get(commit)

    def counted(self) -> int:
        """The experiments that count against --max-experiments: not a re-measure, not the
        re-run of an earlier one."""
        return sum(1 for e in self.experiments if _counts(e))

    def next_id(self) -> int:
        return self.experiments[-1].id + 1 if self.experiments else 0  # kept in id order

    @property
    def unallocated(self) -> int:
        """The number the next experiment will take (numbers run ahead of the record while
        experiments are in flight)."""
        return self._next_id

    def allocate_id(self) -> int:
        """Numbers are taken without an await in between, so parallel slots never share one;
        they follow the record from its last load."""
        exp_id = self._next_id
        self._next_id += 1
        return exp_id

    def since(self, after: int, limit: int | None = None) -> list[Experiment]:
        """Finished experiments numbered above `after`, oldest first."""
        start = 0
        if self.experiments and after >= 0:
            start = max(0, min(len(self.experiments), self._lower_bound(after + 1)))
        found = [e for e in self.experiments[start:] if e.status.is_final]
        return found[:limit] if limit is not None else found

    def _lower_bound(self, exp_id: int) -> int:
        return bisect.bisect_left(self.experiments, exp_id, key=lambda e: e.id)

    def full(self, exp_id: int) -> Experiment | None:
        """One experiment with its heavy fields, from the ledger."""
        return self.ledger.get(self.tag, exp_id)

    def full_many(self, ids: Iterable[int]) -> dict[int, Experiment]:
        return self.ledger.get_many(self.tag, ids)


class _Pool:
    """Each experiment's spread of runs, kept current run by run, so the noise (judge's
    pooled_noise, robust to one group that shifted inside) needs no pass over every run."""

    def __init__(self) -> None:
        self.spreads: dict[int, tuple[float, int]] = {}
        self.scale = 0.0
        self._noise: float | None = None
        self._stale = False

    @classmethod
    def of(cls, runs: dict[int, list[float]]) -> _Pool:
        pool = cls()
        pool.scale = max((abs(v) for values in runs.values() for v in values), default=0.0)
        for exp_id, values in runs.items():
            if len(values) > 1 and (spread := group_spread(values)) is not None:
                pool.spreads[exp_id] = spread
        pool._stale = True
        return pool

    def set(self, exp_id: int, values: list[float]) -> None:
        spread = group_spread(values)
        if spread is not None:
            self.spreads[exp_id] = spread
            self._stale = True
        if values:
            self.scale = max(self.scale, abs(values[-1]))  # the run just added

    def noise(self) -> float | None:
        if self._stale:
            self._noise = pooled_noise(list(self.spreads.values()), self.scale)
            self._stale = False
        return self._noise
