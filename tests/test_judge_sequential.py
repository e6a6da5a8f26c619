"""The sequential judge: early keeps and early discards stated in words, a noise estimate one
split candidate cannot swamp, and the best confirmed when it was kept on few runs."""

from __future__ import annotations

import random

import pytest
from agents import ScriptedAgent
from conftest import CONFIG, NOISY, MakeProject
from loops import engine_for, run
from ratchet.experiment import Status
from ratchet.judge import HORIZON, KEEP_FIRST, REF_SHIFT, Judge
from ratchet.noise import estimate_noise

SEQ = Judge(lower_is_better=True, rule="sequential")


def test_overwhelming_evidence_keeps_after_one_run_and_says_so() -> None:
    best = [1.0, 1.01, 0.99]
    decision = SEQ.assess([0.5], best, noise=0.01)
    assert decision.keep
    assert decision.reason.startswith("kept: -0.5 after 1 run, gain 50.5σ over the best 1 ")
    assert "(3 runs, read as 1.00462 for its luck; noise 0.01); these runs resolve " in (
        decision.reason
    )
    # One currency: the gain and the smallest gain these runs resolve, in σ (the noise).
    assert decision.effect == pytest.approx((1.00462 - 0.5) / 0.01, abs=0.01)
    assert decision.resolvable == pytest.approx(KEEP_FIRST * (0.01**2 * (1 + 1 / 3)) ** 0.5 / 0.01)
    assert f"resolve {decision.resolvable:.1f}σ" in decision.reason


def test_the_best_is_read_back_by_its_luck() -> None:
    # The best's mean is moved back by REF_SHIFT of its standard error (the winner's curse):
    # the same candidate scores higher against a best of few runs than the raw means say.
    best = [1.0, 1.0, 1.0]
    assert SEQ.luck(best, 0.01) == pytest.approx(REF_SHIFT * 0.01 / 3**0.5)
    assert SEQ.luck([1.0] * 12, 0.01) == pytest.approx(SEQ.luck(best, 0.01) / 2)
    raw = (1.0 - 0.985) / 0.01
    decision = SEQ.assess([0.985], best, noise=0.01)
    assert decision.effect is not None and decision.effect > raw + 0.3
    assert f"gain {decision.effect:.1f}σ" in decision.reason
    higher = Judge(lower_is_better=False, rule="sequential")
    assert "read as 0.995381 for its luck" in higher.assess([1.015], best, noise=0.01).reason


def test_hopeless_candidates_are_discarded_after_one_run() -> None:
    best = [1.0, 1.01, 0.99]
    worse = SEQ.assess([1.02], best, noise=0.01)
    assert worse.action == "discard" and "not better than the best" in worse.reason
    slight = SEQ.assess([0.998], best, noise=0.01)
    assert slight.action == "discard" and "could not tell a gain smaller than" in slight.reason
    assert "σ) from noise with 1 run" in slight.reason
    promising = SEQ.assess([0.985], best, noise=0.01)
    assert promising.action == "rerun" and promising.reason.startswith("promising:")


def test_the_last_run_decides_and_min_delta_still_holds() -> None:
    best = [1.0, 1.01, 0.99, 1.0, 1.0]
    marginal = SEQ.assess([0.995] * 5, best, noise=0.01)
    assert marginal.action == "discard" and "from noise with 5 runs" in marginal.reason
    assert marginal.resolvable is not None and marginal.effect is not None
    assert 0 < marginal.effect < marginal.resolvable
    strict = Judge(lower_is_better=True, rule="sequential", min_delta=0.6)
    assert strict.assess([0.5], best, noise=0.01).action != "keep"


def test_bounds_meet_at_the_last_run() -> None:
    assert SEQ.horizon == HORIZON == 4  # max_runs 5 is capped at the rule's horizon
    assert Judge(lower_is_better=True, rule="sequential", max_runs=2).horizon == 2
    assert SEQ.keep_bound(1) == KEEP_FIRST > SEQ.keep_bound(2) > SEQ.keep_bound(3)
    assert SEQ.keep_bound(3) > SEQ.keep_bound(4)
    assert SEQ.drop_bound(1) < SEQ.drop_bound(3) <= SEQ.keep_bound(3)
    assert SEQ.drop_bound(SEQ.horizon) == SEQ.keep_bound(SEQ.horizon)


