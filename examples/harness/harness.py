"""A task agent's harness. EDITABLE: the loop improves this file.

This is the "task agent" of the meta-agent / task-agent split: a model (through the
anthropic SDK) answers short questions (multi-step arithmetic, unit conversions, date
arithmetic), and this file is everything around it that the proposing agent may change: the
system prompt, the tools the model is given, how their calls are run and how the turns are
routed. The locked `evaluate.py` scores it on `cases.jsonl`, and shows each failed case's
transcript (what `solve` wrote to its log) to the proposing agent.

The run has a key of its own (TASK_API_KEY, never the proposing agent's) and reaches one
host only ([sandbox] hosts in ratchet.toml); every other address is shut.

    python harness.py --selftest      # the loop's `command`: the file loads, its tools are sound
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

MODEL = os.environ.get("TASK_MODEL", "claude-haiku-4-5")
MAX_TOKENS = 512
MAX_TURNS = 4

SYSTEM = "You answer short questions. Reply with the answer only, nothing else."

# The tools the model may call: none yet (the model does the arithmetic in its head).
TOOLS: list[dict[str, Any]] = []


def run_tool(name: str, arguments: dict[str, Any]) -> str:
    """What a tool call returns to the model."""
    return f"unknown tool {name}"


def client() -> Any:
    import anthropic

    return anthropic.Anthropic(
        api_key=os.environ.get("TASK_API_KEY", ""),
        base_url=os.environ.get("TASK_BASE_URL") or None,
        max_retries=1,
        timeout=60,
    )


def solve(api: Any, question: str, log: list[str]) -> str:
    """One case: the model's final text, after running the tools it calls. Each turn goes to
    `log`, the transcript the evaluator shows for a failed case."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    for _ in range(MAX_TURNS):
        options: dict[str, Any] = {"tools": TOOLS} if TOOLS else {}
        with api.messages.stream(
            model=MODEL, max_tokens=MAX_TOKENS, system=SYSTEM, messages=messages, **options
        ) as stream:
            reply = stream.get_final_message()
        calls = [block for block in reply.content if block.type == "tool_use"]
        said = "".join(block.text for block in reply.content if block.type == "text").strip()
        if said or not calls:
            log.append(f"model: {said!r}")
        if not calls:
            return said
        messages.append({"role": "assistant", "content": [b.model_dump() for b in reply.content]})
        results = []
        for call in calls:
            result = run_tool(call.name, call.input)
            log.append(f"tool {call.name}({json.dumps(call.input)}) -> {result!r}")
            results.append({"type": "tool_result", "tool_use_id": call.id, "content": result})
        messages.append({"role": "user", "content": results})
    log.append(f"no answer after {MAX_TURNS} turns")
    return ""


def _selftest() -> int:
    json.dumps(TOOLS)  # the tools are plain JSON, as the API wants them
    print(f"selftest: {len(TOOLS)} tool(s), model {MODEL}")
    return 0


if __name__ == "__main__":
    sys.exit(_selftest() if sys.argv[1:] == ["--selftest"] else 2)
