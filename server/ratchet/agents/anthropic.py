"""The `anthropic` agent: Claude through the Messages API (official SDK, streaming, tool use).

The model edits an in-memory copy of the editable file through four tools scoped to it
(view, replace an exact span, insert after a line, finish with a one-line description).
Nothing it does reaches the disk: the engine receives the new text in a Proposal and checks,
runs and judges it like any other.

Failures never raise: a refused or malformed tool call is explained to the model once; a
second one, an API error that retries did not cure, or a time-out ends the proposal with
`Proposal.failure` set, which the engine records as `invalid`. The API key is read once from
the environment and removed from everything this module returns.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import posixpath
import random
import time
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic

from ..config import Config
from ..errors import RatchetError
from ..experiment import Proposal, ProposalContext
from ..traces import redact, redact_text
from . import prompt

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_TURNS = 20
MAX_STRIKES = 2  # refused tool calls: the first is explained, the second ends the proposal
DESCRIPTION_CHARS = 200
TOOL_RESULT_CHARS = 60_000

# --- price table ---------------------------------------------------------------------------

# (name fragment, USD per million input tokens, per million output tokens); first match wins.
PRICES: tuple[tuple[str, float, float], ...] = (
    ("opus-4-1", 15.0, 75.0),
    ("opus-4-0", 15.0, 75.0),
    ("opus-4-2025", 15.0, 75.0),
    ("3-opus", 15.0, 75.0),
    ("opus", 5.0, 25.0),  # opus 4.5 and later
    ("3-5-haiku", 0.8, 4.0),
    ("3-haiku", 0.25, 1.25),
    ("haiku", 1.0, 5.0),  # haiku 4.5 and later
    ("sonnet", 3.0, 15.0),
)
DEFAULT_PRICE = (5.0, 25.0)  # an unknown family: the opus tier, so a cost cap errs early
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


def price_per_mtok(model: str) -> tuple[float, float]:
    name = model.lower()
    for fragment, price_in, price_out in PRICES:
        if fragment in name:
            return price_in, price_out
    return DEFAULT_PRICE


@dataclass
class Usage:
    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.output_tokens += other.output_tokens

    @property
    def all_input(self) -> int:
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def cost_usd(self, model: str) -> float:
        price_in, price_out = price_per_mtok(model)
        dollars = (
            self.input_tokens * price_in
            + self.cache_write_tokens * price_in * CACHE_WRITE_FACTOR
            + self.cache_read_tokens * price_in * CACHE_READ_FACTOR
            + self.output_tokens * price_out
        )
        return dollars / 1_000_000

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "output_tokens": self.output_tokens,
        }


# --- retries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter, for 429, 5xx, overloaded and cut streams."""

    attempts: int = 6  # tries of one request in all
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        backoff *= 0.75 + 0.5 * random.random()
        if retry_after is not None and retry_after > 0:
            backoff = max(backoff, retry_after)
        return min(backoff, self.max_delay_s)


