"""An experiment's runs: once, as often as the judge asks, the baseline's `baseline_runs`, a
run lost to its host measured again (queued by the caller), and the best measured again, beside
a candidate or to catch drift."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, Protocol

from .cases import keep_failing
from .config import Config
from .context import LOG_TAIL_FOR_AGENT
from .errors import RatchetError
from .events import EventBus, ExperimentStarted, OutputLine
from .experiment import Experiment, Pending, Proposal, Status, move
from .history import History
from .inflight import InFlight, Running
from .judge import Decision
from .ledger import CONTROL
from .measure import Attempt, Measurer, failure
from .noise import estimate_noise
from .progress import load_curve, save_curve
from .runners.base import RunControl, Slot
from .runners.processes import LOOP_VARIABLE, SEED_VARIABLE
from .runners.safe_files import UnsafeFile
from .scheduler import PERSON, REMEASURE
from .slots import Slots
from .traces import Traces
from .track import mean
from .verdicts import Verdicts
from .workspace import Workspace

_EVALUATOR_FAILED = (Status.CRASHED, Status.TIMEOUT)  # the evaluator's own crash or timeout
CONTROLS_PER_VERDICT = 2  # control runs one verdict may ask for (each run re-asks)


class Measured(NamedTuple):
    """One run: its metric (None: it failed, `problem` says why) and its seconds."""

    value: float | None
    seconds: float
    problem: str = ""


class Judged(NamedTuple):
    """An experiment measured as often as the judge asked: the seconds its runs took, and the
    work its verdict leaves for the caller to queue (its change to be measured again, at
    `priority`), if any."""

    seconds: float
    again: Pending | None = None
    priority: int = REMEASURE


class RunsNeeds(Protocol):
    """What measuring needs of the engine that drives it."""

    @property
    def stopping(self) -> bool: ...

    def say(self, message: str) -> None: ...


class Runs:
    def __init__(
        self,
        engine: RunsNeeds,
        *,
        config: Config,
        history: History,
        workspace: Workspace,
        measurer: Measurer,
        verdicts: Verdicts,
        slots: Slots,
        bus: EventBus,
        traces: Traces,
        data: Path,
        loop_id: str,
        baseline_ready: asyncio.Event,
        in_flight: InFlight,
    ) -> None:
        self.engine = engine
        self.config = config
        self.history = history
        self.workspace = workspace
        self.measurer = measurer
        self.verdicts = verdicts
        self.slots = slots
        self.bus = bus
        self.traces = traces
        self.data = data  # this loop's logs and curves
        self.logs = data / "logs"
        self.loop_id = loop_id
        self.baseline_ready = baseline_ready  # set but while the baseline is measured
        self.in_flight = in_flight  # each run, while it runs; the experiments cancelled
        self._controls_beside: dict[int, int] = {}  # candidate: control runs beside it so far

    @property
    def editable(self) -> str:
        return self.config.loop.editable

    async def measure_once(
        self,
        exp: Experiment,
        slot: Slot,
        text: str,
        run: int,
        log_path: Path,
        beside: Experiment | None = None,
        purpose: str | None = None,
    ) -> Measured:
        """Runs the experiment once more: the run, what it says of itself, its record, and
        whose failure it is.
        With `beside`, it is a control run of the best (exp) beside that candidate: seeded as
        the candidate's run `run`, never stopped early against its own curve, recorded apart
        from its measurements, and stopped with the candidate."""
        control = RunControl()
        started = time.monotonic()
        try:
            attempt = await self._run(
                exp, slot, control, run=run, text=text, log_path=log_path, beside=beside
            )
        except RatchetError:
            raise  # the user's to fix, for every run alike (a runner not open): said, it ends
        except Exception as error:  # anything else: one run never ends the loop
            if beside is not None:  # a control that could not be measured is only missing
                return Measured(
                    None, time.monotonic() - started, f"{type(error).__name__}: {error}"
                )
            return await self._unmeasured(exp, run, log_path, time.monotonic() - started, error)
        await self._take_in(exp, slot, attempt, beside)
        failed = failure(attempt, control, self.config.loop.timeout_s, exp.rerun_of is None)
        stopped = failed is not None and failed[0] is Status.INTERRUPTED
        if stopped and (beside or exp).id in self.in_flight.cancelled:
            failed = (Status.CANCELLED, f"cancelled: {control.reason}")
        value = None if failed else attempt.measurement.value
        purpose = purpose or (CONTROL if beside else "measure" if run == 0 else "rerun")
        own_run = purpose in ("measure", "rerun")  # a candidate's, not a control or the best's
        await self._record_run(exp, run, value, attempt, purpose, beside, own_run)
        seconds = attempt.run_s
        if failed and failed[0] in _EVALUATOR_FAILED and attempt.in_eval and own_run:
            failed, spent = await self._blame_evaluator(exp, slot, run, failed)
            seconds += spent
        if failed:
            move(exp, *failed)
            return Measured(None, seconds, failed[1])
        return Measured(value, seconds)

    async def _run(
        self,
        exp: Experiment,
        slot: Slot,
        control: RunControl,
        *,
        run: int,
        text: str,
        log_path: Path,
        beside: Experiment | None,
    ) -> Attempt:
        """The run itself, seen by status views and reached by stop while it is in flight."""
        budget = self.config.loop.budget_s
        running = Running(exp.id, exp.description, slot.name, budget, time.monotonic(), control)
        key = (exp.id, run) if beside is None else (beside.id, -1 - run)

        def on_line(line: str, elapsed: float) -> None:
            running.last_line = line
            self.bus.emit(OutputLine(exp.id, line, elapsed))

        with self.in_flight.run(key, running):
            self.bus.emit(ExperimentStarted(exp.id, exp.description, budget, slot.name))
            best = self.history.best
            best_curve = load_curve(self.data / "curves", best.id) if best and not beside else []
            return await self.measurer.run(
                experiment=exp.id,
                commit=exp.commit or "",
                base_commit=exp.base_commit,
                slot=slot,
                text=text,
                log_path=log_path,
                control=control,
                on_line=on_line,
                best_curve=best_curve,
                env={LOOP_VARIABLE: self.loop_id, SEED_VARIABLE: str(run)},
            )

    async def _take_in(
        self, exp: Experiment, slot: Slot, attempt: Attempt, beside: Experiment | None
    ) -> None:
        """What the run says of itself: its hardware, exit code, log and trace tails, the
        latest secondary numbers, and its curve (a candidate's own)."""
        outcome = attempt.outcome
        exp.hardware = dict(outcome.hardware)
        if outcome.hardware:
            self.slots.saw(slot, outcome.hardware)
        exp.exit_code = outcome.exit_code
        exp.log_tail = self.traces.redact("\n".join(outcome.tail[-LOG_TAIL_FOR_AGENT:]))
        exp.secondary = exp.secondary | attempt.measurement.secondary  # the latest run
        exp.trace_tail = attempt.trace_tail
        if attempt.curve and beside is None:
            await asyncio.to_thread(save_curve, self.data / "curves", exp.id, attempt.curve)

    async def _record_run(
        self,
        exp: Experiment,
        run: int,
        value: float | None,
        attempt: Attempt,
        purpose: str,
        beside: Experiment | None,
        own_run: bool,
    ) -> None:
        """The run in the record, with its per-case scores; a candidate's failing cases kept
        for the agent."""
        cases = attempt.cases if value is not None else None
        await asyncio.to_thread(
            self.history.add_run,
            exp.id,
            value,
            attempt.run_s,
            purpose,
            beside.id if beside else None,
            cases.scores if cases else None,
            run,
        )
        if cases and own_run:
            await asyncio.to_thread(
                keep_failing, self.logs / f"{exp.id}.failing.jsonl", cases, self.traces.redact
            )

    async def _unmeasured(
        self, exp: Experiment, run: int, log_path: Path, seconds: float, error: Exception
    ) -> Measured:
        """What went wrong while measuring one run (a file the run left that Ratchet refused
        to read, a disk error, even a bug of ours) becomes this experiment's status and
        reason: voided, since nothing it measured can be trusted. The loop goes on."""
        problem = (
            str(error) if isinstance(error, UnsafeFile) else f"{type(error).__name__}: {error}"
        )
        reason = self.traces.redact(f"voided: Ratchet could not measure this run: {problem}")
        exp.log_tail = reason
        with contextlib.suppress(OSError), log_path.open("a", encoding="utf-8") as log:
            log.write(reason + "\n")
        purpose = "measure" if run == 0 else "rerun"
        await asyncio.to_thread(self.history.add_run, exp.id, None, seconds, purpose)
        move(exp, Status.VOIDED, reason)
        return Measured(None, seconds, reason)

    def _log_path(self, exp: Experiment, run: int, repair: int = 0) -> Path:
        name = f"{exp.id}.repair{repair}" if repair else str(exp.id)
        return self.logs / (f"{name}.log" if run == 0 else f"{name}.run{run + 1}.log")

    async def measure(
        self, exp: Experiment, slot: Slot, text: str, extra: list[Slot], repair: int = 0
    ) -> Judged:
        """Measures as often as the judge asks and sets the final status."""
        if exp.source == "baseline":
            return Judged(await self._measure_baseline(exp, [slot, *extra], text))
        try:
            return await self._measure_candidate(exp, slot, text, repair)
        finally:
            self._controls_beside.pop(exp.id, None)

    async def _measure_candidate(
        self, exp: Experiment, slot: Slot, text: str, repair: int
    ) -> Judged:
        engine = self.engine
        runs: list[float] = []
        total = 0.0
        if repair:
            exp.log_path = str(self._log_path(exp, 0, repair))
        if self.baseline_ready.is_set() and self.verdicts.wants_control():
            total += (await self.control(exp, slot, 0))[1]
        while True:
            path = self._log_path(exp, len(runs), repair)
            value, seconds, problem = await self.measure_once(exp, slot, text, len(runs), path)
            total += seconds
            if value is None:
                if runs:  # a re-run failed: the earlier runs do not stand alone
                    exp.reason = f"{problem} (in run {len(runs) + 1})"
                exp.metric = None
                if exp.status is Status.LOST:
                    return Judged(total, await self._lost_again(exp, text), PERSON)
                return Judged(total)
            runs.append(value)
            exp.metric = mean(runs)
            await self.baseline_ready.wait()  # set when the baseline ends, however it ends
            best = self.history.best
            if best is None or best.metric is None:
                move(exp, Status.INTERRUPTED, "interrupted: the baseline failed")
                return Judged(total)
            decision, again, seconds = await self._decide(exp, runs, slot)
            total += seconds
            if decision.action != "rerun" or engine.stopping:
                if engine.stopping and decision.action == "rerun":
                    move(exp, Status.INTERRUPTED, "interrupted before its re-runs")
                else:
                    exp.effect, exp.resolvable = decision.effect, decision.resolvable
                    move(exp, Status.KEPT if decision.keep else Status.DISCARDED, decision.reason)
                return Judged(total, again)  # the judge asks for one only with a discard

    async def _decide(
        self, exp: Experiment, runs: list[float], slot: Slot
    ) -> tuple[Decision, Pending | None, float]:
        """The verdict on these runs; a control run of the best first where the judge asks
        for one (at most CONTROLS_PER_VERDICT; a control that fails is not asked for again).
        Returns the decision, what to queue, and the seconds spent on controls."""
        seconds, allowed = 0.0, CONTROLS_PER_VERDICT
        while True:
            best = self.history.best
            assert best is not None
            decision, again = await asyncio.to_thread(
                self.verdicts.decide, exp, runs, best, self.history.baseline, allowed > 0
            )
            if decision.action != "control":
                return decision, again, seconds
            allowed -= 1
            value, spent = await self.control(exp, slot, len(runs) - 1)
            seconds += spent
            if value is None:
                allowed = 0

    async def _blame_evaluator(
        self, exp: Experiment, slot: Slot, seed: int, failed: tuple[Status, str]
    ) -> tuple[tuple[Status, str], float]:
        """The locked evaluator failed on this candidate: the best is run beside it on the
        same slot. If the evaluator fails there too, the harness is broken, not the edit: the
        run is no evidence, so it ends lost (never a crash, never handed to the repair agent)
        and is queued to be measured again, once. Returns the failure to record and the
        seconds the control took."""
        best = self.history.best
        if best is None or best.id == exp.id or not self.baseline_ready.is_set():
            return failed, 0.0
        value, seconds = await self.control(exp, slot, seed)
        if value is not None:  # the best evaluates: the failure is this edit's
            return failed, seconds
        self.engine.say(
            f"the evaluator fails on the best (exp {best.id}) too: exp {exp.id} is not charged "
            "for it; check `[metric] eval` and what it reads"
        )
        return (
            Status.LOST,
            f"lost: the evaluator failed on the best (exp {best.id}) too, so this run is not "
            f"evidence against the edit ({failed[1]})",
        ), seconds

    async def control(
        self, beside: Experiment, slot: Slot, seed: int
    ) -> tuple[float | None, float]:
        """The best measured once on the candidate's slot, beside it (a control run, seeded
        as the candidate's run `seed`). Its track reads the control, and its metric becomes
        the mean of every run of it, read back for luck (Verdicts.measured_again). Returns the
        value (None: it failed, and is only said) and the seconds."""
        engine = self.engine
        best = self.history.best
        if best is None or best.commit is None or best.metric is None or engine.stopping:
            return None, 0.0
        text = await asyncio.to_thread(self.workspace.read, best.commit, self.editable)
        probe = replace(best, status=Status.RUNNING)
        count = len(self.history.series.get(best.id, []))
        path = self.logs / f"{best.id}.control{count + 1}.log"
        value, seconds, problem = await self.measure_once(
            probe, slot, text, seed, path, beside=beside
        )
        if value is None:
            engine.say(
                f"a control run of the best (exp {best.id}) beside exp {beside.id} "
                f"failed: {problem}"
            )
            return None, seconds
        await asyncio.to_thread(self.verdicts.measured_again, best.id)
        # What the person sees beside the candidate: the mean of the controls run beside it.
        count = self._controls_beside.get(beside.id, 0)
        beside.control = (value + count * (beside.control or 0.0)) / (count + 1)
        self._controls_beside[beside.id] = count + 1
        return value, seconds

    async def _measure_baseline(self, exp: Experiment, slots: list[Slot], text: str) -> float:
        """`baseline_runs` runs, as many at once as there are slots for it."""
        wanted = self.config.judge.baseline_runs
        runs: list[float] = []
        total = 0.0
        while len(runs) < wanted:
            batch = slots[: wanted - len(runs)]
            results = await asyncio.gather(
                *(
                    self.measure_once(
                        exp, slot, text, len(runs) + i, self._log_path(exp, len(runs) + i)
                    )
                    for i, slot in enumerate(batch)
                )
            )
            for value, seconds, problem in results:
                total = max(total, seconds) if len(batch) > 1 else total + seconds
                if value is None:
                    exp.metric = None
                    if runs or len(batch) > 1:
                        exp.reason = f"{problem} (a baseline run)"
                    return total
                runs.append(value)
        exp.metric = mean(runs)
        noise = estimate_noise([runs])
        reason = f"baseline: {self.config.metric.name} {exp.metric:.6g}" + (
            f" over {len(runs)} runs, noise {noise:.3g}" if noise is not None else ""
        )
        move(exp, Status.KEPT, reason)
        return total

    async def _lost_again(self, exp: Experiment, text: str) -> Pending | None:
        """A run lost to its host or connection is measured again, once: what to queue."""
        if exp.rerun_of is not None or exp.commit is None:
            return None
        base_text = await asyncio.to_thread(self.workspace.read, exp.base_commit, self.editable)
        edits = {self.editable: text}
        proposal = Proposal(edits, exp.description, source=exp.source, rerun_of=exp.id)
        exp.reason += "; queued to run again"
        return Pending(proposal, exp.base_commit, base_text)

    async def remeasure_best(self, slot: Slot) -> None:
        """The best measured once more, to catch drift (`remeasure_every`)."""
        engine = self.engine
        best = self.history.best
        if best is None or best.commit is None or best.metric is None:
            return
        runs = list(self.history.runs.get(best.id, [best.metric]))
        text = await asyncio.to_thread(self.workspace.read, best.commit, self.editable)
        probe = replace(best, status=Status.RUNNING)
        path = self._log_path(best, len(runs))
        value, _, problem = await self.measure_once(
            probe, slot, text, len(runs), path, purpose="remeasure"
        )
        if value is None:
            engine.say(f"re-measuring the best (exp {best.id}) failed: {problem}")
            return
        noise = self.history.noise()
        before = mean(runs)
        await asyncio.to_thread(self.verdicts.measured_again, best.id)
        if noise and abs(value - before) > 3 * noise:
            engine.say(
                f"drift: the best (exp {best.id}) measured {value:.6g} now against "
                f"{before:.6g} before ({abs(value - before) / noise:.1f} x noise); "
                "the machine or the data may have changed"
            )
