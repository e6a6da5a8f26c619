"""A local stand-in for the Anthropic Messages API, scripted per test.

It listens on 127.0.0.1 (a free port), speaks `POST /v1/messages` with streaming (SSE over
chunked HTTP/1.1, as the real API does) and tool use, and answers each request with the next
entry of its script: a streamed turn, an HTTP error, a stream cut off midway, or an error
event inside the stream. Every request body and its headers are kept for the test to check.

    with FakeAnthropic() as api:
        api.script(turn(tool("replace_text", {...})), turn(tool("finish", {...})))
        agent = AnthropicAgent(base_url=api.base_url, ...)
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from loopback_http import LoopbackHTTP

# --- what a script is made of ---------------------------------------------------------------


@dataclass
class Block:
    kind: str  # text | tool_use | thinking
    text: str = ""
    name: str = ""
    raw_json: str = ""  # the tool input exactly as streamed (may be malformed on purpose)
    id: str = ""


def text(value: str) -> Block:
    return Block("text", text=value)


def thinking(value: str) -> Block:
    return Block("thinking", text=value)


def tool(name: str, arguments: dict[str, Any], id: str = "") -> Block:
    return Block("tool_use", name=name, raw_json=json.dumps(arguments), id=id)


def tool_raw(name: str, raw_json: str, id: str = "") -> Block:
    """A tool call whose streamed input is `raw_json` verbatim (e.g. broken JSON)."""
    return Block("tool_use", name=name, raw_json=raw_json, id=id)


@dataclass
class Turn:
    blocks: list[Block]
    stop_reason: str = "tool_use"
    usage: dict[str, int] = field(default_factory=dict)
    cut_after: int | None = None  # drop the connection after this many SSE events
    error_after: int | None = None  # send an `event: error` after this many events
    error_type: str = "overloaded_error"


def turn(*blocks: Block, stop_reason: str | None = None, **usage: int) -> Turn:
    has_tool = any(b.kind == "tool_use" for b in blocks)
    return Turn(list(blocks), stop_reason or ("tool_use" if has_tool else "end_turn"), usage)


def cut(*blocks: Block, after: int = 4) -> Turn:
    """A streamed turn whose connection drops after `after` events (no final chunk)."""
    result = turn(*blocks)
    result.cut_after = after
    return result


def stream_error(error_type: str = "overloaded_error", after: int = 1) -> Turn:
    """A 200 stream that sends an `event: error` after `after` events."""
    result = turn(text("…"))
    result.error_after = after
    result.error_type = error_type
    return result


@dataclass
class HttpError:
    status: int
    type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def http_error(
    status: int, type: str = "", message: str = "", headers: dict[str, str] | None = None
) -> HttpError:
    default = {
        400: "invalid_request_error",
        401: "authentication_error",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    return HttpError(
        status, type or default.get(status, "api_error"), message or f"fake {status}", headers or {}
    )


Reply = Turn | HttpError
Entry = Reply | Callable[[dict[str, Any]], Reply]


# --- the server -----------------------------------------------------------------------------


@dataclass
class Request:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def api_key(self) -> str | None:
        """The key as sent: `x-api-key`, or an `Authorization: Bearer` header."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of this request's last (user) message."""
        if not self.messages:
            return []
        content = self.messages[-1].get("content", [])
        if isinstance(content, str):
            return []
        return [block for block in content if block.get("type") == "tool_result"]


class FakeAnthropic:
    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._ids = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                try:
                    fake._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client went away (a time-out test)

        self._http = LoopbackHTTP(Handler, poll_s=0.02)

    # --- control ---

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def script(self, *entries: Entry) -> None:
        with self._lock:
            self._entries.extend(entries)

    @property
    def remaining(self) -> int:
        return len(self._entries)

    def start(self) -> FakeAnthropic:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- answering ---

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}_{self._ids:04d}"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"unreadable": raw.decode("utf-8", "replace")}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(Request(body, headers))
            entry = self._entries.pop(0) if self._entries else None
        if handler.path.split("?")[0] != "/v1/messages":
            return self._error(handler, HttpError(404, "not_found_error", "no such path"))
        if entry is None:
            return self._error(
                handler,
                HttpError(400, "invalid_request_error", "fake server: the script is exhausted"),
            )
        reply = entry(body) if callable(entry) else entry
        if isinstance(reply, HttpError):
            return self._error(handler, reply)
        if not body.get("stream"):
            return self._error(
                handler, HttpError(400, "invalid_request_error", "fake server: only streaming")
            )
        self._stream(handler, reply, body)

    def _error(self, handler: BaseHTTPRequestHandler, error: HttpError) -> None:
        payload = json.dumps(
            {"type": "error", "error": {"type": error.type, "message": error.message}}
        ).encode()
        handler.send_response(error.status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        handler.send_header("request-id", self._next_id("req"))
        for name, value in error.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()

    def _events(self, reply: Turn, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        usage = {
            "input_tokens": 100,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        usage.update({k: v for k, v in reply.usage.items() if k != "output_tokens"})
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": self._next_id("msg"),
                        "type": "message",
                        "role": "assistant",
                        "model": body.get("model", "claude-fake"),
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": usage,
                    },
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(reply.blocks):
            if block.kind == "text":
                start: dict[str, Any] = {"type": "text", "text": ""}
                halves = _halves(block.text)
                deltas = [{"type": "text_delta", "text": piece} for piece in halves]
            elif block.kind == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
                deltas = [{"type": "thinking_delta", "thinking": block.text}]
                deltas.append({"type": "signature_delta", "signature": "sig-" + block.text[:8]})
            else:
                start = {
                    "type": "tool_use",
                    "id": block.id or self._next_id("toolu"),
                    "name": block.name,
                    "input": {},
                }
                deltas = [
                    {"type": "input_json_delta", "partial_json": piece}
                    for piece in _halves(block.raw_json)
                ]
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            for delta in deltas:
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": reply.usage.get("output_tokens", 50)},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _stream(self, handler: BaseHTTPRequestHandler, reply: Turn, body: dict[str, Any]) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.send_header("cache-control", "no-cache")
        handler.send_header("transfer-encoding", "chunked")
        handler.send_header("request-id", self._next_id("req"))
        handler.end_headers()
        events = self._events(reply, body)
        for number, (name, data) in enumerate(events):
            if reply.cut_after is not None and number >= reply.cut_after:
                # Drop the connection mid-body: no terminating chunk.
                handler.wfile.flush()
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
                return
            if reply.error_after is not None and number >= reply.error_after:
                error = {
                    "type": "error",
                    "error": {"type": reply.error_type, "message": "Overloaded"},
                }
                _chunk(handler, f"event: error\ndata: {json.dumps(error)}\n\n")
                break
            _chunk(handler, f"event: {name}\ndata: {json.dumps(data)}\n\n")
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


def _chunk(handler: BaseHTTPRequestHandler, payload: str) -> None:
    data = payload.encode("utf-8")
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def _halves(value: str) -> list[str]:
    """Streams a value in two pieces, as the API streams deltas in several."""
    if len(value) < 2:
        return [value] if value else []
    middle = len(value) // 2
    return [value[:middle], value[middle:]]