_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
_RETRY_TYPES = {"overloaded_error", "rate_limit_error", "api_error", "timeout_error"}


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's network errors (the SDK uses httpx, or httpx2 in later versions):
    raised, unwrapped, when a streamed body is cut off midway."""
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


_TRANSPORT_ERRORS = _transport_errors()


class _CutOff(Exception):
    """The stream ended before `message_stop`."""


class _Fatal(Exception):
    """An API error that retrying will not cure (bad key, bad request)."""


# --- the tools -----------------------------------------------------------------------------


def tool_definitions(editable_path: str) -> list[dict[str, Any]]:
    path = {
        "type": "string",
        "description": f"The file to work on; it must be exactly `{editable_path}`.",
    }
    return [
        {
            "name": "view_file",
            "description": "Show the current text of your working copy of the editable file "
            "with line numbers, optionally only lines start_line..end_line (1-based).",
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": path,
                    "start_line": {"type": "integer", "minimum": 1},
                    "end_line": {"type": "integer", "minimum": 1},
                },
                "required": ["path"],
            },
        },
        {
            "name": "replace_text",
            "description": "Replace one exact span of the file. `old_text` must occur exactly "
            "once, character for character (indentation included); give enough lines "
            "around the change to make it unique.",
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": path,
                    "old_text": {"type": "string"},
                    "new_text": {"type": "string"},
                },
                "required": ["path", "old_text", "new_text"],
            },
        },
        {
            "name": "insert_text",
            "description": "Insert lines after line `after_line` (1-based; 0 inserts at the "
            "top of the file).",
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": path,
                    "after_line": {"type": "integer", "minimum": 0},
                    "text": {"type": "string"},
                },
                "required": ["path", "after_line", "text"],
            },
        },
        {
            "name": "finish",
            "description": "End your turn once the edit is complete, with a one-line "
            "description of the idea (under 100 characters).",
            "input_schema": {
                "type": "object",
                "properties": {"description": {"type": "string"}},
                "required": ["description"],
            },
        },
    ]


class _Refused(Exception):
    """A tool call that is refused; its message goes back to the model."""


@dataclass
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]
    problem: str | None = None  # malformed input (bad JSON, not an object)


@dataclass
class Turn:
    """One assistant message, accumulated from the stream."""

    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
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


class WorkingCopy:
    """The editable file as the model has edited it so far."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.original = text
        self.text = text

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def check_path(self, given: Any) -> None:
        if not isinstance(given, str) or not given.strip():
            raise _Refused(f"`path` is required and must be `{self.path}`")
        normal = posixpath.normpath(given.strip().replace("\\", "/"))
        if normal == self.path:
            return
        if normal == ".." or normal.startswith("../") or posixpath.isabs(normal):
            raise _Refused(
                f"`{given}` is outside the repository; only `{self.path}` may be viewed or edited"
            )
        raise _Refused(
            f"`{given}` is not the editable file; only `{self.path}` may be viewed or edited "
            "(every other file is locked)"
        )

    def view(self, start: Any = None, end: Any = None) -> str:
        lines = self.text.splitlines()
        first = _optional_int(start, "start_line") or 1
        last = _optional_int(end, "end_line") or len(lines)
        if first < 1 or (lines and first > len(lines)) or last < first:
            raise _Refused(
                f"no lines {first}..{last}: the file has {len(lines)} lines "
                "(line numbers start at 1)"
            )
        width = len(str(max(last, 1)))
        shown = [f"{n:>{width}}\t{lines[n - 1]}" for n in range(first, min(last, len(lines)) + 1)]
        body = "\n".join(shown) if shown else "(the file is empty)"
        return _clip(body, TOOL_RESULT_CHARS)

    def replace(self, old: Any, new: Any) -> str:
        if not isinstance(old, str) or not isinstance(new, str):
            raise _Refused("`old_text` and `new_text` must both be strings")
        if not old:
            raise _Refused("`old_text` is empty; give the exact text to replace")
        count = self.text.count(old)
        if count == 0:
            raise _Refused(
                "`old_text` was not found in the file; it must match exactly, whitespace "
                "and indentation included. Use view_file to see the current text."
            )
        if count > 1:
            raise _Refused(
                f"`old_text` occurs {count} times; include more surrounding lines so it "
                "occurs exactly once"
            )
        if old == new:
            raise _Refused("`new_text` is the same as `old_text`: nothing would change")
        start = self.text.index(old)
        self.text = self.text[:start] + new + self.text[start + len(old) :]
        line = self.text.count("\n", 0, start) + 1
        return f"replaced 1 occurrence at line {line}"

    def insert(self, after: Any, text: Any) -> str:
        if isinstance(after, bool) or not isinstance(after, int):
            raise _Refused("`after_line` must be a whole number (0 for the top of the file)")
        if not isinstance(text, str) or not text:
            raise _Refused("`text` must be a non-empty string")
        lines = self.text.splitlines(keepends=True)
        if after < 0 or after > len(lines):
            raise _Refused(f"`after_line` {after} is outside the file (0..{len(lines)})")
        if not text.endswith("\n"):
            text += "\n"
        if after == len(lines) and lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines[after:after] = [text]
        self.text = "".join(lines)
        return f"inserted {text.count(chr(10))} line(s) after line {after}"


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused(f"`{name}` must be a whole number")
    return value


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"


