"""The portfolio agent: budget to the arm that pays, constants without effect and values that
crash left alone, no pretend repairs, and valid proposals in a real loop."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import optuna
import pytest
from conftest import MakeProject
from loops import engine_for, run, statuses
from ratchet.agents.optuna import distribution
from ratchet.agents.pattern import crashed_moves
from ratchet.agents.portfolio import FEW, PortfolioAgent, choose_arm, local_move, without_effect
from ratchet.agents.space import (
    build_space,
    edge_warnings,
    find_literals,
    parse_changes,
    print_only,
)
from ratchet.cli import main
from ratchet.events import LoopStateChanged
from ratchet.experiment import HistoryEntry, RepairRequest
from ratchet.novelty import digest
from test_agent_optuna import EXAMPLES, context

SOURCE = """\
import math
LR = 0.04
BATCH = 64
PEAK_FLOPS = 989.5e12
LABEL_FLOPS = 1.0
assert BATCH <= 160, "out of memory"
score = (math.log10(LR) + 2) ** 2 + (math.log2(BATCH) - 7.3) ** 2
mfu = 1e14 / PEAK_FLOPS
print(f"score: {score}", LABEL_FLOPS)
"""


def entry(n: int, status: str, description: str, metric: float | None = 1.0) -> HistoryEntry:
    return HistoryEntry(n, status, metric, None, description)


def test_budget_goes_to_the_arm_that_pays() -> None:
    history = [entry(i, "kept", "LR 1 → 2 (local)") for i in range(10)]
    history += [entry(10 + i, "discarded", "LR 1 → 3 (tpe)") for i in range(10)]
    history += [
        entry(20 + i, "discarded", "LR 1 → 4 (model) (discarded: worse)") for i in range(10)
    ]
    rng = random.Random(0)
    picks = [choose_arm(history, rng) for _ in range(600)]
    assert picks.count("local") > 0.7 * len(picks)
    for arm in ("tpe", "model"):  # the floor: the other arms are not starved
        assert picks.count(arm) > 0.03 * len(picks)


def test_a_constant_only_printed_is_not_tuned() -> None:
    assert print_only(SOURCE) == {"LABEL_FLOPS"}


def test_a_constant_without_effect_is_learnt(tmp_path: Path) -> None:
    study = optuna.create_study()
    space = build_space(SOURCE, {})
    dims = {d.name: distribution(d) for d in space.dimensions}
    values = space.values()
    for peak in (5e14, 2e15, 7e14):
        study.add_trial(
            optuna.trial.create_trial(
                params={**values, "PEAK_FLOPS": peak},
                distributions=dims,
                value=0.5,
                user_attrs={"changed": ["PEAK_FLOPS"], "base_metric": 0.5},
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={**values, "LR": 0.02},
            distributions=dims,
            value=0.4,
            user_attrs={"changed": ["LR"], "base_metric": 0.5},
        )
    )
    assert without_effect(study) == {"PEAK_FLOPS"}


def test_values_that_crashed_and_beyond_are_not_tried_again() -> None:
    space = build_space(SOURCE, {})
    crashes = crashed_moves([entry(3, "crashed", "BATCH 64 → 192 (local)", None)])
    assert crashes == {"BATCH": [(64, 192)]}
    history = (entry(3, "crashed", "BATCH 64 → 192 (local)", None),)
    seen = set()
    for seed in range(300):
        values, _ = local_move(space, history, random.Random(seed))
        assert values is not None
        batch = values["BATCH"]
        assert isinstance(batch, int) and batch < 192
        seen.add(batch)
    assert len(seen) > 1  # BATCH itself is still tuned, below the crash


def test_an_offline_repair_is_declined_in_words(tmp_path: Path) -> None:
    agent = PortfolioAgent(tmp_path / ".ratchet")
    repair = RepairRequest(SOURCE, "BATCH 64 → 192", "AssertionError: out of memory", 1)
    proposal = asyncio.run(agent.propose(context(SOURCE, 2, repair_of=repair)))
    assert proposal.edits == {} and proposal.failure is not None
    assert proposal.failure.startswith("cannot repair offline")
    assert "repaired" not in proposal.description


def test_in_a_real_loop_the_arms_propose_valid_edits(make_project: MakeProject) -> None:
    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\nbudget = "10s"\n'
    config += '[metric]\nname = "score"\n[judge]\nbaseline_runs = 1\n[agent]\nkind = "portfolio"\n'
    root = make_project(config=config)
    engine = engine_for(root, agent=None, tag="pf")  # type: ignore[arg-type]
    asyncio.run(run(engine, 16))
    rows = engine.ledger.experiments("pf")[1:]
    arms = {r.description.rsplit(" (", 1)[-1].rstrip(")").split(" ")[0] for r in rows}
    assert arms <= {"local", "model", "tpe"} and len(arms) >= 2
    assert all(str(r.status) in ("kept", "discarded") for r in rows), [
        (r.status, r.description, r.reason) for r in rows
    ]
    best = {lit.name: lit.value for lit in find_literals(engine.text_of("best"))}
    first = engine.ledger.experiments("pf")[0].metric
    assert engine.best() is not None and (engine.best().metric or 0) < (first or 0)
    assert set(best) == {"LR", "WIDTH"}


def test_a_crash_teaches_tpe_the_worst_value_seen(tmp_path: Path) -> None:
    from ratchet.agents.optuna import study_storage
    from ratchet.novelty import digest

    agent = PortfolioAgent(tmp_path / ".ratchet", seed=2)
    first = asyncio.run(agent.propose(context(SOURCE, 1)))
    second = asyncio.run(agent.propose(context(SOURCE, 2)))
    history = (
        HistoryEntry(1, "discarded", 3.0, None, first.description,
                     digest=digest(first.edits["train.py"])),
        HistoryEntry(2, "crashed", None, None, second.description,
                     digest=digest(second.edits["train.py"])),
    )  # fmt: skip
    asyncio.run(agent.propose(context(SOURCE, 3, history)))
    study = optuna.load_study(study_name="ratchet-t", storage=study_storage(tmp_path / ".ratchet"))
    by_experiment = {t.user_attrs.get("experiment"): t for t in study.trials}
    assert by_experiment[2].state is optuna.trial.TrialState.COMPLETE
    assert by_experiment[2].value == 3.0  # the worst of the incumbent (1.0) and exp 1 (3.0)


def test_the_portfolio_can_be_the_tuner_between_an_llms_edits(make_project: MakeProject) -> None:
    from ratchet.agents import make_agent
    from ratchet.agents.hybrid import HybridAgent
    from ratchet.config import load_config

    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\n'
    config += '[metric]\nname = "score"\n[agent]\nkind = "command"\nrun = "true"\n'
    config += 'tune = "portfolio"\ntune_ratio = 2\n'
    agent = make_agent(load_config(make_project(config=config)))
    assert isinstance(agent, HybridAgent) and isinstance(agent.tuner, PortfolioAgent)
    assert agent.ratio == 2


def test_without_a_kind_or_a_key_the_portfolio_is_the_offline_agent(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ratchet.agents import make_agent
    from ratchet.config import load_config

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\n'
    config += '[metric]\nname = "score"\n'
    assert isinstance(make_agent(load_config(make_project(config=config))), PortfolioAgent)


# An autoresearch-shaped training script: a peak FLOPS that only feeds a printed MFU.
AUTORESEARCH = """\
import time
H100_BF16_PEAK_FLOPS = 989.5e12
TOTAL_BATCH_SIZE = 2**19
DEVICE_BATCH_SIZE = 128
MATRIX_LR = 0.04
num_flops_per_token = 6 * 124e6
step, total_training_time, val_bpb = 0, 0.0, 1.0
while step < 3:
    t0 = time.time()
    dt = max(time.time() - t0, 1e-6)
    total_training_time += dt
    mfu = 100 * num_flops_per_token * TOTAL_BATCH_SIZE / dt / H100_BF16_PEAK_FLOPS
    val_bpb = val_bpb - MATRIX_LR * DEVICE_BATCH_SIZE / 1e4
    print(f"\\rstep {step:05d} | mfu: {mfu:.1f}%", end="", flush=True)
    step += 1
