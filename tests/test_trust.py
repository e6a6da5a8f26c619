"""Trust: keeps that beat the noise, early abort, a locked metric, nothing lost to a stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, NOISY, MakeProject
from loops import engine_for, run
from ratchet.events import ExperimentStarted
from ratchet.experiment import Status
from ratchet.judge import Judge
from ratchet.noise import estimate_noise
from ratchet.progress import AbortWatch, value_at

# --- the judge, alone -------------------------------------------------------------------------


def test_noise_is_pooled_over_repeated_runs() -> None:
    assert estimate_noise([[1.0], [2.0]]) is None
    assert estimate_noise([[1.0, 3.0], [10.0, 10.0, 10.0]]) == pytest.approx((2 / 3) ** 0.5)


def test_without_noise_one_run_decides() -> None:
    judge = Judge(lower_is_better=True, min_delta=0.01)
    assert judge.assess([0.98], [1.0], None).keep
    assert "within min_delta" in judge.assess([0.995], [1.0], None).reason
    assert judge.assess([1.2], [1.0], 0.0).action == "discard"


def test_with_noise_a_candidate_is_screened_rerun_then_judged_on_its_mean() -> None:
    judge = Judge(lower_is_better=True, z=1.645, max_runs=4, screen=0.25)
    best = [1.0, 1.02, 0.98]
    assert judge.assess([1.01], best, noise=0.02).action == "discard"  # no better: one run
    assert judge.assess([0.97], best, noise=0.02).action == "rerun"  # promising: again
    kept = judge.assess([0.95, 0.96, 0.94, 0.95], best, noise=0.02)
    assert kept.keep and "after 4 runs, gain 2.5σ" in kept.reason and "resolve" in kept.reason
    within = judge.assess([0.99, 0.985, 0.995, 0.99], best, noise=0.02)
    assert within.action == "discard" and "could not tell a gain smaller than" in within.reason


def test_a_surprising_gain_can_be_held_for_review() -> None:
    judge = Judge(lower_is_better=True, review_above=20)
    assert judge.needs_review(0.7, 1.0) is not None
    assert judge.needs_review(0.9, 1.0) is None


# --- the judge in a real loop -----------------------------------------------------------------

JUDGED = CONFIG.replace(
    "[agent]",
    '[judge]\nbaseline_runs = 3\nmax_runs = 3\nz = 3\nrule = "fixed"\ncontrols = false\n\n[agent]',
)


async def test_the_baseline_is_measured_repeatedly_and_keeps_must_beat_the_noise(
    make_project: MakeProject,
) -> None:
    root = make_project(train=NOISY, config=JUDGED)
    agent = ScriptedAgent(
        [
            (replace("WIDTH = 8", "WIDTH = 12"), "a real gain of 16 noise units"),
            (replace("LR = 0.5", "LR = 0.5000001"), "a change that does nothing"),
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 3)
    baseline, real, noop = engine.ledger.experiments("t")
    assert len(engine.ledger.runs("t", 0)) == 3 and "noise" in baseline.reason
    assert real.status is Status.KEPT and len(engine.ledger.runs("t", 1)) == 3
    assert "after 3 runs, gain " in real.reason and "σ over the best" in real.reason
    assert noop.status is Status.DISCARDED
    noise = engine.noise()
    assert noise is not None and 0.001 < noise < 0.05


# --- early abort -------------------------------------------------------------------------------

CURVE = """\
import time
LR = 0.5
for step in range(20):
    time.sleep(0.1)
    print(f"step {{step}} loss: {{(2.0 + LR * 4) * (1 - step / 40):.4f}}", flush=True)
