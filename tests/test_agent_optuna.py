"""The optuna agent: valid edits on every example, declared ranges and frozen constants
honoured, a clear error for a bad range, and a study that survives SIGKILL."""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from conftest import MakeProject
from loops import engine_for, run
from ratchet.agents import make_agent
from ratchet.agents.optuna import OptunaAgent, study_storage
from ratchet.agents.portfolio import PortfolioAgent
from ratchet.agents.space import build_space, find_literals
from ratchet.config import ConfigError, load_config, parse_config
from ratchet.experiment import HistoryEntry, ProposalContext
from ratchet.novelty import digest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

SOURCE = textwrap.dedent(
    """\
    LR = 0.02
    WIDTH = 64
    DROPOUT = 0.1
    USE_BIAS = True
    H100_BF16_PEAK_FLOPS = 989.5e12
    print(LR, WIDTH)
    """
)


def context(text: str, n: int = 1, history: tuple[HistoryEntry, ...] = (), **kw: object):
    fields: dict[str, object] = dict(
        experiment=n,
        editable_path="train.py",
        editable_text=text,
        program="",
        metric_name="score",
        goal="minimize",
        best_metric=1.0,
        history=history,
        tag="t",
    )
    fields.update(kw)
    return ProposalContext(**fields)  # type: ignore[arg-type]


