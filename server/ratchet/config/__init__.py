"""ratchet.toml → a validated, typed Config.

model.py declares each key once (field, type, default, check); load.py reads the file by
those declarations. Every mistake becomes a ConfigError that knows its file, line and column,
so the CLI can print `ratchet.toml:3:11: ...` and the language server can put a diagnostic on
the range.
"""

from .load import load_config, parse_config
from .model import (
    AGENT_KINDS,
    LLM_KINDS,
    SECTIONS,
    AgentConfig,
    Config,
    JudgeConfig,
    LoopConfig,
    MetricConfig,
    RunnerConfig,
    SandboxConfig,
    SpaceOverride,
    StopConfig,
    TrackConfig,
)
from .source import CONFIG_NAME, ConfigError, Span
from .values import Guard, format_duration, parse_duration

__all__ = [
    "AGENT_KINDS",
    "CONFIG_NAME",
    "LLM_KINDS",
    "SECTIONS",
    "AgentConfig",
    "Config",
    "ConfigError",
    "Guard",
    "JudgeConfig",
    "LoopConfig",
    "MetricConfig",
    "RunnerConfig",
    "SandboxConfig",
    "SpaceOverride",
    "Span",
    "StopConfig",
    "TrackConfig",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]