def test_one_run_keeps_only_a_gain_far_beyond_the_noise() -> None:
    # 4 standard errors on one run is kept by a plain z-test, not here: one-run keeps carry
    # the most luck and cost the most confirmation runs.
    best = [1.0] * 5
    four = SEQ.assess([1.0 - 4 * 0.01 * 1.2**0.5], best, noise=0.01)
    assert four.action == "rerun"
    assert SEQ.assess([0.9], best, noise=0.01).keep


def test_the_horizon_run_decides() -> None:
    best = [1.0] * 5
    xs = [0.99, 0.985, 0.99]
    assert SEQ.assess(xs, best, noise=0.01).action == "rerun"
    decided = SEQ.assess([*xs, 0.99], best, noise=0.01)
    assert decided.action in ("keep", "discard") and "after 4 runs" in decided.reason


def test_operating_characteristics_against_a_fixed_best() -> None:
    # The claim of judge.py's constants, checked by simulation: a no-effect candidate is
    # kept at most ~5% of the time, a 2-sigma gain most of the time, in few runs.
    rng = random.Random(4)
    kept = {0.0: 0, 2.0: 0}
    runs = {0.0: 0, 2.0: 0}
    trials = 3000
    for gain in kept:
        for _ in range(trials):
            best = [rng.gauss(0, 1) for _ in range(5)]
            xs: list[float] = []
            while True:
                xs.append(-gain + rng.gauss(0, 1))
                decision = SEQ.assess(xs, best, 1.0)
                if decision.action != "rerun":
                    break
            kept[gain] += decision.keep
            runs[gain] += len(xs)
    assert kept[0.0] / trials <= 0.06
    assert kept[2.0] / trials >= 0.75
    assert runs[0.0] / trials <= 1.5  # no-effect candidates are let go quickly


def test_one_split_candidate_does_not_swamp_the_noise() -> None:
    rng = random.Random(2)
    groups = [[rng.gauss(0, 0.001) for _ in range(3)] for _ in range(4)]
    before = estimate_noise(groups)
    split = [rng.gauss(0, 0.001) for _ in range(3)] + [0.04 + rng.gauss(0, 0.001)] * 2
    after = estimate_noise([*groups, split])
    assert before is not None and after is not None
    assert after < 1.6 * before  # the plain pooled estimate is ~20x
    # Ordinary groups are pooled as before: the cap does not bite on honest noise.
    honest = [[rng.gauss(0, 1) for _ in range(4)] for _ in range(200)]
    pooled = estimate_noise(honest)
    assert pooled is not None and 0.9 < pooled < 1.1


SEQUENTIAL = CONFIG.replace(
    "[agent]",
    '[judge]\nbaseline_runs = 3\nrule = "sequential"\nconfirm_runs = 4\ncontrols = false\n\n'
    "[agent]",
)


async def test_in_a_real_loop_a_clear_gain_is_kept_early_then_confirmed(
    make_project: MakeProject,
) -> None:
    root = make_project(train=NOISY, config=SEQUENTIAL)
    agent = ScriptedAgent(
        [
            (lambda t: t.replace("WIDTH = 8", "WIDTH = 12"), "a gain of 16 noise units"),
            (lambda t: t.replace("LR = 0.5", "LR = 0.9"), "clearly worse"),
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 3)
    _, real, worse = engine.ledger.experiments("t")
    assert (
        real.status is Status.KEPT
        and real.reason.startswith("kept: ")
        and " after 1 run, gain " in real.reason
    )
    assert (
        worse.status is Status.DISCARDED
        and worse.reason.startswith("discarded: ")
        and " after 1 run" in worse.reason
    )
    assert len(engine.ledger.runs("t", 2)) == 1  # no wasted runs on a hopeless one
    # The best, kept on 1 run, was measured again up to confirm_runs before exp 2 was judged,
    # and the baseline (3 runs) before exp 1.
    assert len(engine.ledger.runs("t", 1)) == 4
    assert len(engine.ledger.runs("t", 0)) == 4
