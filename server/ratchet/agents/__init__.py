"""Proposers: `portfolio` (offline: a pattern search, a quadratic model and TPE over the
file's constants; the default without an API key), `mutate` (offline, seeded perturbations),
`optuna` (offline: TPE or CMA-ES), `anthropic` (Claude through the Messages API), `command`
(any CLI coding agent), `claude-code` (the command agent preset for Claude Code's CLI)."""

from __future__ import annotations

import os

from ..config import AGENT_KINDS, LLM_KINDS, Config
from ..errors import RatchetError
from .base import Agent
from .mutate import MutateAgent


def resolve_kind(config: Config) -> str:
    """`[agent] kind` if given; otherwise anthropic when its key is set, else portfolio (the
    offline agent that won bench/bench_search.py)."""
    if config.agent.kind:
        return config.agent.kind
    return "anthropic" if os.environ.get(config.agent.api_key_env) else "portfolio"


def make_agent(config: Config, loop_id: str = "") -> Agent:
    """The agent `[agent] kind` names, with a tuner between its edits if `[agent] tune` is
    set. Raises RatchetError for what the user must fix (a missing API key, an empty `run`),
    before the loop starts. `loop_id` marks what a command agent starts, so that the next
    start of the loop finds what a killed one left running."""
    agent = _make(config, loop_id)
    if config.agent.tune and agent.kind in LLM_KINDS:
        from .hybrid import HybridAgent
        from .optuna import OptunaAgent
        from .portfolio import PortfolioAgent

        tuner = PortfolioAgent if config.agent.tune == "portfolio" else OptunaAgent
        return HybridAgent(agent, tuner.from_config(config), config.agent.tune_ratio)
    return agent


def _make(config: Config, loop_id: str) -> Agent:
    kind = resolve_kind(config)
    if kind == "mutate":
        return MutateAgent(seed=config.agent.seed)
    if kind == "optuna":
        from .optuna import OptunaAgent

        return OptunaAgent.from_config(config)
    if kind == "portfolio":
        from .portfolio import PortfolioAgent

        return PortfolioAgent.from_config(config)
    if kind == "anthropic":
        from .anthropic import AnthropicAgent

        return AnthropicAgent.from_config(config)
    if kind == "command":
        from .command import CommandAgent

        return CommandAgent.from_config(config, loop_id=loop_id)
    if kind == "claude-code":
        from .claude_code import ClaudeCodeAgent

        return ClaudeCodeAgent.from_config(config, loop_id=loop_id)
    raise RatchetError(f"unknown agent kind `{kind}`; use one of {', '.join(AGENT_KINDS)}")
