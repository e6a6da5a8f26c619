"""A sealed holdout through the real loop: `[metric] holdout` runs in a clean room of its own
on each new best (the baseline too) and at `finalize`, never after every run; its
`holdout_only` files are in no run's folder, no evaluator's, no agent's view; its number is an
experiment's own field that a person reads (log, show, the report, finalize) and no agent does;
a candidate that wins dev by memorising the dev cases is shown falling on the holdout."""

from __future__ import annotations

import asyncio
import json
import shlex
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import MakeProject, commit_all
from loops import engine_for, run
from ratchet.cli import main
from ratchet.config import ConfigError, load_config
from ratchet.experiment import Status
from ratchet.ledger import Ledger
from ratchet.ledger_schema import SCHEMA_VERSION
from ratchet.runners.sandbox import find_bwrap, probe

NEEDLE = "HOLDOUT-NEEDLE-7f3a9c"  # in the holdout's file, and in all the holdout prints
DEV = [(x, (3 * x + 1) % 5) for x in range(0, 40, 2)]  # even x: the cases the loop sees
HOLDOUT = [(x, (3 * x + 1) % 5) for x in range(1, 44, 2)]  # odd x: sealed (22)

# The editable file: a rule to guess the label of x. The baseline knows nothing (always 0).
MODEL = textwrap.dedent(
    """\
    import os
    TABLE = {}

    def predict(x):
        return TABLE.get(x, 0)

    if __name__ == "__main__":
        PROBE
        print("selftest", predict(2))
    """
)
# What every run and the evaluator try: the holdout's file, by every path they could know.
PROBE = (
    'for p in ("holdout.jsonl", "ROOT/holdout.jsonl"):\n'
    "        try:\n"
    '            print("READ", p, open(p).read()[:60])\n'
    "        except OSError as e:\n"
    '            print("DENIED", p, type(e).__name__)'
)
EVALUATE = textwrap.dedent(
    """\
    import json, os, sys
    split = sys.argv[1]
    for p in ("holdout.jsonl", "ROOT/holdout.jsonl"):
        try:
            print("READ", p, open(p).read()[:60])
        except OSError as e:
            print("DENIED", p, type(e).__name__)
    from model import predict
    cases = [json.loads(line) for line in open(split + ".jsonl") if line.strip()]
    right = sum(predict(c["x"]) == c["y"] for c in cases)
    open("failures.txt", "w").write(
        ("NEEDLE " + cases[0].get("tag", "") + "\\n" if split == "holdout" else "")
        + "".join(f"case {c['x']}: wrong\\n" for c in cases if predict(c["x"]) != c["y"])
    )
    print(f"accuracy: {right / len(cases):.4f}")
    """
)
CONFIG = textwrap.dedent(
    """\
    [loop]
    editable = "model.py"
    locked = ["evaluate.py", "dev.jsonl", "holdout.jsonl"]
    command = "{python} model.py"
    budget = "20s"
    pipeline = false

    [metric]
    name = "accuracy"
    goal = "maximize"
    eval = "{python} evaluate.py dev"
    trace = "failures.txt"
    holdout = "{python} evaluate.py holdout"
    holdout_only = ["holdout.jsonl"]

    [judge]
    baseline_runs = 1

    [agent]
    kind = "mutate"

    [runner]
    kind = "local"
    gpus = []
    """
)


def _lines(cases: list[tuple[int, int]], tag: str = "") -> str:
    return "".join(json.dumps({"x": x, "y": y, "tag": tag}) + "\n" for x, y in cases)


def holdout_project(make_project: MakeProject, config: str = CONFIG) -> Path:
    """The project: dev and holdout cases, the evaluator, and a model whose every run (and
    the evaluator's) tries to read the holdout's file, by its name and its absolute path."""
    root = make_project(train="# unused\n", config=config, commit=False)
    files = {
        "model.py": MODEL.replace("PROBE", PROBE),
        "evaluate.py": EVALUATE,
        "dev.jsonl": _lines(DEV),
        "holdout.jsonl": _lines(HOLDOUT, NEEDLE),
    }
    for name, text in files.items():
        (root / name).write_text(text.replace("ROOT", str(root)))
    commit_all(root)
    return root


def honest(text: str) -> str:
    """The real rule, partly: right on x where x % 5 == 0 (label 1) — dev and holdout rise."""
    return text.replace("return TABLE.get(x, 0)", "return TABLE.get(x, 1 if x % 5 == 0 else 0)")


def memorise(text: str) -> str:
    """Every dev answer by heart, and a worse guess elsewhere: dev 1.0, the holdout falls."""
    table = "TABLE = {" + ", ".join(f"{x}: {y}" for x, y in DEV) + "}"
    return text.replace("TABLE = {}", table).replace("1 if x % 5 == 0 else 0", "4")


STEPS = [(honest, "the rule for multiples of five"), (memorise, "remember the dev answers")]


def _holdout_logs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / ".ratchet").rglob("*.holdout.log"))


sandboxed = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)


