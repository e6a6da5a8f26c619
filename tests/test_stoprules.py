"""Stop rules: each stops with its reason, and raising its limit lets the loop go on."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import overload

import pytest
from ratchet.config import ConfigError, StopConfig, parse_config
from ratchet.experiment import Experiment, Status
from ratchet.stoprules import StopRules, Totals, stop_reason


def row(n: int, status: Status, metric: float | None = None, **kw: object) -> Experiment:
    exp = Experiment(n, "t", status, f"exp {n}", "mutate", "c0", metric=metric)
    for key, value in kw.items():
        setattr(exp, key, value)
    return exp


def record(*statuses: Status) -> list[Experiment]:
    rows = [row(0, Status.KEPT, 1.0, source="baseline")]
    rows += [row(i, s, 1.0 if s.measured else None) for i, s in enumerate(statuses, 1)]
    return rows


def test_no_rules_never_stop() -> None:
    assert stop_reason(record(*[Status.CRASHED] * 50), StopConfig()) is None


def test_experiments_without_a_keep_stop_and_resume() -> None:
    rows = record(Status.KEPT, *[Status.DISCARDED] * 3, Status.CRASHED)
    reason = stop_reason(rows, StopConfig(no_keep_after=4))
    assert reason == "stopped: 4 experiments without a keep (stop.no_keep_after = 4)"
    assert stop_reason(rows, StopConfig(no_keep_after=5)) is None  # raised: it goes on
    # A person's void and an interrupted run do not count; an unfinished one neither.
    more = [*rows[:-1], row(9, Status.VOIDED), row(10, Status.RUNNING)]
    assert stop_reason(more, StopConfig(no_keep_after=4)) is None


def test_failures_in_a_row_say_the_agent_is_stuck() -> None:
    rows = record(Status.DISCARDED, Status.CRASHED, Status.TIMEOUT, Status.INVALID)
    reason = stop_reason(rows, StopConfig(failures_in_row=3))
    assert reason is not None and reason.startswith("stopped: the last 3 experiments crashed")
    assert "stop.failures_in_row = 3" in reason
    assert stop_reason(rows, StopConfig(failures_in_row=4)) is None
    assert (
        stop_reason([*rows, row(9, Status.DISCARDED, 2.0)], StopConfig(failures_in_row=3)) is None
    )


def test_cost_and_gpu_hour_caps() -> None:
    rows = [row(i, Status.DISCARDED, 1.0, cost_usd=0.5, run_s=1800.0) for i in range(4)]
    assert "spent $2.00 (stop.max_cost_usd = 2)" in (
        stop_reason(rows, StopConfig(max_cost_usd=2)) or ""
    )
    assert stop_reason(rows, StopConfig(max_cost_usd=2.5)) is None
    hours = stop_reason(rows, StopConfig(max_gpu_hours=2))
    assert hours == "stopped: experiments have run 2.00 GPU-hours (stop.max_gpu_hours = 2)"
    assert stop_reason(rows, StopConfig(max_gpu_hours=3)) is None


@pytest.mark.parametrize(
    ("lower", "target", "stops"),
    [(True, 0.8, True), (True, 0.7, False), (False, 1.2, True), (False, 1.3, False)],
)
def test_a_target_metric(lower: bool, target: float, stops: bool) -> None:
    rows = [
        row(0, Status.KEPT, 1.0),
        row(1, Status.KEPT, 0.75 if lower else 1.25),
        row(2, Status.DISCARDED, 0.1 if lower else 9.0),
    ]  # discarded: not reached
    reason = StopRules(StopConfig(target=target), lower_is_better=lower).check(rows)
    assert (reason is not None) is stops
    if stops:
        assert reason is not None and reason.startswith("stopped: exp 1 reached")


def test_stop_keys_are_validated_with_their_location(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("LR = 0.1\n")
    head = '[loop]\neditable = "train.py"\ncommand = "python train.py"\n[metric]\nname = "s"\n'
    config = parse_config(head + "[stop]\nno_keep_after = 20\ntarget = 0.95\n", tmp_path)
    assert config.stop == replace(StopConfig(), no_keep_after=20, target=0.95)
    with pytest.raises(ConfigError) as caught:
        parse_config(head + "[stop]\nno_keep_after = 0\n", tmp_path)
    assert caught.value.line == 7 and "at least 1" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        parse_config(head + textwrap.dedent("[stop]\nmax_gpu_hour = 2\n"), tmp_path)
    assert 'did you mean "max_gpu_hours"?' in caught.value.message


class _Counting(Sequence[Experiment]):
    """A record that counts how many of its rows are read."""

    def __init__(self, rows: list[Experiment]) -> None:
        self.rows, self.read = rows, 0

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> Experiment: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Experiment]: ...
    def __getitem__(self, index: int | slice) -> Experiment | Sequence[Experiment]:
        self.read += 1
        return self.rows[index]


def test_the_rules_read_the_end_of_the_record_not_all_of_it() -> None:
    """After every experiment the loop asks: at 100,000 rows it must not read them all."""
    rows = record(Status.KEPT, *[Status.DISCARDED, Status.CRASHED] * 50_000)
    counting = _Counting(rows)
    stop = StopConfig(no_keep_after=50, failures_in_row=3, target=0.5, max_cost_usd=9)
    reason = StopRules(stop).check(counting, Totals(1.0, 10.0, rows[1]))
    assert reason == "stopped: 50 experiments without a keep (stop.no_keep_after = 50)"
    assert counting.read < 100, counting.read
