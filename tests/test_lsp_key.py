"""A key the editor keeps: an editor started from a dock has no API key in its environment; it
hands the key it keeps (VS Code's SecretStorage) with `ratchet.start`, and the server hands it
to the loop process it starts, in that process's environment alone. The agent uses it (the
Messages API stand-in sees it as `x-api-key`); no log, trace, ledger row, run environment,
control message or the server's own environment holds it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from conftest import CONFIG, MakeProject
from fake_anthropic import FakeAnthropic, tool, turn
from lsp_helpers import start_editor, stop_editor, stop_loops

SENTINEL = "sk-ant-editor-kept-0123456789abcdefSECRET"

# An experiment that tries to leak the key: it prints every variable that could hold it.
LEAKY = """\
import os
LR = 0.5


WIDTH = 8
for name, value in sorted(os.environ.items()):
    if "API_KEY" in name or "AUTH_TOKEN" in name or "SECRET" in value:
        print("leak", name, value)
print("score:", (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100)
"""

NO_KEY = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


async def test_a_key_given_with_start_reaches_the_agent_and_nothing_else(
    make_project: MakeProject,
) -> None:
    config = CONFIG.replace('kind = "mutate"', 'kind = "anthropic"\nbase_url = "BASE"').replace(
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
            turn(tool("finish", {"description": "WIDTH 8 -> 12"})),
        )
        root = make_project(train=LEAKY, config=config.replace("BASE", api.base_url))
        editor = await start_editor(root, without=NO_KEY)
        try:
            status = await editor.command("ratchet.status")
            assert status["agent"] == {
                "kind": "anthropic",
                "apiKeyEnv": "ANTHROPIC_API_KEY",
                "usesKey": True,
                "keyInEnvironment": False,
            }
            # Without a key the loop cannot propose: the start says so, in words.
            message = await editor.command_error("ratchet.start", {"maxExperiments": 2})
            assert "needs an API key" in message and "ANTHROPIC_API_KEY" in message
            assert "apiKey" not in message
            # A key that is no key is refused before anything starts, without echoing it.
            message = await editor.command_error("ratchet.start", {"apiKey": "two\nlines"})
            assert "not an API key" in message and "two" not in message

            await editor.command("ratchet.start", {"maxExperiments": 2, "apiKey": SENTINEL})
            loop = await editor.wait(
                lambda: editor.statuses and (editor.status().get("loop") or {}).get("pid"),
                "the loop's process",
            )
            server = editor.client._server
            assert server is not None
            # The loop's process holds the key; the server's own environment never does.
            assert SENTINEL.encode() not in environ_of(server.pid)
            with contextlib.suppress(FileNotFoundError):  # unless it finished already
                assert SENTINEL.encode() in environ_of(loop)
            await editor.wait(
                lambda: editor.statuses and editor.status().get("total") == 2,
                "two finished experiments",
                timeout=60,
            )
            rows = await editor.command("ratchet.experiments")
            assert [row["status"] for row in rows] == ["kept", "kept"], rows
            shown = await editor.command("ratchet.experiment", 1)
        finally:
            await stop_editor(editor)
            stop_loops(root)
    assert api.requests and {r.api_key for r in api.requests} == {SENTINEL}
    assert SENTINEL not in repr(shown)
    # The experiments ran without the variable at all (runs get a cleaned environment).
    logs = root / ".ratchet" / "loops"
    for log in logs.rglob("*.log"):
        assert "ANTHROPIC_API_KEY" not in log.read_text(), log
        assert "leak" not in log.read_text(), log
    # No file Ratchet wrote holds the key: ledger, traces, logs, the loop's own log.
    files = [p for p in (root / ".ratchet").rglob("*") if p.is_file()]
    assert any(p.name == "loop.log" for p in files)
    assert any(p.suffix == ".sqlite" for p in files)
    for path in files:
        assert SENTINEL.encode() not in path.read_bytes(), f"the key leaked into {path}"
    assert SENTINEL not in os.environ.get("ANTHROPIC_API_KEY", "")
