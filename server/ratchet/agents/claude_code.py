"""`[agent] kind = "claude-code"`: the command agent (agents/command.py) with Claude Code's
command line filled in, so that a person who drives the loop with Claude Code writes one word.

    claude -p --output-format json --model MODEL
           --tools Read,Edit,Write,Glob,Grep --allowedTools Read,Edit,Write,Glob,Grep
           --permission-mode acceptEdits --strict-mcp-config --no-session-persistence

- The prompt (program.md, the editable file's path, the history) goes to its stdin: no shell
  and no argv limit sees it. `-p` runs it once, without a terminal, and exits.
- Its tools are the file tools alone: no shell, no web, no MCP server; edits are accepted
  without a prompt (no one is there to answer one). Where it may write is the agent sandbox's
  business (agents/confine.py: its scratch copy read-write, the rest read-only, the project
  and `.ratchet/` not there at all); Ratchet's guard refuses any file but the editable one.
- Its config folder (`~/.claude`, `~/.claude.json`: a login, settings) is bound into the
  sandbox's private home; its key is `[agent] api_key_env` (ANTHROPIC_API_KEY by default),
  handed on as ANTHROPIC_API_KEY, the name the CLI reads; ANTHROPIC_BASE_URL passes through.
- The description is `.ratchet-description` if it wrote one, else the last line of its answer;
  the cost is the CLI's own `total_cost_usd`, the tokens its `usage`.
- A CLI that is not on PATH is an error before the loop starts; one that is not logged in (or
  whose key is refused) fails its proposal with that sentence and how to fix it.

`[agent] run` still replaces the whole command line (an older CLI, other flags).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from typing import Any

from ..config import Config
from ..errors import RatchetError
from .command import CommandAgent, Reading, _last_line, hidden_files
from .confine import AgentSandbox

CLI = "claude"
PACKAGE = "@anthropic-ai/claude-code"
TESTED_VERSION = "2.1.332"  # the version Ratchet's tests run (scripts/install-test-deps.sh)
TOOLS = "Read,Edit,Write,Glob,Grep"
FLAGS = (
    "-p",
    "--output-format",
    "json",
    "--tools",
    TOOLS,
    "--allowedTools",
    TOOLS,
    "--permission-mode",
    "acceptEdits",
    "--strict-mcp-config",
    "--no-session-persistence",
)
CONFIG_PATHS = ("~/.claude", "~/.claude.json")  # its login and settings
# What else the CLI reads from its environment (a config folder elsewhere, its own switches).
VARIABLES = (
    "CLAUDE_CONFIG_DIR",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "DISABLE_AUTOUPDATER",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "AWS_REGION",
    "AWS_PROFILE",
    "CLOUD_ML_REGION",
    "ANTHROPIC_VERTEX_PROJECT_ID",
)
# An unattended loop: no auto-update mid-run, no telemetry or error reports.
QUIET = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
_LOGIN_WORDS = ("not logged in", "/login", "invalid api key", "authentication_error", "oauth")

INSTALL_HINT = (
    f"install it with `npm install -g {PACKAGE}@{TESTED_VERSION}` (the version Ratchet is "
    "tested with), then log in once (`claude`, then /login) or give it a key (ANTHROPIC_API_KEY, "
    "or \u201cRatchet: Set API Key\u2026\u201d in the editor)"
)


def preset_run(program: str, model: str | None) -> str:
    """The preset's command line, `program` being the CLI (its absolute path, so that its
    installation is bound into the agent's sandbox)."""
    words = [program, *FLAGS]
    if model:
        words += ["--model", model]
    return shlex.join(words)


def find_cli(environ: dict[str, str]) -> str | None:
    """The CLI's real path on the loop's PATH (a package manager's link resolved, so that the
    sandbox binds its installation), or None."""
    found = shutil.which(CLI, path=environ.get("PATH", os.defpath))
    return os.path.realpath(found) if found else None


class ClaudeCodeAgent(CommandAgent):
    kind = "claude-code"

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> ClaudeCodeAgent:
        environ = dict(overrides.pop("environ", None) or os.environ)
        run = config.agent.run
        if not run:
            program = find_cli(environ)
            if program is None:
                raise RatchetError(
                    f"the claude-code agent runs Claude Code's CLI, and `{CLI}` is not on PATH: "
                    + INSTALL_HINT
                )
            run = preset_run(program, config.agent.model)
        # The CLI reads ANTHROPIC_API_KEY: a key kept under another name goes by that one.
        key = environ.get(config.agent.api_key_env, "").strip()
        if key and config.agent.api_key_env != "ANTHROPIC_API_KEY":
            environ["ANTHROPIC_API_KEY"] = key
        for name, value in QUIET.items():
            environ.setdefault(name, value)
        sandbox = AgentSandbox.from_config(
            config, hidden_files(config), run=run, write=CONFIG_PATHS, env=VARIABLES
        )
        options = cls.options(config, sandbox)
        options["environ"] = environ
        options.update(overrides)
        return cls(run, **options)

    def read_output(self, output: str, exit_code: int | None) -> Reading:
        """`--output-format json`: one result object (after any line the CLI wrote to stderr):
        its answer, `total_cost_usd`, `usage`, and `is_error` with the reason."""
        result = _result(output)
        if result is None:
            last = _last_line(output)
            if exit_code not in (0, None) and _login_problem(output):
                return Reading(last, problem=_not_logged_in(last))
            return Reading(last)
        answer = str(result.get("result") or "")
        found = result.get("usage")
        usage: dict[str, Any] = found if isinstance(found, dict) else {}
        reading = Reading(
            _last_line(answer),
            cost_usd=_number(result.get("total_cost_usd")),
            input_tokens=int(_number(usage.get("input_tokens"))),
            output_tokens=int(_number(usage.get("output_tokens"))),
        )
        if not result.get("is_error") and result.get("subtype", "success") == "success":
            return reading
        said = _last_line(answer) or str(result.get("subtype") or "an error")
        if _login_problem(answer) or result.get("api_error_status") in (401, 403):
            problem = _not_logged_in(said)
        else:
            problem = f"Claude Code ended with an error: {said}"
        return Reading(
            reading.last, reading.cost_usd, reading.input_tokens, reading.output_tokens, problem
        )


def _result(output: str) -> dict[str, Any] | None:
    """The last line of the output that is the CLI's JSON result object."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("type") == "result":
            return value
    return None


def _login_problem(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _LOGIN_WORDS)


def _not_logged_in(said: str) -> str:
    return (
        f"Claude Code is not logged in or its key was refused ({said}): log in once with "
        "`claude` (then /login), or give it a key: set ANTHROPIC_API_KEY (or the variable "
        "`api_key_env` names), or \u201cRatchet: Set API Key\u2026\u201d in the editor"
    )


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)
