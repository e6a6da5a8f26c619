"""What every runner (local, ssh, ray) offers the engine: slots, and running one job on one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config import SandboxConfig


@dataclass(frozen=True)
class Isolation:
    """How a job is sandboxed: `[sandbox]`, and the folders its run must never see."""

    sandbox: SandboxConfig
    hide: tuple[str, ...] = ()  # the repository, the project (with .ratchet/): emptied


@dataclass(frozen=True)
class Slot:
    """A place one experiment runs at a time: a GPU of a host, or a CPU slot."""

    name: str  # e.g. "gpu0", "cpu", "root@box:22/gpu1", "ray/3"
    host: str = "local"
    gpu: int | None = None


@dataclass
class Job:
    """One command to run for one experiment."""

    experiment: int
    command: str
    worktree: Path  # the experiment's checkout (the project folder inside it)
    log_path: Path
    budget_s: float
    timeout_s: float
    locked: tuple[str, ...] = ()
    editable: str = ""
    editable_text: str = ""  # remote runners send only this file per experiment
    env: dict[str, str] = field(default_factory=dict)
    hidden_env: tuple[str, ...] = ()  # never passed on (the agent's key)
    isolation: Isolation | None = None  # None: run as Ratchet's child, unsandboxed
    # The locked files' hashes at the loop's start: the run folder is checked against them
    # before the run and after it (by Ratchet, once the sandbox is gone). None: before/after.
    expected_locked: dict[str, str] | None = None
    secrets: tuple[str, ...] = ()  # values redacted from the log and the tail
    consumable: tuple[str, ...] = ()  # locked, checked before only: the evaluator may delete them
    # None: the command. A tuple: an evaluator, run in a fresh copy of the files with only
    # these artefacts carried over from the command's folder (remote runners build it).
    carry: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()  # files the command's folder must not hold ([metric] eval_only)

    @property
    def judging(self) -> bool:
        """An evaluator or a holdout (it carries artefacts): it scores the edited code."""
        return self.carry is not None


class RunControl:
    """Lets the engine stop one running job early (stop, cancel, early abort)."""

    def __init__(self) -> None:
        self.stopped = asyncio.Event()
        self.reason = ""
        self.aborted = False

    def stop(self, reason: str, *, aborted: bool = False) -> None:
        if not self.stopped.is_set():
            self.reason = reason
            self.aborted = aborted
            self.stopped.set()


async def wait_for_end(
    finished: asyncio.Future[Any], control: RunControl, timeout_s: float
) -> tuple[bool, bool]:
    """Waits until the run ends by itself, the engine stops it, or its time is up; returns
    (timed_out, stopped). The caller kills what is left when either is true."""
    stopper = asyncio.create_task(control.stopped.wait())
    try:
        done, _ = await asyncio.wait(
            {finished, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
    if finished in done:
        return False, False
    timed_out = stopper not in done
    return timed_out, not timed_out


OnLine = Callable[[str], None]


@dataclass
class RunOutcome:
    """What the engine needs back from a runner (stored as the experiment's runs and log)."""

    exit_code: int | None
    wall_s: float
    timed_out: bool
    stopped: bool
    tail: list[str]
    locked_changed: list[str]
    leftover_processes: int = 0
    lost: str | None = None
    hardware: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None  # not run, or its report was forged: the reason in words
    host_trouble: str | None = None  # a declared host failed while it ran (netproxy)


class Runner(Protocol):
    kind: str

    async def open(self) -> list[Slot]:
        """Connects and lists the slots; raises RatchetError with a plain message if it can't."""
        ...

    async def run(
        self, job: Job, slot: Slot, on_line: OnLine, control: RunControl
    ) -> RunOutcome: ...

    async def close(self) -> None: ...


def outcome_of(
    end: dict[str, Any] | None,
    tail: list[str],
    hardware: dict[str, Any],
    *,
    wall: float = 0.0,
    timed_out: bool = False,
    stopped: bool = False,
    lost: str | None = None,
    forged: str | None = None,
) -> RunOutcome:
    """The outcome from the wrapper's end report (wrapper.execute's dict, the same on every
    runner), with what the runner itself saw: the engine's stop, its own timeout, a lost run,
    a forged report. A stop from anyone else is no stop of the engine's: the runner says
    what it was. A run stopped or timed out is judged by that alone."""
    end = end or {}
    timed_out = timed_out or (not stopped and bool(end.get("timed_out")))
    killed = timed_out or stopped
    return RunOutcome(
        exit_code=None if lost else end.get("exit"),
        wall_s=float(end.get("wall", wall)),
        timed_out=timed_out,
        stopped=stopped,
        tail=tail,
        locked_changed=list(end.get("locked_changed", [])),
        leftover_processes=0 if killed else int(end.get("leftovers", 0)),
        lost=None if killed else lost,
        hardware=hardware,
        refused=None if killed else forged or end.get("refused"),
    )
