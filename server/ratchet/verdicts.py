"""What a measured experiment becomes: kept, discarded, or queued to be measured again.

The judge (judge.py) weighs numbers; this module knows the loop's situation around them: the
best may have moved on while the experiment ran (its change is then merged onto the new best
and measured again), it may have run on other hardware than the baseline (measured again on
the baseline's), it may be a revert a person asked for, or a gain too large to trust unseen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from .cases import NAMED, Paired, changed, paired, protected
from .config import Config
from .experiment import Experiment, Pending, Proposal, Status
from .hardware import same_hardware
from .history import History
from .judge import Decision, Judge
from .track import Track, mean
from .workspace import Workspace


@dataclass
class _Tracked:
    """The best's track, and how many of its runs it has read."""

    best: int
    read: int
    track: Track


@dataclass
class Verdicts:
    config: Config
    judge: Judge
    history: History  # the loop's record in memory: no ledger read per verdict
    workspace: Workspace
    _tracked: _Tracked | None = field(default=None, init=False, repr=False)
    # Verdicts and controls of several slots read the track from worker threads at once: each
    # new run is fed to it once.
    _feeding: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def reconfigure(self, config: Config, judge: Judge) -> None:
        """A changed ratchet.toml: its judge from now on, the best's track built again."""
        self.config, self.judge, self._tracked = config, judge, None

    def noise(self) -> float | None:
        """The run-to-run noise of the metric, from every experiment measured more than once."""
        return self.history.noise()

    def track(self, best_id: int | None = None) -> Track | None:
        """With controls, the best's level through time (judge.Track): built once per best,
        then fed its new runs as they come (O(1) per run); a new best inherits the drift the
        track had learned. None without controls, noise or runs, or if `best_id` is given and
        is no longer the best."""
        best, noise = self.history.best, self.noise()
        if not self.judge.controls or best is None or not noise:
            return None
        if best_id is not None and best.id != best_id:
            return None
        series = self.history.series.get(best.id)
        if not series:
            return None
        with self._feeding:
            read = len(series)  # a run recorded meanwhile is fed next time
            tracked = self._tracked
            if tracked is None or tracked.best != best.id:
                lucky = best.source not in ("baseline", "revert")  # kept because it read well
                parent = tracked.track if tracked is not None else None
                track = self.judge.track(series[:read], noise, lucky, parent)
                self._tracked = tracked = _Tracked(best.id, read, track)
            for run in series[tracked.read : read]:
                if run.again:
                    tracked.track.add(run, noise)
            tracked.read = read
            return tracked.track

    def measured_again(self, best_id: int) -> None:
        """The best was measured again (a control, a re-measure): its metric becomes the mean
        of every run of it (with controls, Track.recorded: the runs it was kept on were chosen
        for reading well, the winner's curse, so they are read back for their luck; a run since
        was not chosen, so each one brings the reported number toward its truth)."""
        history = self.history
        series = history.series.get(best_id, [])
        best = history.by_id.get(best_id)
        if not series or best is None or best.status is not Status.KEPT:
            return
        current = history.best is not None and history.best.id == best_id
        if self.judge.controls and not current:
            return  # a new best was kept while it ran: it keeps the level it had as the best
        track = self.track(best_id) if current else None
        if track is None and self.judge.controls and self.noise():
            return  # ... kept after the check above (another slot's verdict)
        value = track.recorded if track is not None else mean([run.value for run in series])
        history.set_metric(best_id, value)

    def wants_control(self) -> bool:
        """Whether the best should be measured beside the next candidate before its first run."""
        return self.judge.wants_control(self.track(), self.history.clock + 1, self.noise())

    def needs_confirmation(self, best: Experiment, runs: list[float] | None = None) -> bool:
        """Whether the best should be measured once more before candidates are judged against
        it: with the sequential rule, a best kept on fewer than `confirm_runs` runs. `runs` are
        its runs if the caller has them (else the history's)."""
        if best.metric is None or best.commit is None or self.judge.rule != "sequential":
            return False
        # Failed runs count too, so a best whose re-runs crash is not measured forever.
        attempts = self.history.attempts.get(best.id, 0)
        if attempts >= self.judge.confirm_runs:
            return False
        if runs is None:
            runs = self.history.runs.get(best.id, [best.metric])
        return self.judge.needs_confirmation(runs, self.noise())

    def decide(
        self,
        exp: Experiment,
        runs: list[float],
        best: Experiment,
        baseline: Experiment | None,
        control: bool = True,
    ) -> tuple[Decision, Pending | None]:
        """The decision for these runs, and what to queue to be measured again, if anything;
        with controls, "control" asks for the best to be measured beside it first (unless
        `control` is False: a control failed, and what was measured decides)."""
        assert best.metric is not None
        groups = self.history.runs
        noise = self.history.noise()
        if not self.same_editable(exp.base_commit, best.commit or exp.base_commit):
            again = self.merged_onto_best(exp)
            if exp.source == "revert" and again:
                return Decision(
                    "discard",
                    f"the best moved on to exp {best.id} while the revert ran: queued again on it",
                ), again
            return self._stale(exp, runs, best, groups, noise, again)
        if exp.source == "revert":
            return Decision(
                "keep", f"kept: a revert asked for by the user ({mean(runs):.6g})"
            ), None
        # By id: a control or holdout beside another slot replaces the best's row in memory.
        current = self.history.best
        track = self.track() if current is not None and best.id == current.id else None
        at = [run.at for run in self.history.series.get(exp.id, [])][-len(runs) :]
        decision = self.judge.assess(
            runs, groups.get(best.id) or [best.metric], noise, track, at, control
        )
        if decision.action == "control":
            return decision, None
        decision = self._case_by_case(exp, best, decision, control)
        if decision.keep and (broken := self._broken_guard(exp)):
            return Decision(
                "discard", f"discarded: {broken}; its metric alone: {decision.reason}"
            ), None
        if decision.keep and (held := self.judge.needs_review(mean(runs), best.metric)):
            return Decision("discard", held), None
        if decision.keep and baseline is not None:
            elsewhere = self._on_other_hardware(exp, baseline)
            if elsewhere is not None:
                return elsewhere
        return decision, None

    def _case_by_case(
        self, exp: Experiment, best: Experiment, decision: Decision, control: bool = True
    ) -> Decision:
        """The mean's verdict, checked case by case where the candidate and the best were both
        scored on the same cases (cases.py): a protected case whose score fell discards it;
        convincing paired evidence (cases.Paired) keeps one the mean would measure
        again; the reason says how many cases it fixed and broke. With same-round controls a
        paired keep stands on the controls beside the candidate only: evidence that convinces
        only against the best's earlier runs asks for a control beside its last run first."""
        ledger, tag = self.history.ledger, self.history.tag
        own = ledger.case_runs(tag, exp.id)
        if not own:
            return decision
        theirs = ledger.case_runs(tag, best.id, beside=exp.id)
        if not theirs:
            return decision
        evidence = paired(exp.id, own, theirs)
        broken = evidence.broken if evidence else changed(exp.id, own, theirs)[1]
        rules = self.config.metric.protect
        names = ledger.case_names(tag, broken) if rules else {}
        if hit := protected(broken, names, rules):
            shown = ", ".join(hit[:NAMED]) + (" ..." if len(hit) > NAMED else "")
            return replace(
                decision,
                action="discard",
                reason=f"discarded: it broke protected case{'s' if len(hit) > 1 else ''} "
                f"{shown} (its score fell from the best's); its mean: {decision.reason}",
            )
        if evidence is None:
            return decision
        gaining = decision.effect is not None and decision.effect > 0
        if (
            decision.action == "rerun"
            and gaining
            and evidence.convincing
            and not self.judge.lower_is_better  # a case's score is higher-better
        ):
            if not self.judge.controls:
                return self._paired_keep(decision, evidence)
            same = paired(exp.id, own, theirs, same_round=True)
            if same is not None and same.convincing:
                return self._paired_keep(decision, same)
            beside = {run.seed for run in theirs if run.beside == exp.id}
            if control and own[-1].seed not in beside:
                return replace(
                    decision,
                    action="control",
                    reason=f"{decision.reason}; convincing case by case only against the "
                    "best's earlier runs: measuring the best beside it",
                )
        words = evidence.words(ledger.case_names(tag, evidence.broken[:NAMED]))
        return replace(decision, reason=f"{decision.reason}; {words}")

    def _paired_keep(self, decision: Decision, evidence: Paired) -> Decision:
        history = self.history
        words = evidence.words(history.ledger.case_names(history.tag, evidence.broken[:NAMED]))
        return replace(decision, action="keep", reason=f"kept {words}; its mean: {decision.reason}")

    def _broken_guard(self, exp: Experiment) -> str | None:
        """The first `[metric] guards` rule the experiment's secondary numbers break."""
        for guard in self.config.metric.guards:
            if problem := guard.broken(exp.secondary):
                return problem
        return None

    def _on_other_hardware(
        self, exp: Experiment, baseline: Experiment
    ) -> tuple[Decision, Pending] | None:
        """With a fixed time budget the metric depends on the GPU: a winner measured on other
        hardware than the baseline's is measured again on the baseline's before it is kept."""
        reference = baseline.hardware
        if (
            not self.config.judge.same_hardware
            or not reference
            or not exp.hardware
            or same_hardware(exp.hardware, reference)
            or exp.commit is None
        ):
            return None
        editable = self.config.loop.editable
        proposal = Proposal(
            edits={editable: self.workspace.read(exp.commit, editable)},
            source="rebase",
            description=f"{exp.description} (exp {exp.id} on the reference hardware)",
        )
        again = Pending(
            proposal,
            exp.base_commit,
            self.workspace.read(exp.base_commit, editable),
            hardware=reference,
        )
        here = exp.hardware.get("gpu") or exp.hardware.get("cpu")
        there = reference.get("gpu") or reference.get("cpu")
        return Decision(
            "discard",
            f"it beat the best on {here}, but results from other "
            f"hardware are not compared directly: queued to be measured on {there}",
        ), again

    def _stale(
        self,
        exp: Experiment,
        runs: list[float],
        best: Experiment,
        groups: dict[int, list[float]],
        noise: float | None,
        again: Pending | None,
    ) -> tuple[Decision, Pending | None]:
        """The best moved on while it ran. What counts is whether it beat its own base; if it
        looks like it did, its change is merged onto the new best and measured again there,
        never kept as measured on the old one."""
        base = self._kept_by_commit(exp.base_commit) or best
        assert base.metric is not None
        against = groups.get(base.id) or [base.metric]
        delta = mean(runs) - mean(against)
        promising = self.judge.assess(runs, against, noise).action != "discard"
        if promising and again is not None:
            return Decision(
                "discard",
                f"discarded as measured: it beat exp {base.id} by "
                f"{delta:+.6g}, but the best moved on to exp {best.id} meanwhile; "
                "merged onto it and queued to be measured again",
            ), again
        if promising:
            return Decision(
                "discard",
                f"discarded: it beat exp {base.id} by {delta:+.6g}, but "
                f"its change does not merge onto the new best, exp {best.id}",
            ), None
        return Decision(
            "discard",
            f"discarded: {delta:+.6g} against exp {base.id} it was made "
            f"from, not better (the best is now exp {best.id})",
        ), None

    def _kept_by_commit(self, commit: str) -> Experiment | None:
        return self.history.kept_by_commit(commit)

    def merged_onto_best(self, exp: Experiment) -> Pending | None:
        """The experiment's change merged onto the current best, to be measured again; None if
        it no longer applies there (a conflict, or already in)."""
        if exp.commit is None:
            return None
        editable = self.config.loop.editable
        tip = self.workspace.branch_tip() or exp.base_commit
        current = self.workspace.read(tip, editable)
        merged = self.workspace.merge_file(
            self.workspace.read(exp.base_commit, editable),
            current,
            self.workspace.read(exp.commit, editable),
        )
        if merged is None or merged == current:
            return None
        proposal = Proposal(
            edits={editable: merged},
            source="revert" if exp.source == "revert" else "rebase",
            description=f"{exp.description} (exp {exp.id} on the new best)",
        )
        return Pending(proposal, tip, current)

    def same_editable(self, a: str, b: str) -> bool:
        editable = self.config.loop.editable
        return a == b or self.workspace.read(a, editable) == self.workspace.read(b, editable)
