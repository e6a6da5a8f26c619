"""Same-round controls: the best is measured again beside its candidates, and a candidate is
judged against the best's level at its own time, so a machine that drifts is not read as
progress (issue 21)."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject
from loops import engine_for, run
from ratchet.cli import main
from ratchet.experiment import Experiment, Status
from ratchet.history import History
from ratchet.judge import CLOSE, LUCK, Judge
from ratchet.ledger import CONTROL, Ledger
from ratchet.report import summarise
from ratchet.report_svg import progress_svg
from ratchet.track import Timed, Track
from ratchet.verdicts import Verdicts

DEADLINE_S = 240.0
JUDGE = Judge(lower_is_better=True, rule="sequential", controls=True)

# --- the track, alone --------------------------------------------------------------------------


def _series(rng: random.Random, level: float, start: int, count: int, slope: float) -> list[Timed]:
    return [
        Timed(level + slope * t + rng.gauss(0, 1.0), t, again=t > start + 2)
        for t in range(start, start + count)
    ]


def test_a_steady_best_is_read_as_the_mean_of_its_runs() -> None:
    rng = random.Random(1)
    series = _series(rng, 10.0, 0, 40, 0.0)
    track = JUDGE.track(series, 1.0, False)
    level, variance = track.level([41], 1.0)
    assert abs(level - 10.0) < 0.6 and variance < 0.2
    assert track.reading.drift.name == "steady"


def test_a_ramp_is_learned_and_the_level_is_read_at_the_candidate_s_time() -> None:
    # The machine reads half a noise unit better every run: the level a candidate is judged
    # against is where the ramp is at its time, not the mean of the best's runs.
    rng = random.Random(2)
    series = _series(rng, 0.0, 0, 40, -0.5)
    track = JUDGE.track(series, 1.0, False)
    level, variance = track.level([45], 1.0)
    assert abs(level - (-22.5)) < 1.5 and variance < 1.0
    assert track.reading.drift.name == "trend"
    # A no-effect candidate measured there is not kept against it.
    candidate = [-22.5 + rng.gauss(0, 1.0) for _ in range(2)]
    decision = JUDGE.assess(candidate, [s.value for s in series[:3]], 1.0, track, [45, 46])
    assert not decision.keep


def test_a_keep_asks_for_a_control_when_the_best_was_last_measured_long_ago() -> None:
    track = JUDGE.track([Timed(1.0, 1), Timed(1.01, 2), Timed(0.99, 3)], 0.01, False)
    far = 3 + CLOSE + 5
    decision = JUDGE.assess([0.5], [1.0, 1.01, 0.99], 0.01, track, [far])
    assert decision.action == "control" and "measuring it again beside this one" in decision.reason
    # After the control (the best is where it was), the gain stands and is kept.
    track.add(Timed(1.0, far + 1, again=True), 0.01)
    assert JUDGE.assess([0.5], [1.0, 1.01, 0.99], 0.01, track, [far]).keep
    # A control that could not be measured does not block the verdict.
    stale = JUDGE.track([Timed(1.0, 1), Timed(1.01, 2), Timed(0.99, 3)], 0.01, False)
    assert JUDGE.assess([0.5], [1.0], 0.01, stale, [far], control=False).keep


def test_a_best_kept_on_fewer_runs_is_read_back_more_for_its_luck() -> None:
    # Its runs were kept because they read well; a keep on two runs passed a higher bound
    # than a keep on three, so it is read back by more (lower is better: back is up).
    def level(runs: int, lucky: bool) -> float:
        track = JUDGE.track([Timed(0.0, t) for t in range(runs)], 1.0, lucky)
        return track.level([runs], 1.0)[0]

    assert level(3, False) == pytest.approx(0.0, abs=1e-6)  # the baseline: no luck to read
    assert level(2, True) > level(3, True) > 0.0
    assert level(2, True) == pytest.approx(LUCK * JUDGE.keep_bound(2) / 2**0.5, rel=0.1)


def test_a_best_s_recorded_metric_is_the_mean_of_its_runs_whatever_the_machine_did() -> None:
    # A best kept on 2 runs, then measured beside candidates for a whole slow swing of the
    # machine (3 noise units over 120 runs, no noise: the figures are exact). What it records
    # is the mean of its runs, the 2 it was kept on read back for their luck: the mean of its
    # levels at the times it ran. A level predicted back from the end by the filters' reading
    # of now would read the swing's past by today's slope.
    def swing(t: int) -> float:
        return 3.0 * math.sin(2 * math.pi * t / 120)

    series = [Timed(swing(t), t, again=t >= 2) for t in range(100)]
    track = JUDGE.track(series, 1.0, True)
    luck = LUCK * JUDGE.keep_bound(2) / 2**0.5
    truth = sum(swing(t) for t in range(100)) / 100
    assert track.recorded == pytest.approx(truth + 2 * luck / 100)
    predicted_back = track.level([t for t in range(100)], 1.0)[0]
    assert abs(predicted_back - truth) > 10 * abs(track.recorded - truth)


def test_the_control_rate_is_the_judge_s_to_set() -> None:
    # The bench draws gains kept against the control rate with the engine's own judge.
    track = JUDGE.track([Timed(1.0, 1), Timed(1.0, 2, again=True)], 0.01, False)
    eager = Judge(lower_is_better=True, rule="sequential", controls=True, max_gap=2, stale=9.0)
    assert eager.wants_control(track, 4, 0.01) and not eager.wants_control(track, 3, 0.01)
    assert not JUDGE.wants_control(track, 4, 0.01)  # the default waits MAX_GAP runs


def test_controls_are_asked_for_a_new_best_and_not_for_a_deterministic_metric() -> None:
    track = JUDGE.track([Timed(1.0, 1)], 0.01, True)
    assert JUDGE.wants_control(track, 2, 0.01)  # a new best, not yet measured beside one
    assert not JUDGE.wants_control(track, 2, 0.0)
    assert not JUDGE.wants_control(track, 2, None)
    off = Judge(lower_is_better=True, rule="sequential", controls=False)
    assert not off.wants_control(track, 2, 0.01)


# --- through the real loop ---------------------------------------------------------------------

# The metric's level falls (gets better) steadily with the machine's time, from the moment
# the project was made: half a noise unit per run (each run, candidate or control, ticks a
# clock in a declared cache folder; counted in runs, not seconds, so a loaded machine that
# slows the runs does not change the drift the judge sees; its noise is drawn from the clock
# too, so the test is the same sample every time: bench_judge.py gives the rates). Nothing the
# edits change reads it.
DRIFTING = """\
import os, random
LR = 0.5


