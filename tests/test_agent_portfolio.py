"""The portfolio agent: budget to the arm that pays, constants without effect and values that
crash left alone, no pretend repairs, and valid proposals in a real loop."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import optuna
import pytest
from conftest import MakeProject
from loops import engine_for, run
from ratchet.agents.optuna import distribution
from ratchet.agents.pattern import crashed_moves
from ratchet.agents.portfolio import PortfolioAgent, choose_arm, local_move, without_effect
from ratchet.agents.space import build_space, find_literals, print_only
from ratchet.experiment import HistoryEntry, RepairRequest
from test_agent_optuna import context

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
