"""The anthropic agent through the real SDK against a local server that speaks the Messages
API (tests/fake_anthropic.py): a good edit, and each fault retried or recorded, never raised."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_anthropic import (
    FakeAnthropic,
    Turn,
    cut,
    http_error,
    stream_error,
    text,
    thinking,
    tool,
    tool_raw,
    turn,
)
from ratchet.agents import make_agent
from ratchet.agents.anthropic import AnthropicAgent, RetryPolicy, Usage, price_per_mtok
from ratchet.agents.prompt import context_prompt
from ratchet.config import parse_config
from ratchet.errors import RatchetError
from ratchet.experiment import HistoryEntry, Proposal, ProposalContext, RepairRequest
from ratchet.redaction import redact
from ratchet.traces import read_trace, secrets_for, write_trace

SENTINEL = "sk-ant-api03-SENTINEL-do-not-leak-0123456789abcdef"
KEY_ENV = "RATCHET_TEST_ANTHROPIC_KEY"
TRAIN = "import os\nLR = 0.5\nWIDTH = 8\nprint(f'score: {LR}')\n"
FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)


def context(**changes: Any) -> ProposalContext:
    values: dict[str, Any] = {
        "experiment": 5,
        "editable_path": "train.py",
        "editable_text": TRAIN,
        "program": "Make the score lower. PROGRAM-MARKER",
        "metric_name": "score",
        "goal": "minimize",
        "best_metric": 0.25,
        "history": (
            HistoryEntry(0, "kept", 0.3, 0.05, "baseline"),
            HistoryEntry(1, "kept", 0.25, 0.0, "LR 0.7 -> 0.5"),
            HistoryEntry(2, "discarded", 0.4, 0.15, "WIDTH 8 -> 4"),
            HistoryEntry(
                3,
                "crashed",
                None,
                None,
                "add dropout",
                log_tail="Traceback (most recent call last):\nNameError: name 'drop' is undefined",
            ),
            HistoryEntry(4, "discarded", 0.3, 0.05, "LR 0.5 -> 0.6", trace_tail="case 7: wrong"),
        ),
        "notes": ("try smaller widths NOTE-MARKER",),
        "running": ("LR 0.5 -> 0.45 RUNNING-MARKER",),
    }
    values.update(changes)
    return ProposalContext(**values)


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def make(api: FakeAnthropic, **options: Any) -> AnthropicAgent:
    options.setdefault("retry", FAST)
    options.setdefault("timeout_s", 20.0)
    return AnthropicAgent(
        model="claude-sonnet-4-6",
        api_key_env=KEY_ENV,
        base_url=api.base_url,
        environ={KEY_ENV: SENTINEL},
        **options,
    )


async def propose(
    api: FakeAnthropic, ctx: ProposalContext | None = None, **options: Any
) -> Proposal:
    agent = make(api, **options)
    try:
        return await agent.propose(ctx or context())
    finally:
        await agent.close()


REPLACE = tool("replace_text", {"path": "train.py", "old_text": "LR = 0.5", "new_text": "LR = 0.3"})
FINISH = tool("finish", {"description": "lower LR 0.5 -> 0.3"})
GOOD = (turn(text("Lower the learning rate."), REPLACE), turn(FINISH))
EDITED = TRAIN.replace("LR = 0.5", "LR = 0.3")


def assert_good(proposal: Proposal) -> None:
    assert proposal.failure is None, proposal.failure
    assert proposal.edits == {"train.py": EDITED}
    assert proposal.description == "lower LR 0.5 -> 0.3"


# --- the good path ------------------------------------------------------------------------


async def test_a_good_edit_is_proposed_with_its_cost_and_trace(api: FakeAnthropic) -> None:
    api.script(
        turn(
            thinking("the LR is too high"),
            tool("view_file", {"path": "train.py", "start_line": 2, "end_line": 3}),
        ),
        turn(REPLACE, cache_creation_input_tokens=1000),
        turn(FINISH, cache_read_input_tokens=1000, input_tokens=20, output_tokens=30),
    )
    proposal = await propose(api)
    assert_good(proposal)
    assert len(api.requests) == 3 and api.remaining == 0

    # The view result went back as a tool_result with numbered lines 2..3 only.
    [viewed] = api.requests[1].tool_results()
    assert viewed["content"] == "2\tLR = 0.5\n3\tWIDTH = 8" and not viewed.get("is_error")
    # The thinking block is echoed back unchanged, with its signature.
    assistant = api.requests[1].messages[-2]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0]["type"] == "thinking"
    assert assistant["content"][0]["signature"].startswith("sig-")

    first = api.requests[0].body
    assert first["stream"] is True and first["model"] == "claude-sonnet-4-6"
    assert {t["name"] for t in first["tools"]} == {
        "view_file",
        "replace_text",
        "insert_text",
        "finish",
    }
    # The stable prefix (system + program.md) carries the cache breakpoint.
    assert first["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "PROGRAM-MARKER" in first["system"][-1]["text"]
    assert "PROGRAM-MARKER" not in first["messages"][0]["content"][0]["text"]
    # The last block of the conversation is marked too, and only it.
    marks = [b for m in api.requests[2].messages for b in m["content"] if "cache_control" in b]
    assert marks == [api.requests[2].messages[-1]["content"][-1]]
    user = first["messages"][0]["content"][0]["text"]
    for needle in (
        TRAIN,
        "WIDTH 8 -> 4",
        "NameError: name 'drop'",
        "NOTE-MARKER",
        "RUNNING-MARKER",
        "case 7: wrong",
        "| 2 | discarded | 0.4 | +0.15 |",
    ):
        assert needle in user
    assert api.requests[0].api_key == SENTINEL

    # Tokens: 100 + (100 + 1000 cache write) + (20 + 1000 cache read) in, 50 + 50 + 30 out.
    assert proposal.input_tokens == 100 + 1100 + 1020
    assert proposal.output_tokens == 50 + 50 + 30
    sonnet_in, sonnet_out = 3.0, 15.0
    expected = (
        220 * sonnet_in + 1000 * sonnet_in * 1.25 + 1000 * sonnet_in * 0.1 + 130 * sonnet_out
    ) / 1e6
    assert proposal.cost_usd == pytest.approx(expected)
    kinds = [r["kind"] for r in proposal.trace]
    assert kinds[0] == "prompt" and kinds[-1] == "result"
    assert kinds.count("response") == 3 and kinds.count("tool") == 3
    assert any(
        b.get("type") == "thinking"
        for r in proposal.trace
        if r["kind"] == "response"
        for b in r["content"]
    )
    assert proposal.agent_seconds > 0


async def test_insert_and_several_tools_in_one_turn(api: FakeAnthropic) -> None:
    api.script(
        turn(
            tool("insert_text", {"path": "./train.py", "after_line": 0, "text": "# tuned"}),
            tool(
                "replace_text",
                {"path": "train.py", "old_text": "WIDTH = 8", "new_text": "WIDTH = 12"},
            ),
            tool("finish", {"description": "widen to 12\nwith a comment"}),
        )
    )
    proposal = await propose(api)
    assert proposal.failure is None
    assert proposal.edits["train.py"] == "# tuned\n" + TRAIN.replace("WIDTH = 8", "WIDTH = 12")
    assert proposal.description == "widen to 12"


async def test_a_repair_starts_from_the_broken_text_and_shows_the_traceback(
    api: FakeAnthropic,
) -> None:
    broken = TRAIN.replace("LR = 0.5", "LR = 0.5 +")
    api.script(
        turn(
            tool(
                "replace_text",
                {"path": "train.py", "old_text": "LR = 0.5 +", "new_text": "LR = 0.5"},
            )
        ),
        turn(tool("finish", {"description": "fix the syntax error"})),
    )
    repair = RepairRequest(broken, "LR tweak", "SyntaxError: invalid syntax TRACE-MARKER", 1)
    proposal = await propose(api, context(repair_of=repair))
    assert proposal.failure is None
    assert proposal.edits == {"train.py": TRAIN}
    user = api.requests[0].messages[0]["content"][0]["text"]
    assert "TRACE-MARKER" in user and "LR = 0.5 +" in user and "Repair (attempt 1)" in user


async def test_a_plain_text_answer_after_an_edit_is_taken_as_the_description(
    api: FakeAnthropic,
) -> None:
    api.script(turn(REPLACE), turn(text("lower LR 0.5 -> 0.3\n")))
    assert_good(await propose(api))


# --- API faults: retried ------------------------------------------------------------------


async def test_429_then_success(api: FakeAnthropic) -> None:
    api.script(http_error(429, headers={"retry-after-ms": "10"}), *GOOD)
    proposal = await propose(api)
    assert_good(proposal)
    assert len(api.requests) == 3
    errors = [r for r in proposal.trace if r["kind"] == "api_error"]
    assert len(errors) == 1 and errors[0]["retryable"] and "429" in errors[0]["error"]


async def test_overloaded_529_and_an_overloaded_event_in_the_stream_are_retried(
    api: FakeAnthropic,
) -> None:
    api.script(http_error(529), GOOD[0], stream_error("overloaded_error", after=2), GOOD[1])
    proposal = await propose(api)
    assert_good(proposal)
    assert len(api.requests) == 4
    errors = [r["error"] for r in proposal.trace if r["kind"] == "api_error"]
    assert len(errors) == 2 and all("overloaded_error" in e for e in errors)


async def test_a_5xx_is_retried(api: FakeAnthropic) -> None:
    api.script(http_error(500), http_error(503), *GOOD)
    assert_good(await propose(api))
    assert len(api.requests) == 4


async def test_a_stream_cut_off_midway_is_retried(api: FakeAnthropic) -> None:
    # The first answer drops the connection in the middle of the tool input.
    api.script(cut(REPLACE, after=4), *GOOD)
    proposal = await propose(api)
    assert_good(proposal)
    assert len(api.requests) == 3
    [error] = [r for r in proposal.trace if r["kind"] == "api_error"]
    assert error["retryable"]
    # The half-received answer was not applied twice, nor fed back.
    assert len(api.requests[1].messages) == 1


async def test_cuts_midway_are_retried_within_the_same_bound(api: FakeAnthropic) -> None:
    # Whether the SDK raises the cut as its own APIConnectionError (2.17) or the transport's
    # error (before), it is retried here, each try traced, and the count stays bounded.
    api.script(*[cut(REPLACE, after=3) for _ in range(10)])
    proposal = await propose(api)
    assert proposal.failure is not None and "failed 4 times" in proposal.failure
    assert len(api.requests) == FAST.attempts
    errors = [r for r in proposal.trace if r["kind"] == "api_error"]
    assert [r["attempt"] for r in errors] == [1, 2, 3, 4]
    assert all(r["retryable"] for r in errors)


async def test_retries_are_bounded_and_then_recorded_as_a_failure(api: FakeAnthropic) -> None:
    api.script(*[http_error(529) for _ in range(10)])
    started = time.monotonic()
    proposal = await propose(api)
    assert time.monotonic() - started < 5
    assert proposal.failure is not None and "failed 4 times" in proposal.failure
    assert proposal.edits == {}
    assert len(api.requests) == FAST.attempts


async def test_a_refused_connection_is_retried_by_the_sdk_and_each_try_is_traced() -> None:
    with socket.socket() as closed:  # a port nothing listens on: every connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    agent = AnthropicAgent(
        api_key_env=KEY_ENV,
        base_url=f"http://127.0.0.1:{port}",
        environ={KEY_ENV: SENTINEL},
        retry=FAST,
        timeout_s=20.0,
    )
    try:
        proposal = await agent.propose(context())
    finally:
        await agent.close()
    assert proposal.failure is not None and "failed 4 times" in proposal.failure
    errors = [r for r in proposal.trace if r["kind"] == "api_error"]
    assert [r["attempt"] for r in errors] == [1, 2, 3, 4]
    assert all(r["retryable"] and "Connection" in r["error"] for r in errors)


async def test_a_bad_request_is_not_retried(api: FakeAnthropic) -> None:
    api.script(http_error(400, message="prompt is too long"), *GOOD)
    proposal = await propose(api)
    assert proposal.failure is not None and "prompt is too long" in proposal.failure
    assert len(api.requests) == 1


# --- refused and malformed tool calls: fed back once, then the proposal is invalid ------------


async def test_malformed_tool_input_is_fed_back_once(api: FakeAnthropic) -> None:
    api.script(turn(tool_raw("replace_text", '{"path": "train.py", "old_text": "LR = 0.5"')), *GOOD)
    proposal = await propose(api)
    assert_good(proposal)
    [result] = api.requests[1].tool_results()
    assert result["is_error"] is True and "not valid JSON" in result["content"]
    # The malformed call is echoed with an empty input, so the conversation stays valid.
    echoed = api.requests[1].messages[-2]["content"][0]
    assert echoed["type"] == "tool_use" and echoed["input"] == {}
    assert [r["strike"] for r in proposal.trace if r["kind"] == "refused"] == [1]


async def test_a_second_malformed_tool_call_ends_the_proposal(api: FakeAnthropic) -> None:
    api.script(
        turn(tool_raw("replace_text", "{not json")),
        turn(tool("replace_text", {"path": "train.py", "old_text": 5, "new_text": None})),
        *GOOD,
    )
    proposal = await propose(api)
    assert proposal.failure is not None and "second refused tool call" in proposal.failure
    assert proposal.edits == {}
    assert len(api.requests) == 2
    assert proposal.cost_usd > 0 and proposal.input_tokens == 200  # spent, and reported


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("prepare.py", "locked"),
        ("../outside.py", "outside the repository"),
        ("/etc/passwd", "outside the repository"),
        ("sub/../../train.py", "outside the repository"),
    ],
)
async def test_an_edit_aimed_at_another_file_is_refused(
    api: FakeAnthropic, path: str, expected: str
) -> None:
    api.script(
        turn(tool("replace_text", {"path": path, "old_text": "LR = 0.5", "new_text": "LR = 9"})),
        *GOOD,
    )
    proposal = await propose(api)
    assert_good(proposal)  # the refusal was explained, and the model then edited train.py
    [result] = api.requests[1].tool_results()
    assert result["is_error"] is True and expected in result["content"]


async def test_locked_then_outside_the_repository_is_invalid(api: FakeAnthropic) -> None:
    api.script(
        turn(tool("insert_text", {"path": "prepare.py", "after_line": 0, "text": "x = 1"})),
        turn(tool("replace_text", {"path": "../x.py", "old_text": "a", "new_text": "b"})),
        *GOOD,
    )
    proposal = await propose(api)
    assert proposal.failure is not None and "outside the repository" in proposal.failure
    assert proposal.edits == {}


async def test_replace_text_not_in_the_file_is_fed_back(api: FakeAnthropic) -> None:
    api.script(
        turn(
            tool(
                "replace_text", {"path": "train.py", "old_text": "LR = 0.9", "new_text": "LR = 0.3"}
            )
        ),
        *GOOD,
    )
    proposal = await propose(api)
    assert_good(proposal)
    [result] = api.requests[1].tool_results()
    assert result["is_error"] is True and "not found" in result["content"]


async def test_ambiguous_replace_and_finish_without_an_edit_count_as_refusals(
    api: FakeAnthropic,
) -> None:
    doubled = "A = 1\nA = 1\n"
    api.script(
        turn(tool("replace_text", {"path": "train.py", "old_text": "A = 1", "new_text": "A = 2"})),
        turn(tool("finish", {"description": "nothing"})),
    )
    proposal = await propose(api, context(editable_text=doubled))
    assert proposal.failure is not None and "unchanged" in proposal.failure
    assert "occurs 2 times" in api.requests[1].tool_results()[0]["content"]


async def test_an_answer_without_tools_is_nudged_once(api: FakeAnthropic) -> None:
    api.script(turn(text("I think we should lower LR.")), turn(text("Really.")))
    proposal = await propose(api)
    assert proposal.failure is not None and "did not call a tool" in proposal.failure
    nudge = api.requests[1].messages[-1]["content"][0]["text"]
    assert "call finish" in nudge


# --- time, keys and secrets -----------------------------------------------------------------


async def test_the_agent_time_limit_ends_a_slow_proposal(api: FakeAnthropic) -> None:
    def slow(body: dict[str, Any]) -> Turn:
        time.sleep(1.5)
        return GOOD[0]

    api.script(slow)
    started = time.monotonic()
    proposal = await propose(api, timeout_s=0.4)
    assert time.monotonic() - started < 1.4
    assert proposal.failure is not None and "did not finish within 0.4s" in proposal.failure


def test_a_missing_key_names_the_variable_to_set() -> None:
    with pytest.raises(RatchetError, match="MY_CLAUDE_KEY"):
        AnthropicAgent(api_key_env="MY_CLAUDE_KEY", environ={})


async def test_the_key_never_appears_in_the_proposal_or_the_trace_files(
    api: FakeAnthropic, tmp_path: Path
) -> None:
    # The model echoes the key (as if it had found it), in text, tool input and description.
    api.script(
        turn(
            text(f"the key is {SENTINEL}"),
            tool(
                "replace_text", {"path": "train.py", "old_text": "LR = 0.5", "new_text": "LR = 0.3"}
            ),
        ),
        turn(tool("view_file", {"path": SENTINEL})),
        turn(tool("finish", {"description": f"lower LR {SENTINEL}"})),
    )
    proposal = await propose(api)
    assert proposal.failure is None
    assert api.requests[0].api_key == SENTINEL  # it was used...
    assert SENTINEL not in repr(proposal) and SENTINEL not in json.dumps(proposal.trace)

    # ...and an error that quotes it (a 401 naming the key) is redacted as well.
    api.script(http_error(401, message=f"invalid x-api-key: {SENTINEL}"))
    failed = await propose(api)
    assert failed.failure is not None and KEY_ENV in failed.failure
    assert SENTINEL not in repr(failed)

    folder = tmp_path / ".ratchet"
    config = parse_config(
        f'[loop]\neditable = "train.py"\ncommand = "true"\n[metric]\nname = "score"\n'
        f'[agent]\nkind = "anthropic"\napi_key_env = "{KEY_ENV}"\n',
        _project(tmp_path),
    )
    secrets = secrets_for(config, {KEY_ENV: SENTINEL})
    # A record that still holds the key (as the engine might add) is cleaned on the way out.
    write_trace(folder, 1, [*proposal.trace, {"kind": "engine", "note": SENTINEL}], secrets)
    write_trace(folder, 2, failed.trace, [])
    for path in folder.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
    assert read_trace(folder, 1)[-1] == {"kind": "engine", "note": "[REDACTED]"}
    assert read_trace(folder, 1)[0]["kind"] == "prompt"


def test_redaction_covers_nested_values_and_key_shaped_strings() -> None:
    record = {
        "a": [SENTINEL, ("x", {"b": f"..{SENTINEL}.."})],
        SENTINEL: 1,
        "other": "sk-ant-admin01-abcdefghijklmnop",
        "n": 3,
        "none": None,
    }
    clean = redact(record, [SENTINEL])
    dumped = json.dumps(clean)
    assert SENTINEL not in dumped and "abcdefghijklmnop" not in dumped
    assert clean["n"] == 3 and clean["none"] is None


# --- wiring ---------------------------------------------------------------------------------


def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN)
    return root


async def test_make_agent_builds_the_anthropic_agent_from_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        '[loop]\neditable = "train.py"\ncommand = "true"\n[metric]\nname = "score"\n'
        '[agent]\nkind = "anthropic"\nmodel = "claude-haiku-4-5"\n'
        f'api_key_env = "{KEY_ENV}"\nbase_url = "http://127.0.0.1:9"\n'
    )
    config = parse_config(source, _project(tmp_path))
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(RatchetError, match=KEY_ENV):
        make_agent(config)
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    agent = make_agent(config)
    assert isinstance(agent, AnthropicAgent)
    assert agent.model == "claude-haiku-4-5" and agent.base_url == "http://127.0.0.1:9"
    assert SENTINEL not in repr(agent)
    await agent.close()


def test_prices_per_model_family() -> None:
    assert price_per_mtok("claude-opus-4-1-20250805") == (15.0, 75.0)
    assert price_per_mtok("claude-opus-4-5") == (5.0, 25.0)
    assert price_per_mtok("claude-sonnet-4-5-20250929") == (3.0, 15.0)
    assert price_per_mtok("claude-haiku-4-5") == (1.0, 5.0)
    assert price_per_mtok("claude-3-5-haiku-latest") == (0.8, 4.0)
    assert price_per_mtok("claude-sonnet-5") == (3.0, 15.0)
    assert price_per_mtok("some-new-model") == (5.0, 25.0)  # unknown: priced high, not low
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert usage.cost_usd("claude-sonnet-4-6") == pytest.approx(18.0)


def test_the_prompt_is_bounded_for_a_long_history() -> None:
    history = tuple(
        HistoryEntry(
            i, "crashed", None, None, "x" * 1000, log_tail="line\n" * 500, trace_tail="t" * 100_000
        )
        for i in range(200)
    )
    text_ = context_prompt(context(history=history))
    assert len(text_) < 60_000
