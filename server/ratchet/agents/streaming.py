"""One streamed turn of the Messages API: its events accumulated into a Turn, a mark of every
HTTP attempt (the SDK's retries included) in the trace, and the retry of what the SDK cannot
retry, a stream cut or failing midway.

The SDK's `messages.stream` helper is not used: it raises on a tool input that is not JSON,
where this accumulation keeps the turn and lets the model hear what was wrong.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic

from .editing import ToolCall
from .pricing import Usage


@dataclass(frozen=True)
class RetryPolicy:
    """How often one request is tried in all. The SDK retries what fails before a stream
    starts (429, 408, 409, 5xx, connection errors: jittered backoff that honours
    `retry-after-ms` and `retry-after`); the backoff here is for what it cannot retry, a
    stream cut or failing midway."""

    attempts: int = 6  # tries of one request in all
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return backoff * (0.75 + 0.5 * random.random())


RETRY_TYPES = {"overloaded_error", "rate_limit_error", "api_error", "timeout_error"}


@dataclass
class Attempts:
    """The HTTP attempts of one request, each failed one written to the trace as it fails:
    the SDK's own retries would otherwise leave no mark."""

    trace: list[dict[str, Any]]
    turn: int
    describe: Callable[[Exception], tuple[bool, str]]  # (retryable, a redacted reason)
    count: int = 0

    def failed(self, error: Exception) -> None:
        retryable, why = self.describe(error)
        self.trace.append(
            {
                "kind": "api_error",
                "turn": self.turn,
                "attempt": self.count,
                "error": why,
                "retryable": retryable,
            }
        )


ATTEMPTS: contextvars.ContextVar[Attempts | None] = contextvars.ContextVar(
    "ratchet_anthropic_attempts", default=None
)


async def count_attempts(request: Any, call_next: Any) -> Any:
    """An SDK middleware: it runs inside the SDK's retry loop, once per HTTP attempt."""
    attempts = ATTEMPTS.get()
    if attempts is None:
        return await call_next(request)
    attempts.count += 1
    try:
        response = await call_next(request)
    except anthropic.APIConnectionError as error:
        attempts.failed(error)
        raise
    if response.status_code >= 400:
        http = response.http_response
        await http.aread()  # kept by the response: the SDK reads it again for its error
        attempts.failed(_status_error(http))
    return response


def _status_error(http: Any) -> anthropic.APIStatusError:
    try:
        body = json.loads(http.text)
    except ValueError:
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    message = detail.get("message") if isinstance(detail, dict) else None
    return anthropic.APIStatusError(str(message or http.text[:200]), response=http, body=body)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's network errors (httpx2, or httpx in older SDKs): SDKs before 2.17
    raise them unwrapped when a streamed body is cut off midway; 2.17 wraps them in
    `APIConnectionError`."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        error = getattr(module, "TransportError", None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


TRANSPORT_ERRORS = _transport_errors()


class CutOff(Exception):
    """The stream ended before `message_stop`."""


class Fatal(Exception):
    """An API error that retrying will not cure (bad key, bad request)."""


@dataclass
class Turn:
    """One assistant message, accumulated from the stream."""

    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    opened: bool = False  # the request was answered and its stream began
    done: bool = False  # saw message_stop

    @property
    def tool_calls(self) -> list[ToolCall]:
        calls = []
        for block in self.content:
            if block.get("type") == "tool_use":
                calls.append(
                    ToolCall(
                        block["id"], block["name"], block.get("input", {}), block.get("_problem")
                    )
                )
        return calls

    @property
    def text(self) -> str:
        return "\n".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    def echo(self) -> list[dict[str, Any]]:
        """The assistant message to send back: thinking blocks unchanged, tool inputs as
        parsed (an unparseable one as {})."""
        blocks = []
        for block in self.content:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                blocks.append({"type": "text", "text": block["text"]})
            elif kind == "tool_use":
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": block.get("input", {}),
                    }
                )
            elif kind == "thinking":
                blocks.append(
                    {
                        "type": "thinking",
                        "thinking": block.get("thinking", ""),
                        "signature": block.get("signature", ""),
                    }
                )
            elif kind == "redacted_thinking":
                blocks.append({"type": "redacted_thinking", "data": block.get("data", "")})
        return blocks or [{"type": "text", "text": "(no answer)"}]

    def for_trace(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in block.items() if k != "_json"} for block in self.content]


