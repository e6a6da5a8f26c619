"""`[agent] kind = "claude-code"`: the command agent preset for Claude Code's CLI.

Two ways: a stand-in `claude` (a small script on PATH that checks the preset's flags, reads
the prompt from stdin, edits the file and answers in the CLI's JSON) through the real engine,
sandbox included; and the real CLI from npm (installed by scripts/install-test-deps.sh into
.tools/claude-code) as the proposing agent of a real `ratchet run`, its base URL pointed at the
local Messages API stand-in (tests/fake_anthropic.py). No test needs the internet: the real
CLI's test is skipped (saying why) where the CLI is not installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CONFIG, MakeProject
from fake_anthropic import FakeAnthropic, Turn, text, tool, turn
from loops import run
from ratchet.agents import make_agent
from ratchet.agents.claude_code import TESTED_VERSION, ClaudeCodeAgent
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.errors import RatchetError
from ratchet.experiment import Status
from ratchet.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
SENTINEL = "sk-ant-claude-code-0123456789abcdefSECRET"
CLAUDE_CODE_CONFIG = CONFIG.replace(
    'kind = "mutate"', 'kind = "claude-code"\nmodel = "claude-sonnet-4-6"\ntimeout = "2m"'
).replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]")

# The stand-in: what the preset must give the CLI, checked; then one edit, as Claude Code's
# Edit tool would make it, and the CLI's JSON result (its cost included).
STAND_IN = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else None
problems = []
if "-p" not in args:
    problems.append("not -p")
if value("--output-format") != "json":
    problems.append("--output-format is not json")
if value("--permission-mode") != "acceptEdits":
    problems.append("--permission-mode is not acceptEdits")
for flag in ("--tools", "--allowedTools"):
    if value(flag) != "Read,Edit,Write,Glob,Grep":
        problems.append(f"{{flag}} is {{value(flag)!r}}")
if "--strict-mcp-config" not in args or "--no-session-persistence" not in args:
    problems.append("MCP servers or session files allowed")
if value("--model") != "claude-sonnet-4-6":
    problems.append("--model is " + repr(value("--model")))
prompt = sys.stdin.read()
if "Make ONE edit to `train.py`" not in prompt or "Make the score lower." not in prompt:
    problems.append("the prompt is not on stdin")
if os.environ.get("ANTHROPIC_API_KEY") != "{key}":
    problems.append("no key")
if os.environ.get("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC") != "1":
    problems.append("non-essential traffic on")
if os.path.exists(os.path.join(os.environ.get("HOME", "/"), "secret-of-the-user")):
    problems.append("the user's home is visible")
MODE = "{mode}"
if MODE == "logged-out":
    print("warning: no credentials", file=sys.stderr)
    print(json.dumps({{"type": "result", "subtype": "success", "is_error": True,
        "result": "Not logged in \\u00b7 Please run /login", "total_cost_usd": 0}}))
    sys.exit(1)
if problems:
    print(json.dumps({{"type": "result", "subtype": "success", "is_error": True,
        "result": "stand-in refused: " + "; ".join(problems), "total_cost_usd": 0}}))
    sys.exit(1)
text = open("train.py").read().replace("WIDTH = 8", "WIDTH = 12")
open("train.py", "w").write(text)
open(".ratchet-description", "w").write("WIDTH 8 -> 12 (stand-in)\\n")
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
    "result": "I widened the model.", "total_cost_usd": 0.0123,
    "usage": {{"input_tokens": 1200, "output_tokens": 80}}}}))
"""


def stand_in(folder: Path, mode: str = "ok") -> Path:
    bin_dir = folder / "cli" / "bin"  # its installation is bound into the sandbox: not tmp_path
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "claude"
    path.write_text(STAND_IN.format(python=sys.executable, key=SENTINEL, mode=mode))
    path.chmod(0o755)
    return bin_dir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the test's own, with a file the agent must not see."""
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "secret-of-the-user").write_text("private")
    monkeypatch.setenv("HOME", str(folder))
    return folder