WIDTH = 8
with open({clock!r}, "a") as clock:
    ticks = clock.tell()
    clock.write(".")
random.seed(ticks)  # the noise of run n is the same every time the test runs
drift = 0.005 * ticks
print("score:", 1 + (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100 - drift + random.gauss(0, 0.01))
"""

CONTROLLED = CONFIG.replace('budget = "10s"', 'budget = "10s"\ntimeout = "30s"')


def _no_effect(n: int) -> tuple[object, str]:
    return (lambda text: text + f"\nUNUSED_{n} = {n}\n", f"a constant nothing reads ({n})")


async def _drifting_loop(make_project: MakeProject, tmp_path: Path, real_at: int | None) -> list:
    clock = tmp_path / "clock"
    clock.mkdir()
    config = CONTROLLED.replace("[agent]", f'[sandbox]\nwrite = ["{clock}"]\n\n[agent]')
    root = make_project(train=DRIFTING.format(clock=str(clock / "ticks")), config=config)
    steps = [_no_effect(n) for n in range(12)]
    if real_at is not None:
        steps.insert(real_at, (replace("WIDTH = 8", "WIDTH = 12"), "a real gain: 16 noise units"))
    engine = engine_for(root, ScriptedAgent(steps))  # type: ignore[arg-type]
    await asyncio.wait_for(run(engine, 1 + len(steps)), DEADLINE_S)
    return [engine.ledger.experiments("t"), engine]


async def test_a_drifting_machine_is_not_read_as_progress(
    make_project: MakeProject, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiments, engine = await _drifting_loop(make_project, tmp_path, None)
    candidates = experiments[1:]
    assert len(candidates) == 12
    kept = [e for e in candidates if e.status is Status.KEPT]
    assert len(kept) <= 1, [(e.id, e.reason) for e in kept]
    # The best was measured again beside its candidates, and those runs are recorded as
    # controls, apart from its own measurements.
    controls = [
        r
        for e in experiments
        for r in engine.ledger.runs("t", e.id, controls=True)
        if r["purpose"] == CONTROL
    ]
    assert controls and all(r["beside"] is not None for r in controls)
    assert all(r["purpose"] != CONTROL for r in engine.ledger.runs("t", 0))
    # Counted: the loop's runs include them (read back from the record, as a view opens it).
    status = engine.status()
    assert status["controlRuns"] == len(controls) and status["runs"] > len(controls) + 12
    # `ratchet show` lists them as controls, beside the candidate and on the best.
    beside = engine.ledger.controls_beside("t", controls[0]["beside"])
    capsys.readouterr()
    assert main(["-C", str(engine.config.root), "show", str(controls[0]["beside"])]) == 0
    shown = capsys.readouterr().out
    assert f"controls  exp {beside[0]['experiment']}: " in shown and "control)" in shown
    # Each verdict in one currency, the same numbers in its reason and its own line.
    judged = engine.ledger.get("t", controls[0]["beside"])
    assert judged is not None and judged.effect is not None and judged.resolvable is not None
    assert f"gain {judged.effect:.1f}σ" in judged.reason
    assert (
        f"verdict  gain {judged.effect:.1f}σ; its runs resolved {judged.resolvable:.1f}σ" in shown
    )
    # The candidate carries the best's level measured beside it; the report charts the series.
    values = [r["metric"] for r in beside if r["metric"] is not None]
    assert judged.control == pytest.approx(sum(values) / len(values))
    chart = progress_svg(summarise(engine.ledger, "t"))
    assert chart.count('class="control"') == 2 and "the best, measured beside" in chart
    assert main(["-C", str(engine.config.root), "show", "0"]) == 0
    assert "beside later candidates" in capsys.readouterr().out
    # The best's reported metric reads its controls too, the runs no keep chose: the machine
    # got better since its baseline runs, so the number moved from their mean toward them.
    best = experiments[0] if len(kept) == 0 else kept[-1]
    runs = engine.ledger.runs("t", best.id, controls=True)
    own = [r["metric"] for r in runs if r["purpose"] != CONTROL and r["metric"] is not None]
    again = [r["metric"] for r in runs if r["purpose"] == CONTROL and r["metric"] is not None]
    reported = engine.ledger.get("t", best.id)
    assert again and reported is not None and reported.metric is not None
    assert min(again) < reported.metric < sum(own) / len(own)


async def test_a_real_gain_on_a_drifting_machine_is_kept(
    make_project: MakeProject, tmp_path: Path
) -> None:
    experiments, _ = await _drifting_loop(make_project, tmp_path, 6)
    real = next(e for e in experiments if e.description.startswith("a real gain"))
    assert real.status is Status.KEPT, real.reason
    others = [e for e in experiments[1:] if e is not real and e.status is Status.KEPT]
    assert len(others) <= 1, [(e.id, e.reason) for e in others]


@pytest.mark.parametrize("controls", ["true", "false"])
def test_controls_are_a_judge_setting(tmp_path, controls: str) -> None:  # type: ignore[no-untyped-def]
    from ratchet.config import load_config

    (tmp_path / "ratchet.toml").write_text(
        '[loop]\neditable = "train.py"\ncommand = "python train.py"\n\n'
        f'[metric]\nname = "score"\n\n[judge]\ncontrols = {controls}\n'
    )
    (tmp_path / "train.py").write_text("print('score: 1')\n")
    assert load_config(tmp_path).judge.controls is (controls == "true")


def _record(tmp_path: Path) -> tuple[History, Verdicts]:
    """A loop's record in memory: the baseline, the best, measured three times (noise 0.01),
    and a discarded experiment measured once after it."""
    from ratchet.config import load_config

    (tmp_path / "ratchet.toml").write_text(
        '[loop]\neditable = "train.py"\ncommand = "python train.py"\n\n[metric]\nname = "score"\n'
    )
    (tmp_path / "train.py").write_text("print('score: 1')\n")
    history = History(Ledger(tmp_path / ".ratchet"), "t")
    history.load()
    history.save(_experiment(0, Status.KEPT, "baseline"))
    for value in (1.0, 1.01, 0.99):
        history.add_run(0, value, 1.0, "measure")
    history.save(_experiment(1, Status.DISCARDED, "agent"))
    history.add_run(1, 1.0, 1.0, "measure")
    return history, Verdicts(load_config(tmp_path), JUDGE, history, None)  # type: ignore[arg-type]


def _experiment(n: int, status: Status, source: str) -> Experiment:
    return Experiment(
        id=n, tag="t", status=status, description=f"exp {n}", agent="test",
        base_commit="a" * 40, commit=("a" if n == 0 else str(n)) * 40, metric=1.0, source=source,
    )  # fmt: skip


def test_a_verdict_reads_the_track_though_a_control_beside_another_slot_moved_the_best(
    tmp_path: Path,
) -> None:
    # Two slots: one holds the best as it read it, while a control beside the other slot's
    # candidate rewrote the best's metric (a new object in the history, the same best). The
    # verdict is still judged against the best's track, which asks for a control: the best's
    # last run is older than CLOSE.
    history, verdicts = _record(tmp_path)
    candidate = _experiment(2, Status.RUNNING, "agent")
    history.save(candidate)
    history.add_run(2, 0.5, 1.0, "measure")
    held = history.best
    assert held is not None
    history.set_metric(0, 1.0)  # the other slot's control
    decision, _ = verdicts.decide(candidate, [0.5], held, history.baseline)
    assert decision.action == "control", decision.reason


def test_a_control_of_a_best_overtaken_while_it_ran_leaves_its_metric(tmp_path: Path) -> None:
    # The control started beside one slot's candidate; another slot kept a new best before it
    # ended. The old best's number stays its level as the best, not a plain mean with it.
    history, verdicts = _record(tmp_path)
    history.save(_experiment(2, Status.KEPT, "agent"))
    history.add_run(2, 0.5, 1.0, "measure")
    history.add_run(0, 2.0, 1.0, CONTROL, beside=1)
    verdicts.measured_again(0)
    assert history.by_id[0].metric == 1.0
    assert history.ledger.get("t", 0).metric == 1.0  # type: ignore[union-attr]


def test_each_control_brings_the_best_s_metric_to_the_mean_of_its_runs(tmp_path: Path) -> None:
    # Fed run by run, as the engine feeds it: the baseline (nothing chose its runs) records
    # the plain mean; a best kept on one run records it read back for its luck (lower is
    # better: up), then each control counts whole.
    history, verdicts = _record(tmp_path)
    for n, value in enumerate((1.2, 1.1)):
        history.add_run(0, value, 1.0, CONTROL, beside=1)
        verdicts.measured_again(0)
        runs = [1.0, 1.01, 0.99, 1.2, 1.1][: 4 + n]
        assert history.by_id[0].metric == pytest.approx(sum(runs) / len(runs))
    history.save(_experiment(2, Status.KEPT, "agent"))
    history.add_run(2, 0.5, 1.0, "measure")
    assert verdicts.track(0) is None  # a best overtaken is not read through the new one's track
    luck = LUCK * JUDGE.keep_bound(1) * (verdicts.noise() or 0.0)
    for value in (0.6, 0.7):
        history.add_run(2, value, 1.0, CONTROL, beside=3)
        verdicts.measured_again(2)
    assert history.by_id[2].metric == pytest.approx((0.5 + luck + 0.6 + 0.7) / 3)
    # A series whose judged runs are not on record: its first run stands for them, once.
    track = Track.of([Timed(v, t, again=True) for t, v in enumerate((3.0, 5.0, 7.0))], 1.0, 0.3)
    assert track.recorded == pytest.approx((3.3 + 5.0 + 7.0) / 3)


def test_two_slots_reading_the_track_at_once_feed_it_a_new_control_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A verdict and a control of two slots read the track in worker threads at the same time.
    history, verdicts = _record(tmp_path)
    assert verdicts.track() is not None
    history.add_run(0, 1.0, 1.0, CONTROL, beside=1)
    fed: list[float] = []
    add = Track.add

    def slow_add(self: Track, run: Timed, noise: float) -> None:
        fed.append(run.value)
        time.sleep(0.2)  # the other thread comes in meanwhile
        add(self, run, noise)

    monkeypatch.setattr(Track, "add", slow_add)
    readers = [threading.Thread(target=verdicts.track) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(5)
    assert fed == [1.0]
