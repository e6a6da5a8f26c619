"""Agent traces: every exchange of one experiment's proposal, as JSONL under
`.ratchet/traces/<n>.jsonl`, with secrets (the API key) removed from everything written.

A trace is a list of plain dict records (prompts, tool calls, responses, thinking, repair
attempts). Appending keeps repair attempts in the same file as the first proposal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import Config
from .redaction import redact, redact_text
from .runners.safe_files import UnsafeFile, read_head

TRACES_DIR = "traces"


def secret_variables(config: Config) -> list[str]:
    """The variables that hold the agent's key: experiments never see them."""
    return sorted({config.agent.api_key_env, "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"})


def secrets_for(config: Config, environ: dict[str, str] | None = None) -> list[str]:
    """The secret values this loop knows of: the API key named by `[agent] api_key_env`."""
    env = os.environ if environ is None else environ
    names = secret_variables(config)
    return sorted({env[name] for name in names if env.get(name)}, key=len, reverse=True)


def trace_path(folder: Path, experiment: int) -> Path:
    """`folder` is the project's `.ratchet/` directory."""
    return folder / TRACES_DIR / f"{experiment}.jsonl"


def write_trace(
    folder: Path, experiment: int, records: Iterable[dict[str, Any]], secrets: Iterable[str] = ()
) -> Path:
    """Appends `records` to experiment `experiment`'s trace, one JSON object a line, with
    every secret removed (from the values and again from the serialised line)."""
    secrets = list(secrets)
    path = trace_path(folder, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for record in records:
        clean = redact(record, secrets)
        line = json.dumps(clean, ensure_ascii=False, default=str)
        lines.append(redact_text(line, secrets) + "\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(lines)
    return path


class Traces:
    """One loop's traces, and the secrets nothing it writes may hold."""

    def __init__(self, folder: Path, secrets: list[str]) -> None:
        self.folder = folder
        self.secrets = secrets

    def write(self, experiment: int, records: list[dict[str, Any]]) -> None:
        if records:
            write_trace(self.folder, experiment, records, self.secrets)

    def redact(self, text: str) -> str:
        return redact_text(text, self.secrets)


def read_trace(folder: Path, experiment: int) -> list[dict[str, Any]]:
    path = trace_path(folder, experiment)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({"unreadable": line})
    return records


def run_trace_tail(folder: Path, relative: str | None, limit_chars: int = 4000) -> str:
    """The run trace an experiment or its evaluator wrote (`[metric] trace`, a path relative
    to the experiment's folder), bounded for the agent: its beginning, where a per-case
    failure file holds its summary. The run wrote it, so it is read like anything a run
    leaves (`safe_files`): a link, a FIFO or a device there is named, never opened or
    followed. "" when unset, missing or outside `folder`."""
    if not relative or Path(relative).is_absolute() or ".." in Path(relative).parts:
        return ""
    try:
        raw, more = read_head(relative, limit_chars * 4, root=folder)
    except UnsafeFile as refused:
        return f"(the trace was not read: {refused})"
    except OSError:
        return ""
    text = raw.decode("utf-8", errors="replace")
    if more or len(text) > limit_chars:
        return text[:limit_chars] + "\n… (cut: the rest of the file is not shown)"
    return text
