"""What each finished experiment sets going, decided from the record: a re-measure of the best
(every `remeasure_every` keeps, or a best kept on fewer runs than the judge trusts), or the end
of the loop by one of its `[stop]` rules. The engine acts on the answer."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .experiment import Pending, Proposal
from .history import History
from .scheduler import REMEASURE, WorkItem
from .stoprules import StopRules, Totals
from .verdicts import Verdicts


@dataclass(frozen=True)
class Next:
    remeasure: bool = False  # the best, measured once more
    stop: str | None = None  # why the loop ends here


class Upkeep:
    def __init__(self, config: Config, history: History, verdicts: Verdicts) -> None:
        self.config = config
        self.history = history
        self.verdicts = verdicts
        stop = config.stop
        rules_set = any(getattr(stop, name) is not None for name in vars(stop))
        self._stop_rules = StopRules(stop, config.metric.lower_is_better) if rules_set else None
        self._last_remeasure = 0  # keeps counted when the best was last measured again

    def opened(self) -> None:
        """Re-measures count keeps from here on."""
        self._last_remeasure = self.history.kept

    def after_finish(self) -> Next:
        history = self.history
        every = self.config.judge.remeasure_every
        due = bool(every) and history.kept >= self._last_remeasure + every
        if due:
            self._last_remeasure = history.kept
        stop = None
        if self._stop_rules is not None:
            totals = Totals(history.cost_usd, history.run_s, history.best)
            stop = self._stop_rules.check(history.experiments, totals)
        return Next(due or self.unconfirmed(), stop)

    def remeasure(self, queued: list[WorkItem]) -> WorkItem | None:
        """The best, measured once more; None while one such is already queued."""
        if any(item.pending.proposal.source == "remeasure" for item in queued):
            return None
        remeasure = Proposal(edits={}, description="re-measure the best", source="remeasure")
        return WorkItem(Pending(remeasure, self.history.tip, ""), REMEASURE, False)

    def unconfirmed(self) -> bool:
        """A best kept on fewer runs than the judge trusts is measured again before more
        candidates are judged against it, so its optimism does not block real gains."""
        best = self.history.best
        return best is not None and self.verdicts.needs_confirmation(
            best, self.history.runs.get(best.id)
        )
