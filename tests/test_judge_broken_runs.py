"""A broken run is not evidence: when the locked evaluator fails on a candidate and on the best
run beside it, the harness is at fault, not the edit; when only the candidate fails it, the edit
is (its own crash, handed to the repair agent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject
from loops import engine_for, run
from ratchet.events import Event, ExperimentFinished
from ratchet.experiment import Status

EVALUATOR = """\
import pathlib, re, sys
source = open("train.py").read()
if pathlib.Path({down!r}).exists():
    sys.exit("evaluator: its data store does not answer")
if "BROKEN" in source:
    sys.exit("evaluator: cannot read this program's answer")
lr = float(re.search(r"LR = ([0-9.]+)", source).group(1))
print("score:", abs(lr - 0.3))
"""


def evaluated_project(make_project: MakeProject, store: Path) -> Path:
    store.mkdir()
    config = CONFIG.replace('name = "score"', 'name = "score"\neval = "{python} evaluate.py"')
    config = config.replace('["prepare.py"]', '["prepare.py", "evaluate.py"]')
    config = config.replace("[agent]", f'[sandbox]\nread = ["{store}"]\n\n[agent]')
    return make_project(
        config=config,
        extra={"evaluate.py": EVALUATOR.format(down=str(store / "down"))},
        train="LR = 0.5\nprint('training')\n",
    )


async def test_an_evaluator_that_fails_on_the_best_too_charges_nothing_to_the_edit(
    make_project: MakeProject, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    root = evaluated_project(make_project, store)
    agent = ScriptedAgent([(replace("LR = 0.5", "LR = 0.35"), "a real gain")])
    engine = engine_for(root, agent)

    def outage_after_the_baseline(event: Event) -> None:
        if isinstance(event, ExperimentFinished) and event.experiment.id == 0:
            (store / "down").touch()

    engine.bus.subscribe(outage_after_the_baseline)
    await run(engine, 3)
    experiments = engine.ledger.experiments("t")
    gain = [e for e in experiments if e.description == "a real gain"]
    assert gain and all(e.status is Status.LOST for e in gain), [(e.status, e.reason) for e in gain]
    assert "the evaluator failed on the best (exp 0) too" in gain[0].reason
    assert len(gain) == 2 and gain[1].rerun_of == gain[0].id  # measured again, once
    assert not [e for e in experiments if e.status in (Status.CRASHED, Status.TIMEOUT)]
    assert not [c for c in agent.contexts if c.repair_of is not None]  # nothing to repair
    # The best's runs beside it are recorded as failed control runs, not as its measurements.
    controls = engine.ledger.runs("t", 0, controls=True)
    assert [r["metric"] for r in controls if r["beside"] == gain[0].id] == [None]


async def test_an_evaluator_that_fails_only_on_the_edit_is_the_edit_s_crash(
    make_project: MakeProject, tmp_path: Path
) -> None:
    root = evaluated_project(make_project, tmp_path / "store")
    agent = ScriptedAgent([(replace("LR = 0.5", "LR = 0.35  # BROKEN"), "breaks its answer")])
    engine = engine_for(root, agent)
    await run(engine, 2)
    baseline, broken = engine.ledger.experiments("t")[:2]
    assert broken.status is Status.CRASHED and "cannot read this program" in broken.log_tail
    assert [c.repair_of.broken_text for c in agent.contexts if c.repair_of] == [
        "LR = 0.35  # BROKEN\nprint('training')\n"
    ]
    # The best, run beside it, evaluated: recorded as a control with its number.
    beside = [r["metric"] for r in engine.ledger.runs("t", 0, controls=True) if r["beside"]]
    assert beside and beside == pytest.approx([baseline.metric] * len(beside))