async def test_the_preset_runs_the_cli_with_its_flags_cost_and_description(
    make_project: MakeProject, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{stand_in(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)
    root = make_project(config=CLAUDE_CODE_CONFIG)
    engine = Engine(load_config(root), tag="c")
    assert isinstance(engine.agent, ClaudeCodeAgent) and engine.agent_kind == "claude-code"
    assert engine.agent.template[0] == str((tmp_path / "cli" / "bin" / "claude").resolve())
    await run(engine, 2)
    _, exp = engine.ledger.experiments("c")
    assert exp.status is Status.KEPT, exp.reason
    assert exp.description == "WIDTH 8 -> 12 (stand-in)"
    assert "WIDTH = 12" in exp.diff
    assert exp.cost_usd == pytest.approx(0.0123)
    rows = [e.__dict__ for e in engine.ledger.experiments("c")]
    assert SENTINEL not in json.dumps(rows, default=str)
    for path in (root / ".ratchet").rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path


async def test_a_cli_not_logged_in_fails_its_proposal_saying_how_to_log_in(
    make_project: MakeProject, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged_out = stand_in(tmp_path, "logged-out")
    monkeypatch.setenv("PATH", f"{logged_out}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    root = make_project(config=CLAUDE_CODE_CONFIG)
    engine = Engine(load_config(root), tag="o")
    await run(engine, 2)
    exp = engine.ledger.experiments("o")[1]
    assert exp.status is Status.INVALID
    assert "Claude Code is not logged in" in exp.reason and "/login" in exp.reason, exp.reason
    assert "Set API Key" in exp.reason


def test_a_missing_cli_is_an_error_before_the_loop_starts(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(config=CLAUDE_CODE_CONFIG)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RatchetError) as caught:
        make_agent(load_config(root))
    message = str(caught.value)
    assert "`claude` is not on PATH" in message
    assert f"npm install -g @anthropic-ai/claude-code@{TESTED_VERSION}" in message


def test_its_json_is_read_for_cost_and_errors() -> None:
    agent = ClaudeCodeAgent("claude -p", root=Path("."), editable="train.py")
    result = {"type": "result", "is_error": False, "subtype": "success", "result": "a\nDone."}
    reading = agent.read_output("some warning\n" + json.dumps({**result, "total_cost_usd": 0.5}), 0)
    assert (reading.last, reading.cost_usd, reading.problem) == ("Done.", 0.5, None)
    refused = {**result, "is_error": True, "result": "API Error: 500 overloaded"}
    reading = agent.read_output(json.dumps(refused), 1)
    assert reading.problem == "Claude Code ended with an error: API Error: 500 overloaded"
    reading = agent.read_output("Invalid API key · Please run /login\n", 1)
    assert reading.problem and reading.problem.startswith("Claude Code is not logged in")
    assert agent.read_output("plain text\n", 0).problem is None


def test_ratchet_init_writes_the_preset(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "train.py").write_text('print("score:", 1.0)\n')
    done = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "-C", str(folder), "init", "--agent", "claude-code"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert load_config(folder).agent.kind == "claude-code"


# --- the real CLI ----------------------------------------------------------------------------


def real_cli() -> Path | None:
    """Claude Code's CLI as scripts/install-test-deps.sh installs it (or RATCHET_CLAUDE_CLI)."""
    named = os.environ.get("RATCHET_CLAUDE_CLI")
    candidates = [Path(named)] if named else []
    candidates.append(REPO / ".tools" / "claude-code" / "node_modules" / ".bin" / "claude")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


RUN = ("--max-experiments", "2", "--tag", "real")
SCRATCH = re.compile(r"(/[^\s\"'\\]*ratchet-agent-[^\s\"'\\/]+/project)")


class Claude:
    """What the stand-in Messages API answers Claude Code: read train.py, edit it, write the
    description, then say it is done; the scratch copy's path is read from its requests."""

    def __init__(self) -> None:
        self.folder = ""

    def where(self, body: dict[str, Any]) -> str:
        if not self.folder:
            found = SCRATCH.search(json.dumps(body))
            assert found, "no scratch copy named in Claude Code's request"
            self.folder = found.group(1)
        return self.folder

    def script(self) -> list[Any]:
        def read(body: dict[str, Any]) -> Turn:
            return turn(tool("Read", {"file_path": f"{self.where(body)}/train.py"}))

        def edit(body: dict[str, Any]) -> Turn:
            change = {"old_string": "WIDTH = 8", "new_string": "WIDTH = 12"}
            return turn(tool("Edit", {"file_path": f"{self.where(body)}/train.py", **change}))

        def describe(body: dict[str, Any]) -> Turn:
            path = f"{self.where(body)}/.ratchet-description"
            return turn(tool("Write", {"file_path": path, "content": "WIDTH 8 -> 12 (real CLI)\n"}))

        return [read, edit, describe, turn(text("Widened the model to 12."))]


def test_the_real_claude_code_cli_proposes_through_the_real_loop(
    make_project: MakeProject, tmp_path: Path
) -> None:
    cli = real_cli()
    if cli is None:
        pytest.skip(
            "Claude Code's CLI is not installed here: scripts/install-test-deps.sh puts "
            f"@anthropic-ai/claude-code@{TESTED_VERSION} in .tools/claude-code"
        )
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, timeout=60)
    assert TESTED_VERSION in version.stdout, version.stdout + version.stderr
    home = tmp_path / "home"
    home.mkdir()
    claude = Claude()
    with FakeAnthropic() as api:
        api.script(*claude.script())
        root = make_project(config=CLAUDE_CODE_CONFIG)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))},
            "PATH": f"{cli.parent}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(home),
            "ANTHROPIC_API_KEY": SENTINEL,
            "ANTHROPIC_BASE_URL": api.base_url,
            "PYTHONPATH": str(REPO / "server"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "ratchet.cli", "-C", str(root), "run", "--headless", *RUN],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ledger = Ledger(root / ".ratchet", read_only=True)
    _, exp = ledger.experiments("real")
    ledger.close()
    assert exp.status is Status.KEPT, (exp.reason, done.stdout[-2000:])
    assert exp.description == "WIDTH 8 -> 12 (real CLI)"
    assert "WIDTH = 12" in exp.diff
    assert exp.cost_usd > 0  # Claude Code's own total_cost_usd
    assert api.requests and {r.api_key for r in api.requests} == {SENTINEL}
    # it worked in its scratch copy, not in the project
    assert "ratchet-agent-" in claude.folder and str(root) not in claude.folder
    assert not (home / ".claude").exists()  # its config lived in the sandbox's private home
    for path in (root / ".ratchet").rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
    assert (root / "train.py").read_text().count("WIDTH = 8") == 1  # the user's file is theirs
