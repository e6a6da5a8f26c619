"""Per-case evidence through the real loop: an evaluator reports each case, Ratchet records the
scores of every run compactly, judges a candidate case by case against the best, discards one
that breaks a protected case, and `show` lists what it fixed and broke."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from agents import ScriptedAgent
from conftest import MakeProject
from loops import engine_for, run
from ratchet.agents.prompt import command_prompt
from ratchet.case_packing import pack, unpack
from ratchet.cases import (
    NAMED,
    CaseChanges,
    CaseReader,
    CaseRun,
    paired,
    sign_test,
)
from ratchet.engine import Engine
from ratchet.experiment import Experiment, Status
from ratchet.report import summarise
from ratchet.report_md import render_md

# 40 cases: 10 solved, 18 unsolved, 12 flaky (pass or fail by the run's seed: the noise on the
# mean). `FIX cNN` in the editable file solves a case, `BREAK cNN` fails one.
EVALUATOR = """\
import json, os, random, re
source = open("train.py").read()
fixed, broken = set(re.findall(r"FIX (c\\d+)", source)), set(re.findall(r"BREAK (c\\d+)", source))
rng = random.Random(int(os.environ.get("RATCHET_SEED", "0")))
scores = []
for i in range(40):
    case = f"c{{i:02d}}"
    score = 1.0 if i < 10 else 0.0 if i < 28 else float(rng.random() < 0.5)
    score = 1.0 if case in fixed else 0.0 if case in broken else score
    scores.append(score)
    if {per_case}:
        trace = ("wrong answer: expected 42" if i < 28 else "tool timeout") + f"\\nin {{case}}"
        print(json.dumps({{"case": case, "score": score, "trace": trace}}))
if not {per_case}:
    print("score:", sum(scores) / len(scores))
"""

CONFIG = """\
[loop]
editable = "train.py"
locked = ["prepare.py", "evaluate.py"]
command = "{python} train.py"
budget = "10s"

[metric]
name = "score"
goal = "maximize"
eval = "{python} evaluate.py"
{extra}

