"""Secrets are never written anywhere: a sentinel key, grepped for across `.ratchet/` after a
run through the engine with every agent kind. Experiments never even see it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import CONFIG, MakeProject
from fake_anthropic import FakeAnthropic, tool, turn
from loops import run
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Status

SENTINEL = "sk-ant-sentinel-0123456789abcdefSECRET"

# An experiment that tries to leak the key: it prints every variable that could hold it.
LEAKY = """\
import os
LR = 0.5


WIDTH = 8
for name, value in sorted(os.environ.items()):
    if "KEY" in name or "TOKEN" in name:
        print(name, value)
print("score:", (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100)
"""

COMMAND_AGENT = """\
import os, sys
prompt = open(sys.argv[1]).read()
print("my key is", os.environ.get("ANTHROPIC_API_KEY"))  # a careless agent echoes it
text = open("train.py").read().replace("WIDTH = 8", "WIDTH = 12")
open("train.py", "w").write(text)
print("WIDTH 8 -> 12, key", os.environ.get("ANTHROPIC_API_KEY"))
"""


def assert_no_secret(root: Path) -> int:
    files = [p for p in (root / ".ratchet").rglob("*") if p.is_file()]
    for path in files:
        assert SENTINEL.encode() not in path.read_bytes(), f"the key leaked into {path}"
    return len(files)


@pytest.mark.parametrize("kind", ["mutate", "anthropic", "command"])
async def test_a_sentinel_key_appears_in_no_file_after_a_run(
    kind: str, make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)
    agent_section = {
        "mutate": 'kind = "mutate"',
        "command": f'kind = "command"\nrun = "{sys.executable} agent.py {{{{prompt_file}}}}"',
        "anthropic": 'kind = "anthropic"\nbase_url = "BASE"',
    }[kind]
    config = CONFIG.replace('kind = "mutate"', agent_section).replace(
        "[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]"
    )
    with FakeAnthropic() as api:
        api.script(
            turn(
                tool(
                    "replace_text",
                    {"path": "train.py", "old_text": "WIDTH = 8", "new_text": "WIDTH = 12"},
                )
            ),
            turn(tool("finish", {"description": f"WIDTH 8 -> 12 ({SENTINEL})"})),
        )
        root = make_project(
            train=LEAKY,
            config=config.replace("BASE", api.base_url),
            extra={"agent.py": COMMAND_AGENT},
        )
        engine = Engine(load_config(root), tag="s")
        await run(engine, 2)
        if kind == "anthropic":
            assert api.requests and api.requests[0].api_key == SENTINEL  # the key was used
    experiments = engine.ledger.experiments("s")
    if kind != "mutate":
        assert experiments[1].status is Status.KEPT, experiments[1].reason
        assert "WIDTH = 12" in experiments[1].diff
    log = (root / ".ratchet" / "loops" / "s" / "logs" / "1.log").read_text()
    assert "ANTHROPIC_API_KEY" not in log  # the experiment never saw the variable at all
    assert assert_no_secret(root) > 5


# Wherever the key came from (here a file a careless user committed), a run that prints it
# leaves it in no log, log tail or ledger row: logs are redacted like traces.
PRINTS_A_FILE = """\
LR = 0.5


WIDTH = 8
print("the notes say:", open("notes.txt").read().strip())
print("and this looks like a key: sk-ant-api03-ABCDEFGHIJKLmnopqrst")
print("score:", (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100)
"""


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
async def test_a_key_printed_by_a_run_is_redacted_from_its_log_and_tail(
    sandbox: str, make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)
    config = CONFIG.replace(
        "[agent]", f'[judge]\nbaseline_runs = 1\n\n[sandbox]\nkind = "{sandbox}"\n\n[agent]'
    )
    root = make_project(train=PRINTS_A_FILE, config=config, extra={"notes.txt": SENTINEL})
    engine = Engine(load_config(root), tag="r")
    await run(engine, 1)
    [baseline] = engine.ledger.experiments("r")
    assert baseline.status is Status.KEPT, baseline.reason
    assert "the notes say: [REDACTED]" in baseline.log_tail
    assert "looks like a key: [REDACTED]" in baseline.log_tail
    for path in (root / ".ratchet").rglob("*"):  # the checkout holds the file, nothing else
        if path.is_file() and "worktrees" not in path.parts:
            assert SENTINEL.encode() not in path.read_bytes(), path
    assert "sk-ant-api03" not in (root / ".ratchet" / "loops" / "r" / "logs" / "0.log").read_text()
