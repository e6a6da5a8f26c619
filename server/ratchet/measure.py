"""One run of one experiment and what it measured: the command in its worktree, then the
optional locked evaluator, early abort on a losing curve, and — when something went wrong —
the status and the reason in words. The holdout (`[metric] holdout`) is measured apart, on a
new best only, in a clean room of its own: the one place its `holdout_only` files exist."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .cases import CaseReader, Cases, read_cases_file
from .cleanroom import build_clean_room, remove_eval_only
from .config import Config
from .evaluate_call import (
    MARK,
    EvaluateReader,
    clear_metric_files,
    evaluate_command,
    new_token,
    read_metric_file,
)
from .experiment import Measurement, Status
from .metric import MetricReader
from .progress import AbortWatch, Curve
from .runners.base import Isolation, Job, RunControl, Runner, RunOutcome, Slot
from .runners.host_private import repository_folders
from .runners.safe_files import remove_special_files
from .traces import run_trace_tail, secret_variables, secrets_for
from .workspace import RATCHET_DIR, Workspace


@dataclass
class Attempt:
    outcome: RunOutcome
    measurement: Measurement
    run_s: float
    curve: Curve = field(default_factory=list)
    trace_tail: str = ""
    budget_s: float = 0.0  # the command's budget, and the most it may take to be kept
    limit_s: float = float("inf")
    command_s: float = 0.0  # the command's own wall time (the evaluator not counted)
    in_eval: bool = False  # the failure, if any, is the evaluator's
    evaluated: bool = False  # the evaluator ran this time (its folder holds this run's trace)
    room: Path | None = None  # where the evaluator ran
    case_lines: CaseReader = field(default_factory=CaseReader)  # case lines on the output
    cases: Cases | None = None  # this run's per-case scores (cases.py), when it reported them


def ran_clean(outcome: RunOutcome) -> bool:
    return (
        outcome.exit_code == 0
        and not outcome.timed_out
        and not outcome.stopped
        and not outcome.lost
    )


def failure(
    attempt: Attempt, control: RunControl, timeout_s: float, excused: bool = True
) -> tuple[Status, str] | None:
    """Why this run gives no metric to judge, or None when it does. A crash, timeout or
    overrun while a declared host failed it (an outage, throttling) may be the host's doing:
    `excused` (an edit's first measurement), it is lost (measured again once), never charged
    to the edit; on the measurement again it is the edit's, so a failure the edit can cause
    (a request its host answers 500) buys it one draw, not as many as it likes."""
    found = _failure(attempt, control, timeout_s)
    trouble = attempt.outcome.host_trouble
    if found is None or not trouble or found[0] not in _MAYBE_THE_HOSTS:
        return found
    if excused:
        return Status.LOST, f"lost: {trouble} while it ran, so it is no evidence against the edit"
    return found[0], f"{found[1]} ({trouble} on its second measurement too: charged to it)"


_MAYBE_THE_HOSTS = (Status.CRASHED, Status.TIMEOUT, Status.OVER_BUDGET)


def _failure(attempt: Attempt, control: RunControl, timeout_s: float) -> tuple[Status, str] | None:
    outcome, measurement = attempt.outcome, attempt.measurement
    last = outcome.tail[-1] if outcome.tail else ""
    if outcome.stopped and control.aborted:
        return Status.ABORTED, control.reason
    if outcome.stopped:
        return Status.INTERRUPTED, f"interrupted: {control.reason or 'stopped before it finished'}"
    if outcome.lost:
        return Status.LOST, f"lost: {outcome.lost}"
    if outcome.refused:
        return Status.VOIDED, f"voided: {outcome.refused}"
    if outcome.timed_out and attempt.in_eval:
        return Status.TIMEOUT, (
            f"timeout: the evaluator ran past its limit ({timeout_s:g}s); raise "
            "`eval_timeout` under [metric] in ratchet.toml if it needs longer"
        )
    if outcome.timed_out and timeout_s <= attempt.limit_s:
        return Status.TIMEOUT, (
            f"timeout: killed after {timeout_s:g}s with its children; if runs need longer "
            "(start-up, evaluation), raise `timeout` under [loop] in ratchet.toml"
        )
    if outcome.timed_out or attempt.command_s > attempt.limit_s:
        return Status.OVER_BUDGET, (
            f"over budget: the command ran {attempt.command_s:.1f}s, past its budget of "
            f"{attempt.budget_s:g}s plus {attempt.limit_s - attempt.budget_s:g}s of grace; "
            "never kept; if start-up, warm-up or evaluation need longer, raise `grace` under "
            "[loop] in ratchet.toml"
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
    """Runs one experiment: the command in its run folder, then the evaluator in a clean room.

    `expected_locked` (set once by the engine, from the loop's start commit) is what every
    run's locked files are checked against, before and after; None: each run's own before."""

    def __init__(self, config: Config, runner: Runner, workspace: Workspace) -> None:
        self.config = config
        self.runner = runner
        self.workspace = workspace
        self.expected_locked: dict[str, str] | None = None

    def _job(
        self, experiment: int, worktree: Path, log_path: Path, text: str, env: dict[str, str]
    ) -> Job:
        loop, metric = self.config.loop, self.config.metric
        root = self.config.root.resolve()
        private = (*metric.eval_only, *metric.holdout_only)  # never in the command's folder
        # A linked worktree's main checkout too: other branches, untracked labels.
        folders = (self.workspace.top, root, *repository_folders(root))
        hide = tuple(dict.fromkeys(str(p) for p in folders))
        return Job(
            experiment=experiment,
            command=loop.command,
            worktree=worktree,
            log_path=log_path,
            budget_s=loop.budget_s,
            timeout_s=loop.deadline_s,
            locked=tuple(p for p in loop.locked if p not in private),
            editable=loop.editable,
            editable_text=text,
            env=env,
            hidden_env=tuple(secret_variables(self.config)),
            isolation=Isolation(self.config.sandbox, hide),
            expected_locked=self.expected_locked,
            secrets=tuple(secrets_for(self.config)),
            drop=private,
        )

    def _judging_job(
        self, job: Job, command: str, room: Path, log_suffix: str, holdout: bool = False
    ) -> Job:
        """The evaluator or the holdout: `command` in the clean room `room`, the locked files
        it holds checked, the artefacts carried over (which makes it a judging job: the
        `[sandbox] write` folders are read-only to it). Only the holdout's room holds the
        `holdout_only` files."""
        metric = self.config.metric
        hidden = () if holdout else metric.holdout_only
        return replace(
            job,
            command=command,
            worktree=room,
            log_path=job.log_path.with_suffix(log_suffix),
            timeout_s=metric.eval_timeout_s or self.config.loop.budget_s,
            locked=tuple(p for p in self.config.loop.locked if p not in hidden),
            consumable=(*metric.eval_only, *metric.holdout_only) if holdout else metric.eval_only,
            carry=metric.artefacts,
            drop=hidden,
        )

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
        use_eval = metric.judged_apart
        worktree = await self._prepare(slot, commit)
        # `evaluate`: only the driver's line with this token holds the metric (evaluate_call)
        token = new_token() if metric.evaluate else ""
        reader = EvaluateReader(metric, token) if metric.evaluate else MetricReader(metric)
        watch = AbortWatch(metric, best_curve) if metric.progress else None
        started = time.monotonic()
        case_lines = CaseReader()  # read from the command's output only without an evaluator
        command_cases = not use_eval and not metric.cases

        def command_line(line: str) -> None:
            elapsed = time.monotonic() - started
            if not use_eval and not metric.file:
                reader.feed(line)
            if command_cases:
                case_lines.feed(line)
            if watch is not None and (reason := watch.feed(line, elapsed / loop.budget_s)):
                control.stop(reason, aborted=True)
            on_line(line, elapsed)

        job = self._job(experiment, worktree, log_path, text, dict(env or {}))
        log_path.unlink(missing_ok=True)
        outcome = await self.runner.run(job, slot, command_line, control)
        curve = watch.reader.points if watch else []
        attempt = self._attempt(outcome, reader.result(), curve, case_lines)
        clean = ran_clean(outcome) and not outcome.locked_changed and not outcome.refused
        if use_eval and clean and attempt.command_s <= attempt.limit_s:

            def eval_line(line: str) -> None:
                on_line(f"[eval] {line}", time.monotonic() - started)

            await self._evaluate(
                attempt, job, slot, commit, base_commit, reader, control, eval_line, token
            )
        attempt.measurement = reader.result()
        if clean:
            await self._read_results(attempt, worktree)
        attempt.trace_tail = await self._trace_tail(attempt, slot, worktree)
        return attempt

    def _attempt(
        self, outcome: RunOutcome, measurement: Measurement, curve: Curve, cases: CaseReader
    ) -> Attempt:
        loop = self.config.loop
        return Attempt(
            outcome,
            measurement,
            outcome.wall_s,
            curve,
            budget_s=loop.budget_s,
            limit_s=loop.budget_s + loop.grace,
            command_s=outcome.wall_s,
            case_lines=cases,
        )

    async def _prepare(self, slot: Slot, commit: str) -> Path:
        """The slot's worktree at `commit`, without what an earlier run left (FIFOs), the
        evaluator's own files, nor, without an evaluator, metric files the command writes."""
        metric = self.config.metric
        worktree = await asyncio.to_thread(self.workspace.checkout, slot.name, commit)
        await asyncio.to_thread(remove_special_files, worktree)  # an earlier run's FIFOs
        await asyncio.to_thread(
            remove_eval_only, worktree, (*metric.eval_only, *metric.holdout_only)
        )
        if metric.file and not metric.judged_apart:
            await asyncio.to_thread(clear_metric_files, worktree, metric.file)
        if metric.cases and not metric.judged_apart:
            await asyncio.to_thread(clear_metric_files, worktree, metric.cases)
        return worktree

    async def _read_results(self, attempt: Attempt, worktree: Path) -> None:
        """A clean run's metric file, where the evaluator ran (or the command, without one),
        and its cases."""
        metric = self.config.metric
        if metric.file:
            folder = attempt.room if metric.judged_apart else worktree
            if folder is not None:
                attempt.measurement = await asyncio.to_thread(read_metric_file, metric, folder)
        await self._read_cases(attempt, worktree)

    async def _trace_tail(self, attempt: Attempt, slot: Slot, worktree: Path) -> str:
        """The evaluator's trace, else the command's (shown to the agent only, never scored).
        Only this run's: the clean room of an evaluator that did not run now is another's."""
        folders = [self._eval_folder(slot), worktree] if attempt.evaluated else [worktree]
        tail = ""
        for folder in folders:
            tail = await asyncio.to_thread(run_trace_tail, folder, self.config.metric.trace)
            if tail:
                break
        return tail

    async def _read_cases(self, attempt: Attempt, worktree: Path) -> None:
        """The run's cases: from `[metric] cases` in the folder the evaluator (or the command)
        ran in, else from the output the metric was read from. A malformed case line fails the
        run; without a metric line the metric is the cases' mean."""
        metric = self.config.metric
        lines = attempt.case_lines
        if metric.cases:
            folder = attempt.room if metric.judged_apart else worktree
            if folder is None:
                return
            lines = await asyncio.to_thread(read_cases_file, folder, metric.cases)
        measurement = attempt.measurement
        if lines.problem:
            attempt.measurement = replace(
                measurement, value=None, problem=f"cases: {lines.problem}"
            )
            return
        attempt.cases = lines.result()
        if attempt.cases and measurement.value is None and not (metric.file or metric.evaluate):
            attempt.measurement = replace(measurement, value=attempt.cases.mean, problem=None)

    def _eval_folder(self, slot: Slot) -> Path:
        if self.runner.kind != "local":
            return self.workspace.worktrees / slot.name / self.workspace.prefix
        return self._cleanroom(slot) / self.workspace.prefix

    async def _room(
        self,
        job: Job,
        slot: Slot,
        commit: str,
        base_commit: str,
        on_line: Callable[[str], None],
        holdout: bool = False,
    ) -> Path:
        """Where the evaluator (or the holdout) runs. Locally: a fresh clean room, the
        holdout's apart, and only the holdout's with the `holdout_only` files. A remote runner
        builds its own copy on the host (less the job's `drop`); here the base commit's locked
        files are put back (Ray ships this folder), the holdout's only for the holdout (the
        next checkout removes them again)."""
        metric = self.config.metric
        if self.runner.kind != "local":
            locked = self.config.loop.locked
            restored = (
                list(dict.fromkeys([*locked, *metric.holdout_only]))
                if holdout
                else [p for p in locked if p not in metric.holdout_only]
            )
            await asyncio.to_thread(self.workspace.restore, job.worktree, base_commit, restored)
            return job.worktree
        folder = self._holdout_folder(slot) if holdout else self._cleanroom(slot)
        room, notes = await asyncio.to_thread(
            build_clean_room, self.workspace, commit, folder, job.worktree, metric.artefacts
        )
        if not holdout:
            await asyncio.to_thread(remove_eval_only, room, metric.holdout_only)
        for note in notes:
            on_line(note)
        return room

    def _cleanroom(self, slot: Slot) -> Path:
        return self.config.root / RATCHET_DIR / "cleanroom" / slot.name

    def _holdout_folder(self, slot: Slot) -> Path:
        return self.config.root / RATCHET_DIR / "holdout" / slot.name

    async def _evaluate(
        self,
        attempt: Attempt,
        job: Job,
        slot: Slot,
        commit: str,
        base_commit: str,
        reader: MetricReader | EvaluateReader,
        control: RunControl,
        on_line: Callable[[str], None],
        token: str = "",
    ) -> None:
        """The locked evaluator, in a fresh process and folder: its output holds the metric
        (or, with `evaluate`, the driver's line with `token`; with `file`, the file)."""
        metric = self.config.metric
        notes: list[str] = []  # artefacts left behind: the likely cause if the evaluator fails

        def note(line: str) -> None:
            notes.append(line)
            on_line(line)

        room = await self._room(job, slot, commit, base_commit, note)
        attempt.room = room
        for written in (metric.file, metric.cases):
            if written:
                await asyncio.to_thread(clear_metric_files, room, written)

        def eval_line(line: str) -> None:
            if not metric.file:
                reader.feed(line)
            if metric.eval and not metric.cases:
                attempt.case_lines.feed(line)
            if not (metric.evaluate and line.startswith(f"{MARK} ")):
                on_line(line)  # the driver's answer line is the log's, not the live view's

        command = metric.eval or ""
        if metric.evaluate:
            limit = metric.eval_timeout_s or self.config.loop.budget_s
            command = evaluate_command(metric, self.config.loop.editable, token, limit)
        eval_job = self._judging_job(job, command, room, ".eval.log")
        evaluated = await self.runner.run(eval_job, slot, eval_line, control)
        attempt.evaluated = True
        attempt.run_s += evaluated.wall_s
        # An evaluator that leaves a process behind is voided like a command that does: what
        # it left could have written the metric after the evaluator's last line.
        if (
            not ran_clean(evaluated)
            or evaluated.locked_changed
            or evaluated.refused
            or evaluated.leftover_processes
        ):
            attempt.in_eval = True
            attempt.outcome = replace(
                evaluated,
                tail=[f"[eval] {line}" for line in [*notes, *evaluated.tail]],
                hardware=attempt.outcome.hardware,
            )

    async def holdout(
        self,
        *,
        experiment: int,
        commit: str,
        slot: Slot,
        text: str,
        log_path: Path,
        control: RunControl,
        env: dict[str, str] | None = None,
    ) -> float | None:
        """The holdout's number for `commit` (a new best), run after its metric: the locked
        `[metric] holdout` command in a clean room of its own, the one place that holds the
        `holdout_only` files (removed again once it has run), with the artefacts of the
        command's last run in `slot`. Its output goes to its own log and nowhere else (no
        event, no trace, no tail): a person reads the number; no agent does. None when it
        failed or printed no number."""
        metric = self.config.metric
        worktree = self.workspace.worktrees / slot.name / self.workspace.prefix
        job = self._job(experiment, worktree, log_path, text, dict(env or {}))
        room = await self._room(job, slot, commit, commit, lambda line: None, holdout=True)
        reader = MetricReader(metric)
        holdout = self._judging_job(job, metric.holdout or "", room, ".holdout.log", holdout=True)
        try:
            outcome = await self.runner.run(holdout, slot, reader.feed, control)
        finally:
            if self.runner.kind == "local":
                await asyncio.to_thread(shutil.rmtree, self._holdout_folder(slot), True)
        clean = ran_clean(outcome) and not outcome.refused and not outcome.leftover_processes
        return reader.result().value if clean and not outcome.locked_changed else None