steady_state_mfu = 100 * num_flops_per_token * TOTAL_BATCH_SIZE * (step - 10) / total_training_time / H100_BF16_PEAK_FLOPS if total_training_time > 0 else 0
print(f"mfu_percent: {steady_state_mfu:.2f}")
print(f"val_bpb: {val_bpb:.6f}")
"""  # noqa: E501


def test_a_constant_that_only_feeds_a_printed_figure_is_not_tuned(tmp_path: Path) -> None:
    # Through `mfu` and `steady_state_mfu`, printed and read by nothing else; the metric's
    # own line is a real use (MATRIX_LR reaches val_bpb only through a print).
    assert print_only(AUTORESEARCH, "val_bpb") == {"H100_BF16_PEAK_FLOPS"}
    assert print_only(conftest_train(), "score") == set()  # the metric is printed too
    agent = PortfolioAgent(tmp_path / ".ratchet", seed=3)
    history: list[HistoryEntry] = [HistoryEntry(0, "kept", 1.0, None, "baseline")]
    for n in range(1, 16):
        proposal = asyncio.run(
            agent.propose(context(AUTORESEARCH, n, tuple(history), metric_name="val_bpb"))
        )
        assert proposal.failure is None and "H100_BF16_PEAK_FLOPS" not in proposal.description
        history.append(HistoryEntry(n, "discarded", 1.0 + n / 10, None, proposal.description,
                                    digest=digest(proposal.edits["train.py"])))  # fmt: skip


def conftest_train() -> str:
    from conftest import TRAIN

    return TRAIN


@pytest.mark.parametrize("seed", range(4))
def test_the_first_proposals_move_one_or_two_knobs(seed: int, tmp_path: Path) -> None:
    # The main job's six knobs: no arm jumps all of them at once (TPE used to, from its first
    # random trials: `LEARNING_RATE 0.001 → 4.171e-05` with five other changes).
    text = (EXAMPLES / "tinygpt" / "train.py").read_text()
    agent = PortfolioAgent(tmp_path / ".ratchet", seed=seed)
    history: list[HistoryEntry] = [HistoryEntry(0, "kept", 1.0, None, "baseline")]
    arms = set()
    for n in range(1, 13):
        proposal = asyncio.run(agent.propose(context(text, n, tuple(history))))
        assert proposal.failure is None, proposal.failure
        assert 1 <= len(parse_changes(proposal.description)) <= FEW, proposal.description
        arms.add(proposal.description.rsplit("(", 1)[-1])
        metric = 1.0 + n / 10 if n % 4 else 0.9 - n / 100  # some keeps: models and patterns
        status = "discarded" if n % 4 else "kept"
        history.append(HistoryEntry(n, status, metric, None, proposal.description,
                                    digest=digest(proposal.edits["train.py"])))  # fmt: skip
    assert "tpe)" in arms or seed  # the global arm took part, within the same limit


def test_a_file_with_nothing_to_tune_stops_the_loop_saying_so_once(
    make_project: MakeProject, capsys: pytest.CaptureFixture[str]
) -> None:
    train = 'def f(x):\n    return (x - 0.3) ** 2\n\nprint(f"score: {f(0.5):.6f}")\n'
    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\nbudget = "10s"\n'
    config += '[metric]\nname = "score"\n[judge]\nbaseline_runs = 1\n[agent]\nkind = "portfolio"\n'
    root = make_project(train=train, config=config)
    engine = engine_for(root, agent=None, tag="none")  # type: ignore[arg-type]
    events = asyncio.run(run(engine, 12))
    assert statuses(engine) == ["kept"]  # the baseline; no invalid recorded, none spun
    said = [e.message for e in events if isinstance(e, LoopStateChanged) and e.message]
    told = [m for m in said if "nothing to tune" in m]
    assert len(told) == 1, said
    assert "the portfolio agent has nothing to tune in train.py" in told[0]
    assert "optuna" not in told[0] and "no more proposals" in told[0]
    # `ratchet doctor` says it before any loop (it used to say all was well).
    assert main(["-C", str(root), "doctor"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "error the portfolio agent has nothing to tune in train.py" in out


def test_a_range_that_holds_the_best_at_its_edge_is_said_once(make_project: MakeProject) -> None:
    train = "SHIFT = 0.0\nLR = 0.5\nscore = (LR - 0.3) ** 2 + (SHIFT + 0.4) ** 2\n"
    train += 'print(f"score: {score:.6f}")\n'
    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\nbudget = "10s"\n'
    config += '[metric]\nname = "score"\n[judge]\nbaseline_runs = 1\n[agent]\nkind = "portfolio"\n'
    root = make_project(train=train, config=config)
    space = build_space(train, {})
    [warning] = edge_warnings(space, (), "portfolio")
    assert warning.startswith("SHIFT = 0.0 is at the low edge of the range the portfolio agent")
    assert "[0, 1]" in warning and "[agent.space.SHIFT]" in warning
    assert edge_warnings(space, ("SHIFT",), "portfolio") == []  # a declared range is meant
    engine = engine_for(root, agent=None, tag="edge")  # type: ignore[arg-type]
    events = asyncio.run(run(engine, 4))
    said = [e.message for e in events if isinstance(e, LoopStateChanged) and e.message]
    assert [m for m in said if "SHIFT = 0.0 is at the low edge" in m] == [warning]