def accumulate(turn: Turn, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if kind == "message_start":
        usage = (event.get("message") or {}).get("usage") or {}
        turn.usage = _usage(usage)
    elif kind == "content_block_start":
        block = dict(event.get("content_block") or {})
        if block.get("type") == "tool_use":
            block["input"] = {}
            block["_json"] = ""
        _place(turn, int(event.get("index", len(turn.content))), block)
    elif kind == "content_block_delta":
        block = turn.content[int(event["index"])]
        delta = event.get("delta") or {}
        match delta.get("type"):
            case "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            case "input_json_delta":
                block["_json"] = block.get("_json", "") + delta.get("partial_json", "")
            case "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            case "signature_delta":
                block["signature"] = delta.get("signature", "")
    elif kind == "content_block_stop":
        block = turn.content[int(event["index"])]
        if block.get("type") == "tool_use":
            _parse_tool_input(block)
    elif kind == "message_delta":
        turn.stop_reason = (event.get("delta") or {}).get("stop_reason") or turn.stop_reason
        usage = event.get("usage") or {}
        if usage.get("output_tokens") is not None:
            turn.usage.output_tokens = int(usage["output_tokens"])
        for field_name, attribute in (
            ("input_tokens", "input_tokens"),
            ("cache_creation_input_tokens", "cache_write_tokens"),
            ("cache_read_input_tokens", "cache_read_tokens"),
        ):
            if usage.get(field_name) is not None:
                setattr(turn.usage, attribute, int(usage[field_name]))
    elif kind == "message_stop":
        for block in turn.content:  # a block left open: parse what arrived
            if block.get("type") == "tool_use" and "_json" in block:
                _parse_tool_input(block)
        turn.done = True


def _place(turn: Turn, index: int, block: dict[str, Any]) -> None:
    while len(turn.content) <= index:
        turn.content.append({})
    turn.content[index] = block


def _parse_tool_input(block: dict[str, Any]) -> None:
    raw = block.pop("_json", "")
    if not raw.strip():
        block["input"] = {}
        return
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        block["input"] = {}
        block["_problem"] = (
            f"the tool input is not valid JSON ({error.msg} at character {error.pos}); "
            "send the arguments as one JSON object"
        )
        block["raw_input"] = raw[:2000]
        return
    if not isinstance(value, dict):
        block["input"] = {}
        block["_problem"] = "the tool input must be a JSON object of named arguments"
        return
    block["input"] = value


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        cache_write_tokens=int(raw.get("cache_creation_input_tokens") or 0),
        cache_read_tokens=int(raw.get("cache_read_input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
    )


def with_cache_mark(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with a cache breakpoint on its last block, so each turn of the tool
    loop reads the previous turns from the cache."""
    marked = [dict(m) for m in messages]
    last = marked[-1]
    content = [dict(block) for block in last["content"]]
    content[-1]["cache_control"] = {"type": "ephemeral"}
    last["content"] = content
    return marked


def describe_error(error: Exception, key_env: str) -> tuple[bool, str]:
    """(retryable, a one-line reason) for what a request raised; `key_env` names where the key
    comes from, for a refused key. The caller redacts the key."""
    if isinstance(error, anthropic.APIStatusError):
        body: dict[str, Any] = error.body if isinstance(error.body, dict) else {}
        detail: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
        kind = str(detail.get("type") or "")
        message = str(detail.get("message") or error.message)
        status = error.status_code
        why = f"HTTP {status}" + (f" {kind}" if kind else "") + f": {message}"
        if status == 401 or kind == "authentication_error":
            why += f" (check the key in {key_env})"
        retryable = status in (408, 409, 429) or status >= 500 or kind in RETRY_TYPES
        return retryable, _one_line(why)
    if isinstance(error, anthropic.APIConnectionError | CutOff):
        return True, _one_line(f"{type(error).__name__}: {error}")
    if TRANSPORT_ERRORS and isinstance(error, TRANSPORT_ERRORS):
        return True, _one_line(f"the stream was cut off ({type(error).__name__}: {error})")
    if isinstance(error, ValueError):  # an unreadable event in the stream
        return True, _one_line(f"an unreadable stream ({type(error).__name__}: {error})")
    return False, _one_line(f"{type(error).__name__}: {error}")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
