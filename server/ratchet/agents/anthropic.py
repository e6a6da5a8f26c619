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
import os
import time
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic

from ..config import Config
from ..errors import RatchetError
from ..experiment import Proposal, ProposalContext
from ..redaction import redact, redact_text
from . import prompt
from .editing import Refused, ToolCall, WorkingCopy, tool_definitions
from .pricing import Usage, price_per_mtok
from .streaming import (
    ATTEMPTS,
    Attempts,
    CutOff,
    Fatal,
    RetryPolicy,
    Turn,
    accumulate,
    count_attempts,
    describe_error,
    with_cache_mark,
)

__all__ = ["AnthropicAgent", "RetryPolicy", "Usage", "price_per_mtok"]

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_TURNS = 20
MAX_STRIKES = 2  # refused tool calls: the first is explained, the second ends the proposal
_Ending = tuple[str, str | None]  # (description, failure): how a proposal ended
DESCRIPTION_CHARS = 200


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
            max_retries=self.retry.attempts - 1,
            timeout=request_timeout_s,
            middleware=[count_attempts],
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
        except Fatal as fatal:
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
        system, messages = self._opening(context, session)
        tools = tool_definitions(context.editable_path)
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
            messages.append({"role": "assistant", "content": turn.echo()})
            if turn.tool_calls:
                ended, reply = self._run_calls(session, turn, turn_number)
            else:
                ended, reply = self._without_tools(session, turn, turn_number)
            if ended is not None:
                return ended
            messages.append({"role": "user", "content": reply})
        return "", f"the model did not finish within {self.max_turns} turns"

    def _opening(
        self, context: ProposalContext, session: _Session
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The system blocks and the first message, traced as the prompt."""
        system: list[dict[str, Any]] = [
            {"type": "text", "text": prompt.system_prompt(context.editable_path)},
            {
                "type": "text",
                "text": prompt.program_block(context),
                "cache_control": {"type": "ephemeral"},  # tools + system + program: stable
            },
        ]
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
        return system, messages

    def _without_tools(
        self, session: _Session, turn: Turn, turn_number: int
    ) -> tuple[_Ending | None, list[dict[str, Any]]]:
        """A turn that called no tool: the end when the file changed (the text describes it);
        else the model is told to use the tools, and the second time it fails."""
        if session.copy.changed:
            return (_first_line(turn.text) or "(no description)", None), []
        problem = (
            "You did not call a tool. Edit the file with replace_text or insert_text, "
            "then call finish with a one-line description."
        )
        if turn.stop_reason == "max_tokens":
            problem = "Your answer was cut off at max_tokens. " + problem
        if self._strike(session, turn_number, "no tool call", problem):
            return ("", f"the model refused twice: {problem}"), []
        return None, [{"type": "text", "text": problem}]

    def _run_calls(
        self, session: _Session, turn: Turn, turn_number: int
    ) -> tuple[_Ending | None, list[dict[str, Any]]]:
        """The turn's tool calls, each traced: the end when one finishes the proposal or a
        second is refused; else their results for the model."""
        results: list[dict[str, Any]] = []
        for call in turn.tool_calls:
            outcome, is_error, finished = self._run_tool(call, session.copy, turn)
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
                return (finished, None), []
            if is_error and self._strike(session, turn_number, call.name, outcome):
                return ("", f"a second refused tool call ({call.name}): {outcome}"), []
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": outcome,
                    **({"is_error": True} if is_error else {}),
                }
            )
        return None, results

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
                raise Refused(call.problem)
            args = call.input
            if call.name == "finish":
                description = args.get("description")
                if not isinstance(description, str) or not description.strip():
                    raise Refused("`description` must be a non-empty one-line string")
                if not copy.changed:
                    raise Refused(
                        "the file is unchanged: make an edit with replace_text or insert_text "
                        "before calling finish"
                    )
                return "finished", False, _first_line(description)
            if call.name not in ("view_file", "replace_text", "insert_text"):
                raise Refused(
                    f"there is no tool `{call.name}`; use view_file, replace_text, "
                    "insert_text or finish"
                )
            copy.check_path(args.get("path"))
            if call.name == "view_file":
                return copy.view(args.get("start_line"), args.get("end_line")), False, None
            if call.name == "replace_text":
                return copy.replace(args.get("old_text"), args.get("new_text")), False, None
            return copy.insert(args.get("after_line"), args.get("text")), False, None
        except Refused as refused:
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
        """Streams one turn. What fails before the stream starts the SDK has retried
        already; a stream cut or failing midway is tried again here, within the same count.
        Which of the two it was is told by where it was raised, not by its type: the SDK
        raises `APIConnectionError` for both from 2.17 on."""
        attempts = Attempts(session.trace, turn_number, self._describe)
        token = ATTEMPTS.set(attempts)
        try:
            return await self._attempts(system, tools, with_cache_mark(messages), session)
        finally:
            ATTEMPTS.reset(token)
            session.requests += attempts.count

    async def _attempts(
        self, system: list[Any], tools: list[Any], messages: list[Any], session: _Session
    ) -> Turn:
        attempts = ATTEMPTS.get()
        assert attempts is not None
        cuts = 0
        while True:
            turn = Turn()
            try:
                await self._stream(system, tools, messages, turn)
                session.usage.add(turn.usage)
                return turn
            except Exception as error:
                session.usage.add(turn.usage)  # a cut stream was still billed its input
                retryable, why = self._describe(error)
                if not turn.opened:  # the SDK's own retries are spent, or it gave up
                    if retryable and attempts.count > 1:
                        why = f"the Anthropic API failed {attempts.count} times; last: {why}"
                    raise Fatal(why) from None
                attempts.failed(error)
                if not retryable:
                    raise Fatal(why) from None
                if attempts.count >= self.retry.attempts:
                    raise Fatal(
                        f"the Anthropic API failed {attempts.count} times; last: {why}"
                    ) from None
                cuts += 1
                wait = self.retry.delay(cuts)
                session.trace[-1]["wait_s"] = round(wait, 3)
                await asyncio.sleep(wait)

    def _describe(self, error: Exception) -> tuple[bool, str]:
        """(retryable, a redacted one-line reason)."""
        retryable, why = describe_error(error, self.api_key_env)
        return retryable, redact_text(why, [self._key])

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
        turn.opened = True
        try:
            async for event in stream:
                accumulate(turn, event.to_dict())
        finally:
            await stream.close()
        if not turn.done:
            raise CutOff("the stream ended before message_stop")


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip().strip("`*# ").strip()
        if line:
            return line[:DESCRIPTION_CHARS]
    return ""