# --- the agent -----------------------------------------------------------------------------


@dataclass
class _Session:
    """One proposal's state, kept outside the conversation so a time-out can still report
    what was spent."""

    copy: WorkingCopy
    usage: Usage = field(default_factory=Usage)
    trace: list[dict[str, Any]] = field(default_factory=list)
    strikes: int = 0
    requests: int = 0


class AnthropicAgent:
    kind = "anthropic"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key_env: str = "ANTHROPIC_API_KEY",
        base_url: str | None = None,
        max_tokens: int = 8192,
        timeout_s: float = 600.0,
        request_timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        max_turns: int = MAX_TURNS,
        environ: dict[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        key = env.get(api_key_env, "").strip()
        if not key:
            raise RatchetError(
                f"the anthropic agent needs an API key: set the environment variable "
                f"{api_key_env} (named by `api_key_env` in [agent] of ratchet.toml), or use "
                'kind = "mutate" for the offline agent'
            )
        self._key = key
        self.api_key_env = api_key_env
        self.model = model
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.max_turns = max_turns
        self.base_url = base_url or env.get("ANTHROPIC_BASE_URL") or None
        self._client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.base_url,
            max_retries=0,  # ours, below: bounded, logged in the trace, and testable
            timeout=request_timeout_s,
        )

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> AnthropicAgent:
        agent = config.agent
        options: dict[str, Any] = {
            "model": agent.model or DEFAULT_MODEL,
            "api_key_env": agent.api_key_env,
            "base_url": agent.base_url,
            "max_tokens": agent.max_tokens,
            "timeout_s": agent.timeout_s,
        }
        options.update(overrides)
        return cls(**options)

    @property
    def secrets(self) -> list[str]:
        """What must never be written: pass to traces.write_trace."""
        return [self._key]

    def __repr__(self) -> str:  # never the key
        return f"AnthropicAgent(model={self.model!r}, api_key_env={self.api_key_env!r})"

    async def close(self) -> None:
        await self._client.close()

    # --- one proposal ----------------------------------------------------------------------

    async def propose(self, context: ProposalContext) -> Proposal:
        started = time.monotonic()
        repair = context.repair_of
        source = repair.broken_text if repair else context.editable_text
        session = _Session(WorkingCopy(context.editable_path, source))
        try:
            description, failure = await asyncio.wait_for(
                self._converse(context, session), timeout=self.timeout_s
            )
        except _Fatal as fatal:
            description, failure = "", f"the Anthropic API call failed: {fatal}"
        except TimeoutError:
            description, failure = (
                "",
                (
                    f"the anthropic agent did not finish within {self.timeout_s:g}s "
                    "([agent] timeout)"
                ),
            )
        except Exception as error:  # the loop goes on whatever the SDK throws
            failure = f"the anthropic agent failed: {type(error).__name__}: {error}"
            description = ""
        return self._result(context, session, description, failure, started)

    def _result(
        self,
        context: ProposalContext,
        session: _Session,
        description: str,
        failure: str | None,
        started: float,
    ) -> Proposal:
        cost = session.usage.cost_usd(self.model)
        if failure is None and not session.copy.changed:
            failure = "the agent finished without changing the file"
        session.trace.append(
            {
                "kind": "result",
                "description": description,
                "failure": failure,
                "requests": session.requests,
                "usage": session.usage.as_dict(),
                "cost_usd": round(cost, 6),
            }
        )
        secrets = [self._key]
        return Proposal(
            edits={context.editable_path: session.copy.text} if failure is None else {},
            description=redact_text(description or "(no description)", secrets),
            trace=redact(session.trace, secrets),
            agent_seconds=time.monotonic() - started,
            cost_usd=cost,
            input_tokens=session.usage.all_input,
            output_tokens=session.usage.output_tokens,
            failure=redact_text(failure, secrets) if failure else None,
        )

    async def _converse(
        self, context: ProposalContext, session: _Session
    ) -> tuple[str, str | None]:
        """The tool loop. Returns (description, failure)."""
        system: list[dict[str, Any]] = [
            {"type": "text", "text": prompt.system_prompt(context.editable_path)},
            {
                "type": "text",
                "text": prompt.program_block(context),
                "cache_control": {"type": "ephemeral"},  # tools + system + program: stable
            },
        ]
        tools = tool_definitions(context.editable_path)
        user_text = prompt.context_prompt(context)
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "text", "text": user_text}]}
        ]
        session.trace.append(
            {
                "kind": "prompt",
                "model": self.model,
                "experiment": context.experiment,
                "repair_attempt": context.repair_of.attempt if context.repair_of else None,
                "system": system[0]["text"],
                "program": system[1]["text"],
                "user": user_text,
            }
        )
        copy = session.copy
        for turn_number in range(1, self.max_turns + 1):
            turn = await self._request(system, tools, messages, session, turn_number)
            session.trace.append(
                {
                    "kind": "response",
                    "turn": turn_number,
                    "stop_reason": turn.stop_reason,
                    "content": turn.for_trace(),
                    "usage": turn.usage.as_dict(),
                }
            )
            if turn.stop_reason == "refusal":
                return "", "the model refused to propose an edit"
            calls = turn.tool_calls
            messages.append({"role": "assistant", "content": turn.echo()})
            if not calls:
                if copy.changed:
                    return _first_line(turn.text) or "(no description)", None
                problem = (
                    "You did not call a tool. Edit the file with replace_text or insert_text, "
                    "then call finish with a one-line description."
                )
                if turn.stop_reason == "max_tokens":
                    problem = "Your answer was cut off at max_tokens. " + problem
                if self._strike(session, turn_number, "no tool call", problem):
                    return "", f"the model refused twice: {problem}"
                messages.append({"role": "user", "content": [{"type": "text", "text": problem}]})
                continue
            results: list[dict[str, Any]] = []
            for call in calls:
                outcome, is_error, finished = self._run_tool(call, copy, turn)
                session.trace.append(
                    {
                        "kind": "tool",
                        "turn": turn_number,
                        "name": call.name,
                        "input": call.input,
                        "result": outcome,
                        "is_error": is_error,
                    }
                )
                if finished is not None:
                    return finished, None
                if is_error and self._strike(session, turn_number, call.name, outcome):
                    return "", (f"a second refused tool call ({call.name}): {outcome}")
                results.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": outcome,
                        **({"is_error": True} if is_error else {}),
                    }
                )
            messages.append({"role": "user", "content": results})
        return "", f"the model did not finish within {self.max_turns} turns"

    def _strike(self, session: _Session, turn: int, what: str, problem: str) -> bool:
        session.strikes += 1
        session.trace.append(
            {
                "kind": "refused",
                "turn": turn,
                "what": what,
                "problem": problem,
                "strike": session.strikes,
            }
        )
        return session.strikes >= MAX_STRIKES

    def _run_tool(
        self, call: ToolCall, copy: WorkingCopy, turn: Turn
    ) -> tuple[str, bool, str | None]:
        """(result text, is_error, the description if this call finished the proposal)."""
        try:
            if call.problem:
                raise _Refused(call.problem)
            args = call.input
            if call.name == "finish":
                description = args.get("description")
                if not isinstance(description, str) or not description.strip():
                    raise _Refused("`description` must be a non-empty one-line string")
                if not copy.changed:
                    raise _Refused(
                        "the file is unchanged: make an edit with replace_text or insert_text "
                        "before calling finish"
                    )
                return "finished", False, _first_line(description)
            if call.name not in ("view_file", "replace_text", "insert_text"):
                raise _Refused(
                    f"there is no tool `{call.name}`; use view_file, replace_text, "
                    "insert_text or finish"
                )
            copy.check_path(args.get("path"))
            if call.name == "view_file":
                return copy.view(args.get("start_line"), args.get("end_line")), False, None
            if call.name == "replace_text":
                return copy.replace(args.get("old_text"), args.get("new_text")), False, None
            return copy.insert(args.get("after_line"), args.get("text")), False, None
        except _Refused as refused:
            return f"refused: {refused}", True, None

    # --- the API, streamed, with retries ---------------------------------------------------

    async def _request(
        self,
        system: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        session: _Session,
        turn_number: int,
    ) -> Turn:
        attempt = 0
        while True:
            attempt += 1
            session.requests += 1
            turn = Turn()
            try:
                await self._stream(system, tools, _with_cache_mark(messages), turn)
                session.usage.add(turn.usage)
                return turn
            except _Fatal:
                session.usage.add(turn.usage)
                raise
            except Exception as error:
                session.usage.add(turn.usage)  # a cut stream was still billed its input
                retryable, why, retry_after = self._classify(error)
                session.trace.append(
                    {
                        "kind": "api_error",
                        "turn": turn_number,
                        "attempt": attempt,
                        "error": why,
                        "retryable": retryable,
                    }
                )
                if not retryable:
                    raise _Fatal(why) from None
                if attempt >= self.retry.attempts:
                    raise _Fatal(f"the Anthropic API failed {attempt} times; last: {why}") from None
                wait = self.retry.delay(attempt, retry_after)
                session.trace[-1]["wait_s"] = round(wait, 3)
                await asyncio.sleep(wait)

    def _classify(self, error: Exception) -> tuple[bool, str, float | None]:
        """(retryable, a redacted one-line reason, the server's retry-after in seconds)."""
        secrets = [self._key]
        if isinstance(error, anthropic.APIStatusError):
            body: dict[str, Any] = error.body if isinstance(error.body, dict) else {}
            detail: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
            kind = str(detail.get("type") or "")
            message = str(detail.get("message") or error.message)
            status = error.status_code
            retry_after = _retry_after(error)
            why = f"HTTP {status}" + (f" {kind}" if kind else "") + f": {message}"
            if status == 401 or kind == "authentication_error":
                why += f" (check the key in {self.api_key_env})"
            retryable = status in _RETRY_STATUS or status >= 500 or kind in _RETRY_TYPES
            return retryable, redact_text(_one_line(why), secrets), retry_after
        if isinstance(error, anthropic.APIConnectionError | _CutOff):
            return True, redact_text(_one_line(f"{type(error).__name__}: {error}"), secrets), None
        if _TRANSPORT_ERRORS and isinstance(error, _TRANSPORT_ERRORS):
            why = f"the stream was cut off ({type(error).__name__}: {error})"
            return True, redact_text(_one_line(why), secrets), None
        if isinstance(error, ValueError):  # an unreadable event in the stream
            why = f"an unreadable stream ({type(error).__name__}: {error})"
            return True, redact_text(_one_line(why), secrets), None
        return False, redact_text(_one_line(f"{type(error).__name__}: {error}"), secrets), None

    async def _stream(
        self,
        system: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        turn: Turn,
    ) -> None:
        stream = await self._client.messages.create(
            model=self.model,
            max_tokens=self.max_tokens,
            system=cast(Any, system),
            tools=cast(Any, tools),
            messages=cast(Any, messages),
            stream=True,
        )
        try:
            async for event in stream:
                _accumulate(turn, event.to_dict())
        finally:
            await stream.close()
        if not turn.done:
            raise _CutOff("the stream ended before message_stop")


def _accumulate(turn: Turn, event: dict[str, Any]) -> None:
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


def _with_cache_mark(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with a cache breakpoint on its last block, so each turn of the tool
    loop reads the previous turns from the cache."""
    marked = [dict(m) for m in messages]
    last = marked[-1]
    content = [dict(block) for block in last["content"]]
    content[-1]["cache_control"] = {"type": "ephemeral"}
    last["content"] = content
    return marked


def _retry_after(error: anthropic.APIStatusError) -> float | None:
    headers = getattr(error.response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip().strip("`*# ").strip()
        if line:
            return line[:DESCRIPTION_CHARS]
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
