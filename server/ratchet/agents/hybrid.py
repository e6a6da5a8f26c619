"""An LLM agent with a classical tuner between its edits (`[agent] tune = "optuna"` or "portfolio").

The LLM makes the structural edits; between two of them the tuner (Optuna's TPE over the
current best's constants) makes `tune_ratio` proposals. Which one proposes is decided from the
record (the tuner's experiments are labelled `(tune)`), so a restarted loop keeps the rhythm.
The LLM is told what tuning found, in its history summary.
"""

from __future__ import annotations

from dataclasses import replace

from ..experiment import HistoryEntry, Proposal, ProposalContext
from .base import Agent
from .optuna import OptunaAgent

TUNE_LABEL = "(tune)"


def is_tuning(description: str) -> bool:
    return TUNE_LABEL in description


class HybridAgent:
    def __init__(self, llm: Agent, tuner: OptunaAgent, ratio: int) -> None:
        self.llm = llm
        self.tuner = tuner
        self.ratio = ratio
        self.kind = f"{llm.kind}+tune"

    def turn(self, context: ProposalContext) -> str:
        """ "llm" or "tune": after each LLM proposal, `ratio` tuning ones."""
        recent = [e.description for e in context.history if e.id > 0]
        recent += list(context.running)
        tuned = 0
        for description in reversed(recent):
            if not is_tuning(description):
                break
            tuned += 1
        if not recent:
            return "llm"  # the LLM's structural idea first; tuning follows it
        return "tune" if tuned < self.ratio and not _llm_last_crashed(context) else "llm"

    async def propose(self, context: ProposalContext) -> Proposal:
        repair = context.repair_of
        if repair is not None:
            if is_tuning(repair.description):
                return await self.tuner.propose(context)  # declines: it cannot repair
            return await self.llm.propose(context)
        if self.turn(context) == "tune":
            proposal = await self.tuner.propose(context)
            if proposal.failure is None:
                proposal.description = f"{proposal.description} {TUNE_LABEL}"
                return proposal
            # Nothing left to tune (no constants, all tried): the LLM proposes instead.
        return await self.llm.propose(replace(context, summary=_with_tuning(context)))

    async def close(self) -> None:
        await self.llm.close()
        await self.tuner.close()


def _llm_last_crashed(context: ProposalContext) -> bool:
    # An LLM edit that crashed is the LLM's to follow up, not a base for tuning.
    for entry in reversed(context.history):
        if not is_tuning(entry.description):
            return entry.status in ("crashed", "timeout") and entry.id > 0
    return False


def tuning_report(history: tuple[HistoryEntry, ...]) -> str:
    tuned = [e for e in history if is_tuning(e.description)]
    if not tuned:
        return ""
    kept = [e for e in tuned if e.status == "kept"]
    lines = [
        f"Between your edits a classical tuner changed constants {len(tuned)} times in the "
        f"recent history; {len(kept)} kept:"
    ]
    for entry in kept[-8:]:
        value = f" → {entry.metric:.6g}" if entry.metric is not None else ""
        lines.append(f"- exp {entry.id}: {entry.description.split(' (', 1)[0]}{value}")
    if not kept:
        lines.append("- none: the constants look tuned for the current structure")
    return "\n".join(lines)


def _with_tuning(context: ProposalContext) -> str:
    report = tuning_report(context.history)
    return "\n\n".join(part for part in (report, context.summary) if part)
