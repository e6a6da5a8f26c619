"""One run of one experiment and what it measured: the command in its worktree, then the
optional locked evaluator and holdout, early abort on a losing curve, and — when something
went wrong — the status and the reason in words."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import Config
from .experiment import Measurement, Status
from .metric import MetricReader
from .progress import AbortWatch, Curve
from .runners.base import Job, RunControl, Runner, RunOutcome, Slot
from .traces import run_trace_tail, secret_variables
from .workspace import Workspace


@dataclass
class Attempt:
    outcome: RunOutcome
    measurement: Measurement
    run_s: float
    curve: Curve = field(default_factory=list)
    holdout: float | None = None
    trace_tail: str = ""


def ran_clean(outcome: RunOutcome) -> bool:
    return (
        outcome.exit_code == 0
        and not outcome.timed_out
        and not outcome.stopped
        and not outcome.lost
    )


def failure(attempt: Attempt, control: RunControl, timeout_s: float) -> tuple[Status, str] | None:
    """Why this run gives no metric to judge, or None when it does."""
    outcome, measurement = attempt.outcome, attempt.measurement
    last = outcome.tail[-1] if outcome.tail else ""
    if outcome.stopped and control.aborted:
        return Status.ABORTED, control.reason
    if outcome.stopped:
        return Status.INTERRUPTED, f"interrupted: {control.reason or 'stopped before it finished'}"
    if outcome.lost:
        return Status.LOST, f"lost: {outcome.lost}"
    if outcome.timed_out:
        return Status.TIMEOUT, (
            f"timeout: killed after {timeout_s:g}s with its children; if runs need longer "
            "(start-up, evaluation), raise `timeout` under [loop] in ratchet.toml"
        )
    if outcome.locked_changed:
        return Status.VOIDED, "voided: the run changed locked files: " + ", ".join(
            outcome.locked_changed
        )
    if outcome.leftover_processes:
        return Status.VOIDED, (
            f"voided: it left {outcome.leftover_processes} process(es) "
            "running after it exited (killed)"
        )
    if outcome.exit_code != 0:
        return Status.CRASHED, f"crashed: exit code {outcome.exit_code}" + (
            f": {last}" if last else ""
        )
    if measurement.value is None:
        return Status.CRASHED, f"crashed: {measurement.problem}"
    return None


OnLine = Callable[[str, float], None]  # a line of output, seconds since the run started


class Measurer:
    def __init__(self, config: Config, runner: Runner, workspace: Workspace) -> None:
        self.config = config
        self.runner = runner
        self.workspace = workspace

    async def run(
        self,
        *,
        experiment: int,
        commit: str,
        base_commit: str,
        slot: Slot,
        text: str,
        log_path: Path,
        control: RunControl,
        on_line: OnLine,
        best_curve: Curve,
        env: dict[str, str] | None = None,
    ) -> Attempt:
        loop, metric = self.config.loop, self.config.metric
        worktree = await asyncio.to_thread(self.workspace.checkout, slot.name, commit)
        reader = MetricReader(metric)
        watch = AbortWatch(metric, best_curve) if metric.progress else None
        curve: Curve = []
        started = time.monotonic()
        use_eval = metric.eval is not None

        def command_line(line: str) -> None:
            elapsed = time.monotonic() - started
            if not use_eval:
                reader.feed(line)
            if watch is not None and (reason := watch.feed(line, elapsed / loop.budget_s)):
                control.stop(reason, aborted=True)
            on_line(line, elapsed)

        job = Job(
            experiment=experiment,
            command=loop.command,
            worktree=worktree,
            log_path=log_path,
            budget_s=loop.budget_s,
            timeout_s=loop.timeout_s,
            locked=loop.locked,
            editable=loop.editable,
            editable_text=text,
            env=dict(env or {}),
            hidden_env=tuple(secret_variables(self.config)),
        )
        log_path.unlink(missing_ok=True)
        outcome = await self.runner.run(job, slot, command_line, control)
        if watch is not None:
            curve = watch.reader.points
        run_s = outcome.wall_s
        holdout = None
        if use_eval and ran_clean(outcome) and not outcome.locked_changed:
            # The evaluator runs in a fresh process from the base commit's locked files, so
            # nothing the edited code did to them can reach the score.
            await asyncio.to_thread(
                self.workspace.restore, worktree, base_commit, list(loop.locked)
            )

            def eval_line(line: str) -> None:
                reader.feed(line)
                on_line(f"[eval] {line}", time.monotonic() - started)

            evaluated = await self.runner.run(
                replace(job, command=metric.eval or "", log_path=log_path.with_suffix(".eval.log")),
                slot,
                eval_line,
                control,
            )
            run_s += evaluated.wall_s
            if not ran_clean(evaluated) or evaluated.locked_changed:
                outcome = replace(
                    evaluated,
                    tail=[f"[eval] {line}" for line in evaluated.tail],
                    hardware=outcome.hardware,
                )
        trace_tail = await asyncio.to_thread(run_trace_tail, worktree, metric.trace)
        if metric.holdout and ran_clean(outcome) and reader.result().value is not None:
            holdout = await self._holdout(job, slot, control, worktree, base_commit)
        return Attempt(outcome, reader.result(), run_s, curve, holdout, trace_tail)

    async def _holdout(
        self, job: Job, slot: Slot, control: RunControl, worktree: Path, base_commit: str
    ) -> float | None:
        """The holdout score: recorded, never shown to the agent."""
        await asyncio.to_thread(
            self.workspace.restore, worktree, base_commit, list(self.config.loop.locked)
        )
        reader = MetricReader(self.config.metric)
        outcome = await self.runner.run(
            replace(
                job,
                command=self.config.metric.holdout or "",
                log_path=job.log_path.with_suffix(".holdout.log"),
            ),
            slot,
            reader.feed,
            control,
        )
        return reader.result().value if ran_clean(outcome) else None