[agent]
kind = "mutate"
seed = 0
"""

TRAIN = "print('a harness')\n"


def project(
    make_project: MakeProject, per_case: bool = True, extra: str = "", name: str = "p"
) -> Path:
    return make_project(
        config=CONFIG.replace("{extra}", extra),
        extra={"evaluate.py": EVALUATOR.format(per_case=per_case)},
        train=TRAIN,
        name=name,
    )


def fix(*cases: str) -> ScriptedAgent:
    return ScriptedAgent(
        [(lambda text: text + f"FIXES = 'FIX {' FIX '.join(cases)}'\n", "fixes cases")]
    )


def runs_of(engine: Engine, exp: Experiment) -> int:
    """Its own runs and the control runs of the best beside it."""
    return len(engine.ledger.runs("t", exp.id)) + len(engine.ledger.controls_beside("t", exp.id))


async def test_a_paired_judge_keeps_a_3_of_40_fix_with_fewer_runs_than_the_mean(
    make_project: MakeProject,
) -> None:
    found = {}
    for per_case in (True, False):
        root = project(make_project, per_case, name=f"cases-{per_case}")
        engine = engine_for(root, fix("c10", "c11", "c12"))
        await run(engine, 2)
        candidate = engine.ledger.experiments("t")[1]
        found[per_case] = candidate
        if per_case:
            assert candidate.status is Status.KEPT, candidate.reason
            assert "fixed 3, broke 0 of 40 cases" in candidate.reason
            paired_runs = runs_of(engine, candidate)
            # It was kept on pairs of the same round: each of its runs beside a control run of
            # the best seeded as it, never against the best's runs from before.
            own = engine.ledger.case_runs("t", candidate.id)
            beside = engine.ledger.case_runs("t", 0, beside=candidate.id)
            assert {r.seed for r in own} <= {r.seed for r in beside if r.control}
            # The morning report's keep says what it fixed, by name.
            report = render_md(summarise(engine.ledger, "t"))
            assert "cases: fixed 3 (c10, c11, c12), broke 0" in report
        else:
            mean_runs = runs_of(engine, candidate)
    kept_by_mean = found[False].status is Status.KEPT
    # The mean alone, on the same seeded noise, needs more runs (or never tells it apart).
    assert not kept_by_mean or mean_runs > paired_runs, (
        paired_runs,
        mean_runs,
        found[False].reason,
    )
    assert paired_runs <= 4  # two of its own, a control beside each


async def test_every_run_s_cases_are_one_packed_row_keyed_by_the_loop_s_dictionary(
    make_project: MakeProject,
) -> None:
    root = project(make_project)
    engine = engine_for(root, fix("c10"))
    await run(engine, 2)
    db = sqlite3.connect(root / ".ratchet" / "ledger.sqlite")
    (names,) = db.execute("SELECT COUNT(*) FROM case_ids WHERE tag='t'").fetchone()
    assert names == 40  # one dictionary, however many runs
    rows = db.execute(
        "SELECT experiment, control, seed, scores FROM cases WHERE tag='t'"
    ).fetchall()
    measured = db.execute(
        "SELECT COUNT(*) FROM runs WHERE tag='t' AND metric IS NOT NULL"
    ).fetchone()[0]
    assert len(rows) == measured  # one row per run, not per case
    baseline = [unpack(blob) for exp, control, _, blob in rows if exp == 0 and not control]
    assert len(baseline) == 3 and all(len(scores) == 40 for scores in baseline)
    assert max(len(blob) for *_, blob in rows) < 40  # 40 pass/fail cases: bits, compressed
    # Each run's metric is its cases' mean, without a metric line.
    measured_runs = [r["metric"] for r in engine.ledger.runs("t", 0)]
    assert measured_runs == pytest.approx([sum(s.values()) / 40 for s in baseline])
    # The last run's failing traces stay in its log folder, never in the ledger.
    failing = root / ".ratchet" / "loops" / "t" / "logs" / "1.failing.jsonl"
    lines = [json.loads(line) for line in failing.read_text().splitlines()]
    assert lines and all(line["score"] < 1 and "in c" in line["trace"] for line in lines)
    dump = "\n".join(db.iterdump())
    assert "wrong answer" not in dump


async def test_a_candidate_that_breaks_a_protected_case_is_discarded_by_name(
    make_project: MakeProject,
) -> None:
    root = project(make_project, extra='protect = ["c0[0-4]"]')
    agent = ScriptedAgent(
        [
            (
                lambda text: (
                    text + "EDIT = 'FIX c10 FIX c11 FIX c12 FIX c13 FIX c14 FIX c15 BREAK c03'\n"
                ),
                "",
            )
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 2)
    candidate = engine.ledger.experiments("t")[1]
    assert candidate.status is Status.DISCARDED, candidate.reason
    assert "broke protected case c03" in candidate.reason
    shown = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "-C", str(root), "show", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=True,
    ).stdout
    assert "fixed 6 (c10, c11, c12, c13, c14, c15), broke 1 (c03)" in shown, shown


FORGED = (
    "import json\nfor i in range(40):\n"
    "    print(json.dumps({'case': f'c{i:02d}', 'score': 1.0, 'trace': 'solved'}))\n"
    "print('score: 1.0')\n"
)


async def test_case_lines_the_edited_code_prints_are_not_read(make_project: MakeProject) -> None:
    """The attacker's way in: an edit that prints every case solved (and a perfect score) on
    its own output. With an evaluator, only the evaluator's lines are cases."""
    root = project(make_project)
    agent = ScriptedAgent([(lambda text: text + FORGED, "prints every case solved")])
    engine = engine_for(root, agent)
    await run(engine, 2)
    forger = engine.ledger.experiments("t")[1]
    assert forger.status is not Status.KEPT and forger.metric is not None
    assert forger.metric < 0.75  # the evaluator's 10 solved + the flaky half, not 1.0
    own = [r for r in engine.ledger.case_runs("t", forger.id) if not r.control]
    assert own and all(sum(r.scores.values()) < 40 for r in own)


async def test_a_cases_file_that_is_a_link_voids_the_run(make_project: MakeProject) -> None:
    evaluator = (
        "import os\nos.makedirs('out', exist_ok=True)\n"
        "os.symlink('/etc/passwd', 'out/cases.jsonl')\nprint('score: 1')\n"
    )
    root = make_project(
        config=CONFIG.replace("{extra}", 'cases = "out/cases.jsonl"'),
        extra={"evaluate.py": evaluator},
        train=TRAIN,
    )
    engine = engine_for(root, ScriptedAgent([]))
    await run(engine, 1)
    baseline = engine.ledger.experiments("t")[0]
    assert baseline.status is Status.VOIDED and "symbolic link" in baseline.reason


async def test_a_cases_file_is_read_from_the_evaluator_s_room(make_project: MakeProject) -> None:
    evaluator = (
        "import json, os\nos.makedirs('out', exist_ok=True)\n"
        "with open('out/cases.jsonl', 'w') as f:\n"
        "    for i in range(4):\n"
        "        f.write(json.dumps({'case': f'k{i}', 'score': i / 4}) + '\\n')\n"
        # A case line on the output does not count when the file is declared.
        "print(json.dumps({'case': 'k9', 'score': 1}))\n"
    )
    root = make_project(
        config=CONFIG.replace("{extra}", 'cases = "out/cases.jsonl"'),
        extra={"evaluate.py": evaluator},
        train=TRAIN,
    )
    engine = engine_for(root, ScriptedAgent([]))
    await run(engine, 1)
    baseline = engine.ledger.experiments("t")[0]
    assert baseline.status is Status.KEPT and baseline.metric == pytest.approx(0.375)
    runs = engine.ledger.case_runs("t", 0)
    assert len(runs) == 3 and len(runs[0].scores) == 4