print("score:", LR)
"""

ABORTING = CONFIG.replace('budget = "10s"', 'budget = "2s"\ntimeout = "10s"').replace(
    'goal = "minimize"',
    'goal = "minimize"\nprogress = "loss"\nabort_after = 0.3\nabort_margin = 0.2',
)


async def test_a_run_clearly_worse_than_the_best_curve_is_aborted_early(
    make_project: MakeProject,
) -> None:
    root = make_project(train=CURVE.format(), config=ABORTING)
    engine = engine_for(root, ScriptedAgent([(replace("LR = 0.5", "LR = 1.5"), "worse")]))
    await run(engine, 2)
    _, worse = engine.ledger.experiments("t")
    assert worse.status is Status.ABORTED and "aborted at" in worse.reason
    assert worse.run_s < 1.9  # stopped well before its 2 s of training
    assert (root / ".ratchet" / "loops" / "t" / "curves" / "0.json").exists()


def test_abort_watch_compares_at_the_same_fraction() -> None:
    best = [(0.1, 3.0), (0.5, 2.0), (0.9, 1.0)]
    assert value_at(best, 0.3) == pytest.approx(2.5)
    from ratchet.config import MetricConfig

    config = MetricConfig(
        "score",
        "minimize",
        None,
        None,
        0.0,
        None,
        progress="loss",
        abort_after=0.2,
        abort_margin=0.1,
    )
    watch = AbortWatch(config, best)
    assert watch.feed("loss: 9.0", 0.15) is None  # still warming up
    assert watch.feed("loss: 2.6", 0.3) is None  # 4% worse: within the margin
    assert watch.feed("loss: 2.9", 0.3) is not None


# --- a metric the edited code cannot touch ---------------------------------------------------

EVALUATED = CONFIG.replace('name = "score"', 'name = "score"\neval = "{python} evaluate.py"')
EVALUATOR = """\
import re
source = open("train.py").read()
lr = float(re.search(r"LR = ([0-9.]+)", source).group(1))
print("score:", abs(lr - 0.3))
"""
CHEATER = """\
LR = 0.9
print("score: -1000")  # its own claim is never read: the evaluator's output is
open("evaluate.py", "w").write("print('score: -1000')\\n")
"""


async def test_the_metric_comes_from_the_locked_evaluator_of_the_base_commit(
    make_project: MakeProject,
) -> None:
    root = make_project(
        config=EVALUATED, extra={"evaluate.py": EVALUATOR}, train="LR = 0.5\nprint('training')\n"
    )
    config = (
        (root / "ratchet.toml")
        .read_text()
        .replace('["prepare.py"]', '["prepare.py", "evaluate.py"]')
    )
    (root / "ratchet.toml").write_text(config)
    from conftest import commit_all

    commit_all(root, "lock the evaluator")
    engine = engine_for(
        root,
        ScriptedAgent(
            [
                (
                    lambda _: CHEATER.replace('print("score: -1000")', "pass"),
                    "rewrites the evaluator",
                ),
                (lambda _: "LR = 0.9\nprint('score: -1000')\n", "prints its own score"),
                (lambda t: t.replace("LR = 0.5", "LR = 0.35"), "honest"),
            ]
        ),
    )
    await run(engine, 4)
    baseline, tamper, claim, honest = engine.ledger.experiments("t")
    assert baseline.metric == pytest.approx(0.2)
    assert tamper.status is Status.VOIDED and "evaluate.py" in tamper.reason
    assert claim.metric == pytest.approx(0.6) and claim.status is Status.DISCARDED
    assert honest.status is Status.KEPT and honest.metric == pytest.approx(0.05)


# --- nothing lost to a stop ------------------------------------------------------------------


async def test_an_interrupted_experiment_is_measured_again_on_the_next_start(
    make_project: MakeProject,
) -> None:
    slow = "import time\nLR = 0.5\ntime.sleep(0.2 if LR == 0.5 else 30)\nprint('score:', LR)\n"
    root = make_project(
        train=slow, config=CONFIG.replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]")
    )
    engine = engine_for(root, ScriptedAgent([(replace("LR = 0.5", "LR = 0.4"), "lr .4")]))
    started = asyncio.Event()
    engine.bus.subscribe(
        lambda e: started.set() if isinstance(e, ExperimentStarted) and e.id == 1 else None
    )
    task = asyncio.create_task(run(engine, 5))
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.sleep(0.5)
    engine.stop()
    await task
    assert engine.ledger.experiments("t")[1].status is Status.INTERRUPTED
    # The next start measures it again (no agent call needed for it); then the loop goes on.
    fast = (root / "train.py").read_text()
    assert "LR = 0.5" in fast
    again = engine_for(root, ScriptedAgent([]))
    again.stop_experiment(1)  # nothing runs yet: a no-op that must not fail
    rerunning = asyncio.Event()
    again.bus.subscribe(
        lambda e: rerunning.set() if isinstance(e, ExperimentStarted) and e.id == 2 else None
    )
    task = asyncio.create_task(run(again, 1))  # the quota is used: only the re-run runs
    await asyncio.wait_for(rerunning.wait(), 60)
    again.stop()
    await task
    experiments = again.ledger.experiments("t")
    assert experiments[2].rerun_of == 1 and experiments[2].description == "lr .4"
    assert experiments[2].base_commit == experiments[1].base_commit


def test_reasons_are_in_words(tmp_path: Path) -> None:
    judge = Judge(lower_is_better=False)
    assert judge.assess([0.9], [0.8], None).reason.startswith("kept: +0.1")


async def test_the_best_is_measured_again_every_n_keeps(make_project: MakeProject) -> None:
    config = CONFIG.replace("[agent]", "[judge]\nbaseline_runs = 1\nremeasure_every = 1\n\n[agent]")
    root = make_project(config=config)
    agent = ScriptedAgent(
        [(replace("WIDTH = 8", "WIDTH = 12"), "w12"), (replace("LR = 0.5", "LR = 0.9"), "worse")]
    )
    engine = engine_for(root, agent)
    await run(engine, 3)
    runs = engine.ledger.runs("t", 1)
    assert engine.ledger.experiments("t")[1].status is Status.KEPT
    assert [r["purpose"] for r in runs] == ["measure", "remeasure"]  # one more after its keep
    assert runs[0]["metric"] == runs[1]["metric"]


def test_a_refused_huge_proposal_keeps_a_bounded_diff() -> None:
    from ratchet.trial import REFUSED_DIFF_BYTES, refused_diff

    base = "LR = 0.5\n"
    huge = base + "X = 1\n" * 8_000_000  # a 48 MB proposal
    diff = refused_diff("train.py", base, huge)
    assert len(diff) <= REFUSED_DIFF_BYTES + 200 and diff.endswith("chars)\n")
    assert "+X = 1" in diff and "the diff is cut here" in diff
    assert refused_diff("train.py", base, base + "\0junk") == ""
    small = refused_diff("train.py", base, "LR = 0.4\n")
    assert "-LR = 0.5" in small and "+LR = 0.4" in small and "cut" not in small


SEEDED = """\
import os
LR = 0.5


