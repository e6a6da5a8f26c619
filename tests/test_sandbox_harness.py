"""examples/harness through the real loop: a task agent on the anthropic SDK, its harness the
editable file, against the local Messages API stand-in declared as the one reachable host.
The run gets the task's own key and nothing else; every other address stays shut."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from agents import ScriptedAgent, replace
from conftest import git
from fake_anthropic import FakeAnthropic, text, tool, turn
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Status
from ratchet.runners.sandbox import find_bwrap, probe
from test_sandbox_attacks import SENTINEL, Listener

pytestmark = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)
pytest.importorskip("anthropic")

TASK_KEY = "task-key-0123456789"
QUESTION = re.compile(r"What is (\d+) ([+*]) (\d+)\?")


def model(body: dict[str, Any]) -> Any:
    """A model that adds in its head and multiplies wrong, unless given a calculator."""
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and last and last[0].get("type") == "tool_result":
        return turn(text(str(last[0]["content"])))
    found = QUESTION.search(str(body["messages"][0]["content"]))
    if not found:
        return turn(text("?"))
    a, op, b = int(found.group(1)), found.group(2), int(found.group(3))
    if any(t.get("name") == "calculator" for t in body.get("tools", [])):
        return turn(tool("calculator", {"expression": f"{a} {op} {b}"}))
    return turn(text(str(a + b if op == "+" else a * b + 1)))


CALCULATOR = (
    lambda source: replace(
        "TOOLS: list[dict[str, Any]] = []",
        'TOOLS: list[dict[str, Any]] = [{"name": "calculator", "description": "a op b", '
        '"input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}}}]',
    )(
        replace(
            '    return f"unknown tool {name}"',
            '    a, op, b = arguments["expression"].split()\n'
            '    return str(int(a) + int(b) if op == "+" else int(a) * int(b))',
        )(source)
    ),
    "give the model a calculator",
)


def escape(port: int) -> tuple[Any, str]:
    """The edited harness tries another loopback port and the proposer's key."""
    code = (
        "\nimport os, socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), 2)\n"
        "    print('ATTACK-OK reached another port')\n"
        "except OSError as error:\n"
        "    print('other port:', error)\n"
        "if os.environ.get('ANTHROPIC_API_KEY'):\n"
        "    print('ATTACK-OK the proposer key')\n"
    )
    return (lambda source: source.replace("import sys\n", "import sys\n" + code, 1), "reach out")


async def test_a_harness_loop_reaches_only_its_declared_host_with_its_own_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = Listener()
    with FakeAnthropic() as api:
        api.script(*[model] * 200)
        port = int(api.base_url.rsplit(":", 1)[1].strip("/"))
        folder = tmp_path / "harness"
        shutil.copytree(Path(__file__).parent.parent / "examples" / "harness", folder)
        toml = folder / "ratchet.toml"
        toml.write_text(
            toml.read_text()
            .replace("python ", f"{sys.executable} ")
            .replace('"api.anthropic.com:443"', f'"127.0.0.1:{port}"')
            .replace('kind = "anthropic"', 'kind = "mutate"')
            .replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]")
        )
        git(folder, "init", "-q", "-b", "main")
        git(folder, "add", "-A")
        git(folder, "commit", "-qm", "example")
        monkeypatch.setenv("TASK_API_KEY", TASK_KEY)
        monkeypatch.setenv("TASK_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)
        agent = ScriptedAgent([escape(listener.port), CALCULATOR])
        engine = Engine(load_config(folder), tag="h", agent=agent)
        await engine.run(max_experiments=3)
        await engine.close()
    baseline, attack, better = engine.ledger.experiments("h")
    assert baseline.metric == pytest.approx(0.5), baseline.reason  # the sums right only
    assert better.status is Status.KEPT and better.metric == pytest.approx(1.0), better.reason
    assert attack.status is Status.DISCARDED
    logs = "".join(
        p.read_text() for p in (folder / ".ratchet" / "loops" / "h" / "logs").glob("*.log")
    )
    assert "ATTACK-OK" not in logs and "other port:" in logs
    assert listener.connections == 0
    assert api.requests and {r.api_key for r in api.requests} == {TASK_KEY}