def test_case_lines_are_checked() -> None:
    reader = CaseReader()
    reader.feed('{"case": "a", "score": 0.5, "trace": "x"}')
    reader.feed("score: 3")  # not a case line
    assert reader.result() is not None and reader.problem is None
    reader.feed('{"case": "b", "score": 1.5}')
    assert reader.problem and "not from 0 to 1" in reader.problem


def test_what_a_candidate_changed_is_said_with_its_ids_bounded() -> None:
    many = CaseChanges(0, 12, 1, 40, tuple(f"c{i}" for i in range(NAMED)), ("b",))
    assert many.words() == (
        "fixed 12 (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 2 more), broke 1 (b) of 40 cases"
    )
    assert CaseChanges(3, 0, 0, 1, (), ()).words() == "fixed 0, broke 0 of 1 case"


def test_packing_round_trips_and_a_uniform_shift_claims_nothing() -> None:
    scores = {n: (n % 7) / 7 for n in range(1000)}
    assert unpack(pack(scores)) == pytest.approx(scores)
    passed = {n * 3: float(n * 7919 % 10 < 6) for n in range(1000)}  # pass/fail: one bit each
    assert unpack(pack(passed)) == passed and len(pack(passed)) < 200
    assert unpack(pack({})) == {}
    best = [CaseRun(0, None, False, {n: 0.5 for n in range(40)})]
    shifted = [CaseRun(0, None, False, {n: 0.6 for n in range(40)})]
    evidence = paired(1, shifted, best)
    assert evidence is not None and evidence.z == 0.0  # every case alike: a run's shift
    fixed = [CaseRun(0, None, False, {n: 1.0 if n < 3 else 0.5 for n in range(40)})]
    evidence = paired(1, fixed, best)
    assert evidence is not None and len(evidence.fixed) == 3 and evidence.z > 1.5
    # Three cases up on one pair: the sign test cannot call it (1/8); on two pairs it can (1/64).
    assert evidence.p == pytest.approx(1 / 8) and not evidence.convincing
    assert sign_test(6, 0) == pytest.approx(1 / 64) and sign_test(0, 0) == 1.0


def test_with_same_round_controls_only_the_controls_beside_a_candidate_pair() -> None:
    # The best's own runs from before (seeds 0, 1) read the three cases as failing; the machine
    # moved since, and its control beside the candidate (seed 1) passes them as the candidate
    # does: the drift is not counted as cases fixed.
    old = [
        CaseRun(seed, None, False, {n: 0.0 if n < 3 else 0.5 for n in range(40)}) for seed in (0, 1)
    ]
    now = {n: 1.0 if n < 3 else 0.5 for n in range(40)}
    candidate = [CaseRun(seed, None, False, now) for seed in (0, 1)]
    control = CaseRun(1, 7, True, now)
    across = paired(7, candidate, [*old, control])
    assert across is not None and across.pairs == 2 and across.fixed == (0, 1, 2)
    same = paired(7, candidate, [*old, control], same_round=True)
    assert same is not None and same.pairs == 1 and same.fixed == () and not same.convincing
    assert paired(7, candidate, old, same_round=True) is None


class ProseAgent(ScriptedAgent):
    kind = "command"  # an agent that reads prose: it is shown the failing cases


HOLDOUT = """\
import json
print(json.dumps({"case": "h1", "score": 0, "trace": "HOLDOUT-SECRET answer"}))
print("score: 0.5")
"""


async def test_the_proposer_reads_the_failures_of_the_best_and_the_last_candidate_not_the_holdout(
    make_project: MakeProject,
) -> None:
    config = CONFIG.replace("{extra}", 'holdout = "{python} holdout.py"')
    config = config.replace('budget = "10s"', 'budget = "10s"\npipeline = false').replace(
        '"evaluate.py"]', '"evaluate.py", "holdout.py"]'
    )
    root = make_project(
        config=config,
        extra={"evaluate.py": EVALUATOR.format(per_case=True), "holdout.py": HOLDOUT},
        train=TRAIN,
    )
    agent = ProseAgent(
        [
            (lambda text: text + "EDIT = 'FIX c10 BREAK c05'\n", "fixes one, breaks one"),
            (lambda text: text + "EDIT2 = 'x'\n", "next"),
        ]
    )
    engine = engine_for(root, agent)
    await run(engine, 3)
    assert engine.ledger.experiments("t")[0].holdout == 0.5  # the holdout ran
    seen = [c for c in agent.contexts if [f.experiment for f in c.failures] == [1, 0]]
    assert seen, [c.failures for c in agent.contexts]
    prompt = command_prompt(seen[0])
    assert "## The cases the best (exp 0) failed" in prompt
    block = prompt[prompt.index("## The cases the last candidate (exp 1) failed") :]
    block = block[: block.index("## The cases the best")]
    assert "untrusted" in block.lower()
    # Grouped by the first line: 18 unsolved cases less c10, plus c05, say one error.
    assert "wrong answer: expected 42" in block and block.count("wrong answer: expected 42") <= 2
    assert "It broke (passed on the best, fail now): c05" in block
    assert all("HOLDOUT-SECRET" not in command_prompt(c) for c in agent.contexts)