WIDTH = 8
seed = int(os.environ["RATCHET_SEED"])
print(f"score: {(LR - 0.3) ** 2 + seed / 1000:.6f}")
"""


async def test_run_k_of_every_experiment_gets_seed_k(make_project: MakeProject) -> None:
    root = make_project(train=SEEDED)  # the baseline: three runs, seeds 0, 1 and 2
    engine = engine_for(root, ScriptedAgent([(replace("LR = 0.5", "LR = 0.4"), "LR 0.4")]))
    await run(engine, 2)
    runs = [r["metric"] for r in engine.ledger.runs("t", 0)]
    assert [round(r - 0.04, 6) for r in runs] == [0.0, 0.001, 0.002]
    candidate = [r["metric"] for r in engine.ledger.runs("t", 1)]
    assert round(candidate[0] - 0.01, 6) == 0.0  # its first run: seed 0, as the baseline's


GUARDED = """\
LR = 0.5


WIDTH = 8
MEMORY = 30
print(f"score: {(LR - 0.3) ** 2:.6f}")
print(f"memory_gb: {MEMORY}")
"""


async def test_a_guard_discards_a_better_metric_that_breaks_it_by_name(
    make_project: MakeProject,
) -> None:
    config = CONFIG.replace(
        'goal = "minimize"', 'goal = "minimize"\nguards = {{ memory_gb = "<= 40" }}'
    )
    root = make_project(train=GUARDED, config=config)
    agent = ScriptedAgent(
        [
            (
                lambda t: t.replace("LR = 0.5", "LR = 0.4").replace("MEMORY = 30", "MEMORY = 50"),
                "LR 0.4, memory 50",
            ),
            (replace("LR = 0.5", "LR = 0.4"), "LR 0.4"),
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 3)
    _, greedy, fair = engine.ledger.experiments("t")
    assert greedy.status is Status.DISCARDED and greedy.metric == pytest.approx(0.01)
    assert "guard `memory_gb <= 40` broken (memory_gb 50)" in greedy.reason
    assert fair.status is Status.KEPT, fair.reason


def test_a_guard_must_read_as_a_comparison(tmp_path: Path) -> None:
    from ratchet.config import ConfigError, parse_config

    (tmp_path / "train.py").write_text("LR = 1\n")
    head = '[loop]\neditable = "train.py"\ncommand = "python train.py"\n[metric]\nname = "s"\n'
    with pytest.raises(ConfigError, match="must read like"):
        parse_config(head + 'guards = { memory_gb = "below 40" }\n', tmp_path)
    config = parse_config(head + 'guards = { memory_gb = "<= 40", steps = ">100" }\n', tmp_path)
    assert [str(g) for g in config.metric.guards] == ["memory_gb <= 40", "steps > 100"]
