"""The simplest offline agent: seeded perturbations of the file's module-level numeric constants.

It needs no network, no key and no model of the file, so it is what most tests and the
editor walkthrough use, and the baseline every other agent is measured against (the default
without a key, and the bundled examples' agent, is the portfolio, which beat it on
bench/bench_search.py). Each proposal
perturbs one or two constants of the current best, found by AST and rewritten in place so
the rest of the file is untouched.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import cast

from ..experiment import Proposal, ProposalContext
from ..novelty import digest
from .space import SKIPPED, Literal, find_literals, nothing_to_tune, write_literals

_FLOAT_FACTORS = (0.5, 0.7, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0)
_INT_FACTORS = (0.5, 0.75, 1.25, 1.5, 2.0)
_ATTEMPTS = 64


def find_constants(source: str) -> list[Literal]:
    """Module-level `NAME = number` assignments; UPPER_CASE ones if there are any."""
    found = [lit for lit in find_literals(source) if type(lit.value) in (int, float)]
    upper = [c for c in found if c.name.isupper() and not c.name.endswith(SKIPPED)]
    return upper or [c for c in found if not c.name.upper().endswith(SKIPPED)]


def _number(constant: Literal) -> int | float:
    return cast(int | float, constant.value)  # find_constants keeps numbers only


def perturb(value: int | float, rng: random.Random) -> int | float:
    if isinstance(value, int):
        if value == 0:
            return rng.choice((1, 2))
        for _ in range(8):
            candidate = round(value * rng.choice(_INT_FACTORS))
            if value > 0:
                candidate = max(1, candidate)
            if candidate != value:
                return candidate
        return value + (1 if rng.random() < 0.5 else -1)
    if value == 0.0:
        return rng.choice((0.01, 0.05, 0.1))
    return float(f"{value * rng.choice(_FLOAT_FACTORS):.4g}")


def render(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    return text if ("e" in text or "." in text or "inf" in text or "nan" in text) else text + ".0"


def apply(source: str, changes: list[tuple[Literal, int | float]]) -> str:
    return write_literals(source, [(constant, render(value)) for constant, value in changes])


class MutateAgent:
    kind = "mutate"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    async def propose(self, context: ProposalContext) -> Proposal:
        started = time.monotonic()
        source = context.repair_of.broken_text if context.repair_of else context.editable_text
        constants = find_constants(source)
        if not constants:
            return Proposal(
                edits={},
                description="nothing to tune",
                failure=nothing_to_tune("mutate", context.editable_path, source, True),
                exhausted=True,
                final=True,
                agent_seconds=time.monotonic() - started,
            )
        rng = random.Random(self._seed_for(context))
        trace = []
        for attempt in range(_ATTEMPTS):
            chosen = rng.sample(constants, k=min(len(constants), rng.choice((1, 1, 2))))
            changes = [(c, perturb(_number(c), rng)) for c in chosen]
            changes = [(c, v) for c, v in changes if v != c.value]
            if not changes:
                continue
            text = apply(source, changes)
            description = ", ".join(
                f"{c.name} {render(_number(c))} → {render(v)}" for c, v in changes
            )
            trace.append({"attempt": attempt, "candidate": description})
            if digest(text) in context.tried_digests or description in context.running:
                continue  # already measured or running elsewhere: look for a new one
            return Proposal(
                edits={context.editable_path: text},
                description=description,
                trace=[{"role": "agent", "kind": "mutate", "seed": self.seed, "tries": trace}],
                agent_seconds=time.monotonic() - started,
            )
        return Proposal(
            edits={},
            description="no new perturbation found",
            failure=f"the mutate agent found no untried change in {_ATTEMPTS} attempts",
            exhausted=True,
            agent_seconds=time.monotonic() - started,
        )

    def _seed_for(self, context: ProposalContext) -> int:
        # Deterministic per proposal number (counted over the whole loop, never by timing) and
        # best file, so a resumed loop continues the sequence and parallel slots differ.
        best = digest(context.editable_text)
        material = f"{self.seed}:{context.proposal}:{best}"
        return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")

    async def close(self) -> None:
        return None