def editable_of(example: Path) -> str:
    for line in (example / "ratchet.toml").read_text().splitlines():
        if line.startswith("editable"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError(f"no editable in {example}")


@pytest.mark.parametrize("kind", [OptunaAgent, PortfolioAgent])
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_valid_edits_of_only_constants_on_every_example(
    example: str, kind: type[OptunaAgent], tmp_path: Path
) -> None:
    text = (EXAMPLES / example / editable_of(EXAMPLES / example)).read_text()
    agent = kind(tmp_path / ".ratchet", seed=1)
    before = {lit.name: lit.value for lit in find_literals(text)}
    history: list[HistoryEntry] = [HistoryEntry(0, "kept", 1.0, None, "baseline")]
    for n in range(1, 13):
        proposal = asyncio.run(agent.propose(context(text, n, tuple(history))))
        assert proposal.failure is None, proposal.failure
        new = proposal.edits["train.py"]
        ast.parse(new)
        after = {lit.name: lit.value for lit in find_literals(new)}
        assert after.keys() == before.keys()
        changed = [name for name in before if after[name] != before[name]]
        assert changed and all(f"{name} " in proposal.description for name in changed)
        # Outside the changed literals, the file is untouched, line for line.
        assert len(new.splitlines()) == len(text.splitlines())
        # Each measured worse than the best: the portfolio's steps, parabolas and model
        # all come into play on the next proposals.
        history.append(HistoryEntry(n, "discarded", 1.0 + n / 10, None, proposal.description,
                                    digest=digest(new)))  # fmt: skip


def test_frozen_constants_and_declared_ranges_are_honoured(make_project: MakeProject) -> None:
    config = """\
    [loop]
    editable = "train.py"
    command = "{python} train.py"
    [metric]
    name = "score"
    [agent]
    kind = "optuna"
    [agent.space.LR]
    low = 0.001
    high = 0.004
    log = true
    [agent.space.WIDTH]
    choices = [48, 96]
    [agent.space.DROPOUT]
    freeze = true
    """
    root = make_project(train=SOURCE, config=textwrap.dedent(config))
    agent = make_agent(load_config(root))
    history: list[HistoryEntry] = []
    for n in range(1, 21):
        proposal = asyncio.run(agent.propose(context(SOURCE, n, tuple(history))))
        values = {lit.name: lit.value for lit in find_literals(proposal.edits["train.py"])}
        assert values["DROPOUT"] == 0.1
        assert 0.001 <= float(values["LR"]) <= 0.004
        assert values["WIDTH"] in (48, 96)
        score = abs(float(values["LR"]) - 0.002)
        history.append(
            HistoryEntry(
                n,
                "discarded",
                score,
                None,
                proposal.description,
                digest=digest(proposal.edits["train.py"]),
            )
        )
    names = [d.name for d in build_space(SOURCE, load_config(root).agent.space).dimensions]
    assert "DROPOUT" not in names and "LR" in names


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("low = 0.1\nhigh = 0.01", "`high` (0.01) must be above `low` (0.1)"),
        ("low = 0\nhigh = 1\nlog = true", "a log range needs `low` above zero"),
        ("low = 1\nhigh = 9\nlog = true\nstep = 2", "a log range cannot have a `step`"),
        ("choices = []", "expected a non-empty list"),
        ("choices = [1, 2]\nlow = 0", "either `choices` or a range"),
        ("lw = 1", 'did you mean "low"?'),
    ],
)
def test_a_bad_range_is_a_located_error(section: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SOURCE)
    source = (
        '[loop]\neditable = "train.py"\ncommand = "python train.py"\n'
        f'[metric]\nname = "score"\n[agent]\nkind = "optuna"\n[agent.space.LR]\n{section}\n'
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(source, tmp_path)
    assert message in caught.value.message
    assert caught.value.line >= 9  # on the offending line of the section, not line 1
    assert str(caught.value).startswith("ratchet.toml:")


def test_a_space_for_a_missing_constant_is_a_located_error(make_project: MakeProject) -> None:
    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\n[metric]\n'
    config += 'name = "score"\n[agent]\nkind = "optuna"\n\n[agent.space.LRR]\nlow = 0.1\n'
    root = make_project(config=config)
    with pytest.raises(ConfigError) as caught:
        make_agent(load_config(root))
    assert caught.value.line == 9 and "its constants: LR, WIDTH" in caught.value.message


def test_results_crashes_and_repairs(tmp_path: Path) -> None:
    agent = OptunaAgent(tmp_path / ".ratchet", seed=3)
    first = asyncio.run(agent.propose(context(SOURCE, 1)))
    second = asyncio.run(agent.propose(context(SOURCE, 2)))
    history = (
        HistoryEntry(
            1, "discarded", 0.5, None, first.description, digest=digest(first.edits["train.py"])
        ),
        HistoryEntry(
            2, "crashed", None, None, second.description, digest=digest(second.edits["train.py"])
        ),
    )
    asyncio.run(agent.propose(context(SOURCE, 3, history)))
    study = optuna.load_study(study_name="ratchet-t", storage=study_storage(tmp_path / ".ratchet"))
    by_experiment = {t.user_attrs.get("experiment"): t for t in study.trials}
    assert by_experiment[1].value == 0.5
    assert by_experiment[2].state is optuna.trial.TrialState.FAIL
    assert by_experiment[3].state is optuna.trial.TrialState.RUNNING
    incumbent = [t for t in study.trials if t.user_attrs.get("incumbent")]
    assert len(incumbent) == 1 and incumbent[0].value == 1.0
    from ratchet.experiment import RepairRequest

    repair = RepairRequest(SOURCE, "x", "Traceback", 1)
    said = asyncio.run(agent.propose(context(SOURCE, 4, repair_of=repair)))
    assert said.failure and said.failure.startswith("cannot repair offline")


KILLED = """\
import asyncio, os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_agent_optuna import SOURCE, context
from ratchet.agents.optuna import OptunaAgent
agent = OptunaAgent(Path({folder!r}), seed=5)
proposal = asyncio.run(agent.propose(context(SOURCE, 1)))
print(proposal.edits["train.py"], end="", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_study_resumes_after_sigkill(tmp_path: Path) -> None:
    folder = tmp_path / ".ratchet"
    script = KILLED.format(tests=str(Path(__file__).parent), folder=str(folder))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == -signal.SIGKILL
    text = done.stdout
    assert text != SOURCE
    # The loop measured experiment 1 while the agent was dead; a new agent learns it.
    agent = OptunaAgent(folder, seed=5)
    entry = HistoryEntry(1, "kept", 0.25, None, "x", digest=digest(text))
    asyncio.run(agent.propose(context(text, 2, (entry,), best_metric=0.25)))
    study = optuna.load_study(study_name="ratchet-t", storage=study_storage(folder))
    told = [t for t in study.trials if t.user_attrs.get("experiment") == 1]
    assert len(told) == 1 and told[0].value == 0.25


def test_a_real_loop_feeds_the_study_its_mean_metrics(make_project: MakeProject) -> None:
    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\nbudget = "10s"\n'
    config += '[metric]\nname = "score"\n[judge]\nbaseline_runs = 1\n[agent]\nkind = "optuna"\n'
    root = make_project(config=config)
    engine = engine_for(root, agent=None, tag="opt")  # type: ignore[arg-type]
    asyncio.run(run(engine, 6))
    rows = {e.digest: e for e in engine.ledger.experiments("opt")}
    study = optuna.load_study(study_name="ratchet-opt", storage=study_storage(root / ".ratchet"))
    asked = [t for t in study.trials if "experiment" in t.user_attrs]
    assert len(asked) >= 4
    for trial in asked:
        exp = rows.get(trial.user_attrs["digest"])
        if exp is not None and trial.value is not None and exp.status.measured:
            assert trial.value == pytest.approx(exp.metric)


def test_the_study_is_opened_once_and_kept_for_the_loops_life(tmp_path: Path) -> None:
    # Reopening it read every trial from SQLite on each proposal: about 5 s at 10,000 trials
    # (bench/bench_agent.py); a kept-open study reads only what changed.
    agent = OptunaAgent(tmp_path / ".ratchet", seed=3)
    first = asyncio.run(agent.propose(context(SOURCE, 1)))
    opened = agent.study(context(SOURCE, 2))
    entry = HistoryEntry(1, "discarded", 0.5, None, "x", digest=digest(first.edits["train.py"]))
    asyncio.run(agent.propose(context(SOURCE, 2, (entry,))))
    assert agent.study(context(SOURCE, 3)) is opened
    told = [t for t in opened.trials if t.user_attrs.get("experiment") == 1]
    assert told and told[0].value == 0.5
    asyncio.run(agent.close())
    reopened = agent.study(context(SOURCE, 3))
    assert reopened is not opened and len(reopened.trials) == len(opened.trials)
