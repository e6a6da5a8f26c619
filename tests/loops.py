"""Running an engine to the end in a test, and reading what it recorded."""

from __future__ import annotations

from pathlib import Path

from agents import ScriptedAgent
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.events import Event


def engine_for(root: Path, agent: ScriptedAgent | None = None, tag: str = "t") -> Engine:
    return Engine(load_config(root), tag=tag, agent=agent)


async def run(engine: Engine, n: int | None) -> list[Event]:
    """Runs `n` experiments (the baseline counts) and frees the project; returns the events."""
    events: list[Event] = []
    engine.bus.subscribe(events.append)
    try:
        await engine.run(max_experiments=n)
    finally:
        await engine.close()
    return events


def statuses(engine: Engine) -> list[str]:
    return [str(e.status) for e in engine.ledger.experiments(engine.tag)]
