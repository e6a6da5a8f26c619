"""The loop's parts, built once: each is given what it uses, and sees the engine that holds
them together only through the small Protocol its module names (`Drives` is all of them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .agents import make_agent, resolve_kind
from .agents.base import Agent
from .baseline import Baselines, BaselinesNeeds
from .config import Config
from .events import EventBus
from .history import History
from .judge import Judge
from .ledger import Ledger
from .measure import Measurer
from .opening import Opening
from .proposer import Proposer, ProposerNeeds
from .runners import make_runner
from .runners.base import Runner
from .runs import Runs, RunsNeeds
from .slots import Slots
from .traces import Traces, secrets_for
from .trial import Trial, TrialNeeds
from .verdicts import Verdicts
from .workspace import Workspace


class Drives(BaselinesNeeds, RunsNeeds, ProposerNeeds, TrialNeeds, Protocol):
    """What the parts need of the engine, together."""


@dataclass
class Loop:
    """Where one loop lives: its record, its folder, its git, and how it is told apart."""

    config: Config
    ledger: Ledger
    tag: str
    data: Path  # this loop's logs, traces and curves
    loop_id: str
    workspace: Workspace
    bus: EventBus


@dataclass
class Parts:
    history: History
    judge: Judge
    verdicts: Verdicts
    agent: Agent
    agent_kind: str
    runner: Runner
    measurer: Measurer
    slots: Slots
    baselines: Baselines
    runs: Runs
    proposer: Proposer
    trial: Trial
    opening: Opening


def make_judge(config: Config) -> Judge:
    return Judge.from_config(config.metric, config.judge)


def build_parts(
    engine: Drives,
    loop: Loop,
    *,
    agent: Agent | None,
    runner: Runner | None,
    new_rules: bool,
    carry_user_change: bool,
) -> Parts:
    """Each part, given what it uses; an agent or runner passed in (a test's) stands in for
    the one the configuration names."""
    config, workspace, bus, data = loop.config, loop.workspace, loop.bus, loop.data
    history = History(loop.ledger, loop.tag, data / "record.snapshot")
    judge = make_judge(config)
    verdicts = Verdicts(config, judge, history, workspace)
    agent_kind = agent.kind if agent else resolve_kind(config)
    agent = agent or make_agent(config, loop.loop_id)
    runner = runner or make_runner(config)
    measurer = Measurer(config, runner, workspace)
    traces = Traces(data, secrets_for(config))
    slots = Slots()
    baselines = Baselines(engine, config=config, history=history, workspace=workspace, slots=slots)
    runs = Runs(
        engine,
        config=config,
        history=history,
        workspace=workspace,
        measurer=measurer,
        verdicts=verdicts,
        slots=slots,
        bus=bus,
        traces=traces,
        data=data,
        loop_id=loop.loop_id,
        baseline_ready=baselines.ready,
    )
    proposer = Proposer(
        engine,
        config=config,
        history=history,
        workspace=workspace,
        agent=agent,
        agent_kind=agent_kind,
        bus=bus,
        logs=data / "logs",
    )
    trial = Trial(
        engine,
        config=config,
        history=history,
        workspace=workspace,
        verdicts=verdicts,
        runs=runs,
        proposer=proposer,
        baselines=baselines,
        slots=slots,
        bus=bus,
        traces=traces,
        data=data,
        agent_kind=agent_kind,
    )
    opening = Opening(
        config=config,
        history=history,
        workspace=workspace,
        slots=slots,
        baselines=baselines,
        loop_id=loop.loop_id,
        data=data,
        say=engine.say,
        new_rules=new_rules,
        carry_user_change=carry_user_change,
    )
    return Parts(
        history,
        judge,
        verdicts,
        agent,
        agent_kind,
        runner,
        measurer,
        slots,
        baselines,
        runs,
        proposer,
        trial,
        opening,
    )
