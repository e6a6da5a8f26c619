"""What every agent offers the engine: propose one edit from a context. Agents know nothing
of runners or git; the engine checks, runs and judges what they propose."""

from __future__ import annotations

from typing import Protocol

from ..experiment import Proposal, ProposalContext


class Agent(Protocol):
    kind: str

    async def propose(self, context: ProposalContext) -> Proposal:
        """One edit of the editable file with a one-line description. A failure to propose
        is returned as Proposal(failure=...), never raised, so the loop goes on."""
        ...

    async def close(self) -> None: ...
