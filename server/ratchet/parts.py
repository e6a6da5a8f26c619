"""The loop's parts, built once: each is given what it uses, and sees the engine that holds
them together only through the small Protocol its module names (`Drives` is all of them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .agents import make_agent, resolve_kind
from .agents.base import Agent
from .baseline import Baselines, BaselinesNeeds
from .config import Config
from .events import EventBus
from .history import History
from .holdout import Holdout
from .inflight import InFlight
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
from .upkeep import Upkeep
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
    """The loop's parts: those that judge and run (given to `Parts`), then those of one
    experiment's lifecycle, each built from them (`_lifecycle`)."""

    history: History
    judge: Judge
    verdicts: Verdicts
    agent: Agent
    agent_kind: str
    runner: Runner
    measurer: Measurer
    slots: Slots
    in_flight: InFlight
    baselines: Baselines = field(init=False)
    runs: Runs = field(init=False)
    proposer: Proposer = field(init=False)
    trial: Trial = field(init=False)
    opening: Opening = field(init=False)
    upkeep: Upkeep = field(init=False)
    holdout: Holdout = field(init=False)

    def reconfigure(self, config: Config) -> None:
        """A changed ratchet.toml: each part reads the settings it was given, so all see the
        new ones from here on."""
        parts = (self.measurer, self.runs, self.trial, self.proposer, self.baselines)
        for part in (*parts, self.opening, self.upkeep, self.holdout):
            part.config = config
        self.judge = make_judge(config)
        self.verdicts.reconfigure(config, self.judge)


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
    config, workspace = loop.config, loop.workspace
    history = History(loop.ledger, loop.tag, loop.data / "record.snapshot")
    judge = make_judge(config)
    chosen = agent or make_agent(config, loop.loop_id)
    runner = runner or make_runner(config)
    parts = Parts(
        history=history,
        judge=judge,
        verdicts=Verdicts(config, judge, history, workspace),
        agent=chosen,
        agent_kind=agent.kind if agent else resolve_kind(config),
        runner=runner,
        measurer=Measurer(config, runner, workspace),
        slots=Slots(),
        in_flight=InFlight(),
    )
    _lifecycle(parts, engine, loop)
    parts.upkeep = Upkeep(config, history, parts.verdicts)
    parts.holdout = Holdout(
        config=config,
        history=history,
        workspace=workspace,
        measurer=parts.measurer,
        in_flight=parts.in_flight,
        logs=loop.data / "logs",
        loop_id=loop.loop_id,
        bus=loop.bus,
        say=engine.say,
    )
    parts.opening = Opening(
        config=config,
        history=history,
        workspace=workspace,
        slots=parts.slots,
        baselines=parts.baselines,
        loop_id=loop.loop_id,
        data=loop.data,
        say=engine.say,
        new_rules=new_rules,
        carry_user_change=carry_user_change,
    )
    return parts


def _lifecycle(parts: Parts, engine: Drives, loop: Loop) -> None:
    """The parts of one experiment's lifecycle: the baseline, its runs, the agent's proposals,
    and the trial that holds them together."""
    config, workspace, bus, data = loop.config, loop.workspace, loop.bus, loop.data
    history = parts.history
    traces = Traces(data, secrets_for(config))
    parts.baselines = Baselines(
        engine, config=config, history=history, workspace=workspace, slots=parts.slots
    )
    parts.runs = Runs(
        engine,
        config=config,
        history=history,
        workspace=workspace,
        measurer=parts.measurer,
        verdicts=parts.verdicts,
        slots=parts.slots,
        bus=bus,
        traces=traces,
        data=data,
        loop_id=loop.loop_id,
        baseline_ready=parts.baselines.ready,
        in_flight=parts.in_flight,
    )
    parts.proposer = Proposer(
        engine,
        config=config,
        history=history,
        workspace=workspace,
        agent=parts.agent,
        agent_kind=parts.agent_kind,
        bus=bus,
        logs=data / "logs",
    )
    parts.trial = Trial(
        engine,
        config=config,
        history=history,
        workspace=workspace,
        verdicts=parts.verdicts,
        runs=parts.runs,
        proposer=parts.proposer,
        baselines=parts.baselines,
        slots=parts.slots,
        bus=bus,
        traces=traces,
        data=data,
        agent_kind=parts.agent_kind,
    )
