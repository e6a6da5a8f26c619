"""The plain data one experiment is made of, as it travels through the loop.

engine ── ProposalContext ──▶ agent ── Proposal ──▶ guard ──▶ workspace ──▶ runner ── Run
       ──▶ metric ── Measurement ──▶ judge ── Decision ──▶ ledger (Experiment)
"""

from __future__ import annotations

import enum
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    PROPOSED = "proposed"
    AWAITING_REVIEW = "awaiting_review"
    RUNNING = "running"
    KEPT = "kept"
    DISCARDED = "discarded"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    INVALID = "invalid"
    VOIDED = "voided"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"
    LOST = "lost"
    REJECTED = "rejected"
    CANCELLED = "cancelled"  # stopped on purpose by a person: never run again by itself
    OVER_BUDGET = "over_budget"  # ran past its budget plus the grace: never kept

    @property
    def is_final(self) -> bool:
        return self not in _UNFINISHED

    @property
    def measured(self) -> bool:
        """A run finished and its metric counts (kept or discarded)."""
        return self in (Status.KEPT, Status.DISCARDED)


_UNFINISHED = {Status.PROPOSED, Status.AWAITING_REVIEW, Status.RUNNING}

# The lifecycle of DESIGN.md, written once: proposed → (awaiting review) → running → kept |
# discarded (once measured), or an end on the way. `running → running` is a repair's new code.
_ENDS_BEFORE_RUN = {Status.INVALID, Status.INTERRUPTED, Status.REJECTED, Status.CANCELLED}
_ENDS_OF_A_RUN = {
    Status.KEPT,
    Status.DISCARDED,
    Status.CRASHED,
    Status.TIMEOUT,
    Status.VOIDED,
    Status.INTERRUPTED,
    Status.ABORTED,
    Status.LOST,
    Status.CANCELLED,
    Status.OVER_BUDGET,
}
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PROPOSED: frozenset({Status.AWAITING_REVIEW, Status.RUNNING, *_ENDS_BEFORE_RUN}),
    Status.AWAITING_REVIEW: frozenset({Status.RUNNING, *_ENDS_BEFORE_RUN}),
    Status.RUNNING: frozenset({Status.RUNNING, *_ENDS_OF_A_RUN}),
    # A crash handed back to the agent runs again as the same experiment (its repair).
    Status.CRASHED: frozenset({Status.RUNNING}),
    # A keep overtaken by another slot's keep before it was committed is discarded.
    Status.KEPT: frozenset({Status.DISCARDED}),
}


class TransitionError(RuntimeError):
    """A status change the lifecycle does not allow: a bug in the loop, never a user error."""


def move(experiment: Experiment, status: Status, reason: str | None = None) -> None:
    """Every status change of an experiment goes through here, checked against TRANSITIONS."""
    if status not in TRANSITIONS.get(experiment.status, frozenset()):
        raise TransitionError(
            f"exp {experiment.id}: {experiment.status} → {status} is not in the lifecycle"
        )
    experiment.status = status
    if reason is not None:
        experiment.reason = reason


@dataclass(frozen=True)
class HistoryEntry:
    """One past experiment as an agent sees it."""

    id: int
    status: str
    metric: float | None
    delta: float | None
    description: str
    log_tail: str = ""
    trace_tail: str = ""
    digest: str = ""  # the normalised digest of the file it measured (novelty.digest)


@dataclass(frozen=True)
class ProposalContext:
    """Everything an agent may read to propose the next edit."""

    experiment: int
    editable_path: str
    editable_text: str  # the file at the current best
    program: str  # program.md, re-read before every proposal
    metric_name: str
    goal: str
    best_metric: float | None
    history: tuple[HistoryEntry, ...]
    notes: tuple[str, ...] = ()
    running: tuple[str, ...] = ()  # descriptions of experiments in flight on other slots
    # normalised digests of files already measured (a live set: never copied per proposal)
    tried_digests: AbstractSet[str] = frozenset()
    repair_of: RepairRequest | None = None
    proposal: int = 0  # which proposal of the loop (in order asked): tells apart those made at once
    base_commit: str = ""  # the current best's commit (the files an agent works from)
    tag: str = ""  # the loop's tag: names state an agent keeps next to the ledger
    summary: str = ""  # the whole history grouped by what was changed (summary.summarise)
    # The failing cases of the best and of the last candidate (cases.failures_for_agent):
    # untrusted output of the code under test, never from the holdout.
    failures: tuple[CaseFailures, ...] = ()


@dataclass(frozen=True)
class CaseFailures:
    """One experiment's failing cases as an agent is shown them: `role` says whose."""

    experiment: int
    role: str  # "the best" | "the last candidate"
    text: str


@dataclass(frozen=True)
class RepairRequest:
    """A fast crash handed back to the agent: its text, and what went wrong."""

    broken_text: str
    description: str
    log_tail: str
    attempt: int


@dataclass
class Proposal:
    """An agent's edit: the new text of each file it changed, and one line saying why."""

    edits: dict[str, str]
    description: str
    trace: list[dict[str, Any]] = field(default_factory=list)
    agent_seconds: float = 0.0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    # Set when the agent itself failed to produce a usable edit (it is recorded `invalid`).
    failure: str | None = None
    # The agent has nothing new to propose (an offline search with every value tried): a few
    # in a row close the proposer, so a loop never spins on invalid experiments.
    exhausted: bool = False
    # The agent can never propose anything on this file (an offline agent finding nothing it
    # can tune): the proposer closes at once, saying why, and nothing is recorded for it.
    final: bool = False
    # What the loop should tell the person, once each (a range the agent inferred that holds
    # the best at its edge); not part of the experiment's record.
    warnings: list[str] = field(default_factory=list)
    source: str = "agent"  # agent | human (runBuffer) | rebase | revert | baseline
    rerun_of: int | None = None


@dataclass(frozen=True)
class Measurement:
    value: float | None
    secondary: dict[str, float]
    problem: str | None = None  # why there is no value (a crash)


@dataclass
class Experiment:
    """One experiment as the ledger holds it."""

    id: int
    tag: str
    status: Status
    description: str
    agent: str
    base_commit: str
    commit: str | None = None
    metric: float | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    diff: str = ""
    agent_s: float = 0.0
    run_s: float = 0.0
    overhead_s: float = 0.0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    hardware: dict[str, Any] = field(default_factory=dict)
    log_path: str = ""
    exit_code: int | None = None
    log_tail: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    source: str = "agent"
    digest: str = ""
    rerun_of: int | None = None  # this experiment measures again one that was interrupted
    trace_tail: str = ""  # what the run's trace file (`[metric] trace`) said, for the agent
    # `[metric] holdout`'s number, measured on a new best only: for a person, never an agent.
    holdout: float | None = None
    # The verdict in the judge's one currency (σ: the run-to-run noise): the gain over the
    # reference it was judged against, and the smallest gain its runs could resolve.
    effect: float | None = None
    resolvable: float | None = None
    control: float | None = None  # the mean of the best's control runs beside this candidate
    # The metric it was kept on, once a best's level is revised by its later runs (`metric`
    # then holds the level): results.tsv, a log of verdicts, keeps this one.
    judged: float | None = None


@dataclass
class Pending:
    """A proposal on its way to a slot, with the best it was made from."""

    proposal: Proposal
    base_commit: str
    base_text: str
    reserved_id: int | None = None  # the baseline's number, taken before any other
    hardware: dict[str, Any] | None = None  # to be measured on this hardware only