@sandboxed
async def test_the_holdout_runs_on_new_bests_only_and_is_its_own_field(
    make_project: MakeProject,
) -> None:
    root = holdout_project(make_project)
    steps = [
        (honest, "the rule for multiples of five"),
        (replace("TABLE = {}", "TABLE = {1: 3}"), "a wrong guess for 1 (no change on dev)"),
        (memorise, "remember the dev answers"),
    ]
    agent = ScriptedAgent(steps)
    engine = engine_for(root, agent)
    await run(engine, 4)
    experiments = engine.ledger.experiments("t")
    assert [e.status for e in experiments] == [
        Status.KEPT, Status.KEPT, Status.DISCARDED, Status.KEPT,
    ], [(e.id, e.status, e.reason) for e in experiments]  # fmt: skip
    # dev rises at each keep; the holdout rises, then falls on the memorising keep
    assert [e.metric for e in experiments] == [0.2, 0.4, 0.4, 1.0]
    assert [e.holdout for e in experiments] == [0.2273, 0.4091, None, 0.2273]
    # run for the three keeps only (the baseline one of them), never for the discard
    assert _holdout_logs(root) == ["0.holdout.log", "1.holdout.log", "3.holdout.log"]
    # its own field: not among the secondary numbers, the tails, or anything an agent read
    for exp in experiments:
        assert "holdout" not in exp.secondary
        assert NEEDLE not in exp.log_tail + exp.trace_tail + exp.reason
    shown = repr(agent.contexts)
    assert len(agent.contexts) == 3 and NEEDLE not in shown and ".holdout." not in shown
    # and no run's folder held its file, by name or by path: not the command's, not the
    # evaluator's; the holdout's own room did (the control)
    logs = sorted((root / ".ratchet").rglob("*.log"))
    assert len(logs) == 4 + 4 + 3
    for log in logs:
        text = log.read_text()
        if log.name.endswith(".holdout.log"):
            assert "READ holdout.jsonl" in text and NEEDLE in text, text
            continue
        assert "READ" not in text and text.count("DENIED") == 2, (log, text)
    assert not list((root / ".ratchet").glob("holdout/*"))  # its room is gone once it ran


def test_holdout_only_needs_a_holdout_and_is_no_evaluator_file(make_project: MakeProject) -> None:
    root = make_project()
    (root / "labels.jsonl").write_text("{}\n")
    toml = root / "ratchet.toml"
    base = toml.read_text()
    toml.write_text(base.replace('goal = "minimize"', 'goal = "minimize"\nholdout_only = ["x"]'))
    with pytest.raises(ConfigError, match="no `holdout` command"):
        load_config(root)
    toml.write_text(
        base.replace(
            'goal = "minimize"',
            'goal = "minimize"\nholdout = "true"\neval_only = ["labels.jsonl"]\n'
            'holdout_only = ["./labels.jsonl"]',
        )
    )
    with pytest.raises(ConfigError, match="also in `eval_only`"):
        load_config(root)
    toml.write_text(
        base.replace(
            'goal = "minimize"',
            'goal = "minimize"\nholdout = "true"\nholdout_only = ["labels.jsonl"]',
        )
    )
    assert load_config(root).metric.holdout_only == ("labels.jsonl",)


