"""Proposers: `mutate` (offline, seeded), `anthropic` (Claude through the Messages API),
`command` (any CLI coding agent)."""

from __future__ import annotations

import os

from ..config import Config
from ..errors import RatchetError
from .base import Agent
from .mutate import MutateAgent


def resolve_kind(config: Config) -> str:
    """`[agent] kind` if given; otherwise anthropic when its key is set, else mutate."""
    if config.agent.kind:
        return config.agent.kind
    return "anthropic" if os.environ.get(config.agent.api_key_env) else "mutate"


def make_agent(config: Config) -> Agent:
    kind = resolve_kind(config)
    if kind == "mutate":
        return MutateAgent(seed=config.agent.seed)
    raise RatchetError(f'the `{kind}` agent is not built yet; use kind = "mutate" in [agent]')
