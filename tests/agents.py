"""Agents for tests: real Agent implementations whose proposals a test chooses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ratchet.experiment import Proposal, ProposalContext

Edit = Callable[[str], str]


class ScriptedAgent:
    """Proposes, in order, the result of each function applied to the current best text.
    A dict instead of a function proposes those edits as they are (for out-of-scope edits)."""

    kind = "scripted"

    def __init__(
        self,
        steps: list[tuple[Edit | dict[str, str], str]],
        delay_s: float = 0.0,
        repairs: list[tuple[Edit, str]] | None = None,
    ) -> None:
        self.steps = list(steps)
        self.repairs = list(repairs or [])
        self.delay_s = delay_s
        self.contexts: list[ProposalContext] = []

    async def propose(self, context: ProposalContext) -> Proposal:
        self.contexts.append(context)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if context.repair_of is not None:
            if not self.repairs:
                return Proposal({}, "no repair", failure="this agent has no repair to offer")
            fix, description = self.repairs.pop(0)
            return Proposal(
                {context.editable_path: fix(context.repair_of.broken_text)}, description
            )
        if not self.steps:
            # Nothing left to try: a distinct harmless change per call keeps the loop going.
            n = len(self.contexts)
            return Proposal(
                {context.editable_path: context.editable_text + f"\nIDLE_{n} = {n}\n"}, f"idle {n}"
            )
        edit, description = self.steps.pop(0)
        if isinstance(edit, dict):
            return Proposal(dict(edit), description)
        return Proposal({context.editable_path: edit(context.editable_text)}, description)

    async def close(self) -> None:
        return None


def replace(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text, f"{old!r} not in the file"
        return text.replace(old, new)

    return edit