async def test_a_ledger_without_the_holdout_column_opens_and_gains_it(
    make_project: MakeProject,
) -> None:
    root = make_project()
    await run(engine_for(root, ScriptedAgent([(replace("WIDTH = 8", "WIDTH = 12"), "w")])), 2)
    path = root / ".ratchet" / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE experiments DROP COLUMN holdout")
    db.execute("ALTER TABLE runs DROP COLUMN beside")  # schema 5's, added after the holdout
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    assert main(["-C", str(root), "log", "--json"]) == 0  # a reader upgrades it once
    ledger = Ledger(root / ".ratchet", read_only=True)
    assert ledger._all("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 6
    assert [e.holdout for e in ledger.experiments("t")] == [None, None]
    assert {r["beside"] for r in ledger.runs("t", 1, controls=True)} == {None}
    ledger.close()
    await run(engine_for(root, ScriptedAgent([(replace("LR = 0.5", "LR = 0.3"), "lr")])), 3)
    assert len(Ledger(root / ".ratchet").experiments("t")) == 3


@sandboxed
async def test_a_keep_that_memorises_dev_is_shown_falling_on_the_holdout(
    make_project: MakeProject, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dev rises at both keeps; the holdout rises with the honest rule, then falls when the
    dev answers are learnt by heart: log, show, the report (HTML and Markdown) and finalize
    put the two side by side, and mark the second keep."""
    root = holdout_project(make_project)
    engine = engine_for(root, ScriptedAgent(list(STEPS)))
    await run(engine, 3)
    assert [(e.metric, e.holdout) for e in engine.ledger.experiments("t")] == [
        (0.2, 0.2273), (0.4, 0.4091), (1.0, 0.2273),
    ]  # fmt: skip
    capsys.readouterr()
    assert main(["-C", str(root), "log"]) == 0
    table = capsys.readouterr().out
    assert "holdout" in table.splitlines()[0]
    assert main(["-C", str(root), "show", "2"]) == 0
    assert "holdout 0.227300 " in capsys.readouterr().out
    assert main(["-C", str(root), "report", "-o", str(root.parent / "r.md")]) == 0
    md = (root.parent / "r.md").read_text()
    first, second = (line for line in md.splitlines() if line.startswith("- **exp"))
    assert "holdout 0.2273 → 0.4091 (+0.1818" in first and "⚠" not in first
    assert "holdout 0.4091 → 0.2273 (-0.1818" in second and "⚠ the holdout fell" in second
    assert "| holdout | 0.2273 → 0.2273 (+0;" in md and "fell while dev rose at exp 2" in md
    assert main(["-C", str(root), "report", "-o", str(root.parent / "r.html")]) == 0
    html = (root.parent / "r.html").read_text()
    assert html.count('class="holdout-fell"') == 1
    capsys.readouterr()
    assert main(["-C", str(root), "finalize"]) == 0
    out = capsys.readouterr().out
    assert "holdout: 0.2273 (baseline) → 0.2273" in out and "fell while dev rose at exp 2" in out
    assert _holdout_logs(root) == ["0.holdout.log", "1.holdout.log", "2.holdout.log"]
    # (a thread: the CLI runs its own event loop)
    args = ["-C", str(root), "finalize", "--exclude", "2", "--measure"]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert "holdout: not measured for this branch (exp 2 left out" in out
    # measured at finalize: the branch with the honest keep alone, dev and holdout
    assert "measured: accuracy 0.400000 (baseline 0.200000); holdout 0.409100" in out, out
    assert len(_holdout_logs(root)) == 4 and not list((root / ".ratchet" / "worktrees").iterdir())


SPY = """
import json, os, sys
prompt_file, project, report_path = sys.argv[1:4]
prompt = open(prompt_file).read()
calls = json.load(open(report_path)) if os.path.exists(report_path) else []
seen = [os.path.join(d, f) for d, _, fs in os.walk(".") for f in fs]
found = []
for where in (project, os.path.join(project, ".ratchet")):
    for d, _, fs in os.walk(where):
        found += [os.path.join(d, f) for f in fs if "holdout" in f]
calls.append({"scratch": seen, "found": found, "prompt": prompt})
json.dump(calls, open(report_path, "w"))
text = open("model.py").read()
if "x % 5 == 0" not in text:
    text = text.replace("return TABLE.get(x, 0)", "return TABLE.get(x, 1 if x % 5 == 0 else 0)")
    print("the rule for multiples of five")
else:
    text = text.replace("TABLE = {}", "TABLE = DEV_TABLE").replace("1 if x % 5 == 0 else 0", "4")
    print("remember the dev answers")
open("model.py", "w").write(text)
"""


@sandboxed
async def test_no_agent_sees_the_holdout_files_or_numbers(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command agent that looks for the holdout (its scratch copy, the project, `.ratchet/`,
    its prompt, which holds the history and the summary) finds neither its file nor its
    numbers, through two keeps whose holdout was measured."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-holdout-view-0123456789abcdef")
    tools, config = tmp_path / "agent-bin", tmp_path / "agent-config"
    tools.mkdir()
    config.mkdir()
    table = "{" + ", ".join(f"{x}: {y}" for x, y in DEV) + "}"
    (tools / "spy.py").write_text(SPY.replace("DEV_TABLE", table))
    report = config / "report.json"
    root = holdout_project(make_project)
    words = [sys.executable, tools / "spy.py", "{prompt_file}", root, report]
    run_line = " ".join(shlex.quote(str(w)) for w in words)
    agent = (
        f'kind = "command"\nrun = """{run_line}"""\nrepair_attempts = 0\n'
        f'sandbox_read = ["{tools}"]\nsandbox_write = ["{config}"]'
    )
    toml = root / "ratchet.toml"
    toml.write_text(toml.read_text().replace('kind = "mutate"', agent))
    commit_all(root, "a command agent")
    engine = engine_for(root, tag="a")
    await run(engine, 3)
    experiments = engine.ledger.experiments("a")
    assert [(e.status, e.holdout) for e in experiments] == [
        (Status.KEPT, 0.2273), (Status.KEPT, 0.4091), (Status.KEPT, 0.2273),
    ], [(e.id, e.status, e.reason) for e in experiments]  # fmt: skip
    calls = json.loads(report.read_text())
    assert len(calls) == 2
    for call in calls:
        assert "./model.py" in call["scratch"] and "./evaluate.py" in call["scratch"]
        assert not [p for p in call["scratch"] if "holdout" in p], call["scratch"]
        assert call["found"] == []  # the project and .ratchet/ are hidden from it
        assert NEEDLE not in call["prompt"] and ".holdout." not in call["prompt"]
        assert "0.2273" not in call["prompt"] and "0.4091" not in call["prompt"]
    assert "the rule for multiples of five" in calls[1]["prompt"]  # it did see its history
