"""An offline stand-in for the Anthropic Messages API: try the harness loop without a key.

    python standin.py --port 8765        # then point TASK_BASE_URL and ANTHROPIC_BASE_URL at it

It listens on 127.0.0.1 only, speaks `POST /v1/messages` (streamed as server-sent events, as
the SDK asks, or as one JSON body) and plays two models, told apart by the tools a request
offers:

- the task model (harness.py's requests). It fails in patterns a better harness fixes: without
  a `calculator` tool it does multi-step arithmetic in its head and often slips; without exact
  conversion factors in its system prompt it converts units with rounded ones; unless told to
  write dates as YYYY-MM-DD it writes "April 24, 2024". Some questions it gets wrong whatever
  the harness (about one in eight: it skips the tool and guesses). Given a table of reference
  answers in its prompt it answers those questions from the table, and on half of the others
  copies the answer of a listed question of the same kind, as a model anchored on its examples
  does. Every choice is a hash of the question and --seed: the same harness scores the same.
- the proposing model (Ratchet's `anthropic` agent: the view_file/replace_text/finish tools).
  Each proposal it makes the first edit of a fixed script that is not yet in the history it is
  shown and whose anchor is in the file: a calculator tool (run by the harness), a no-op (a
  larger max_tokens), the date format, the exact unit factors, and last an edit that learns
  the dev answers by heart (a table of every case of cases.jsonl in the system prompt): it wins
  dev and falls on the holdout.

Standard library only. Every request is kept in memory (`StandIn.requests`) for the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# --- the questions ------------------------------------------------------------------------

ARITHMETIC = re.compile(r"^What is ([\d()+*\- ]+)\?$")
UNITS = re.compile(r"^How many (\w+) are in ([\d.]+) (\w+)\? Answer to 2 decimal places\.$")
DATE = re.compile(r"^What date is (\d+) days (after|before) (\d{4}-\d{2}-\d{2})\?$")
# (to, from): the exact factor and the rounded one a model uses from memory
FACTORS = {
    ("kilometres", "miles"): (1.609344, 1.6),
    ("centimetres", "inches"): (2.54, 2.5),
    ("kilograms", "pounds"): (0.45359237, 0.45),
    ("litres", "gallons"): (3.785411784, 3.8),
    ("metres", "feet"): (0.3048, 0.3),
}
UNIT_RULE = "1 mile = 1.609344 km"  # in the system prompt: the model converts exactly
DATE_RULE = "YYYY-MM-DD"  # in the system prompt: the model writes ISO dates
REFERENCE = re.compile(r"^Q: (.+?) => (.+)$", re.MULTILINE)


def kind(question: str) -> str:
    for name, pattern in (("arithmetic", ARITHMETIC), ("units", UNITS), ("date", DATE)):
        if pattern.match(question):
            return name
    return "other"


def truth(question: str) -> str:
    """The right answer, in the format the evaluator compares."""
    if found := ARITHMETIC.match(question):
        return str(_arithmetic(found.group(1)))
    if found := UNITS.match(question):
        exact, _ = FACTORS[(found.group(1), found.group(3))]
        return f"{float(found.group(2)) * exact:.2f}"
    if found := DATE.match(question):
        return _date(found).isoformat()
    raise ValueError(f"not a question of the benchmark: {question!r}")


def _arithmetic(expression: str) -> int:
    if not re.fullmatch(r"[\d()+*\- ]+", expression) or "**" in expression:
        raise ValueError(expression)  # a power could keep the stand-in busy for ever
    return int(eval(expression, {"__builtins__": {}}))  # digits, + - * and brackets only


def _date(found: re.Match[str]) -> datetime.date:
    days = int(found.group(1)) * (1 if found.group(2) == "after" else -1)
    return datetime.date.fromisoformat(found.group(3)) + datetime.timedelta(days=days)


# --- the task model -----------------------------------------------------------------------


@dataclass
class Block:
    type: str  # text | tool_use
    text: str = ""
    name: str = ""
    input: dict[str, Any] | None = None


def _hash(seed: int, *parts: str) -> int:
    digest = hashlib.sha256("\0".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def slips(question: str, seed: int) -> bool:
    """A question the model gets wrong whatever the harness (about one in eight)."""
    return _hash(seed, "slip", question) % 8 == 0


def task_turn(body: dict[str, Any], seed: int) -> list[Block]:
    system = text_of(body.get("system"))
    messages = body.get("messages") or [{"content": ""}]
    last = messages[-1].get("content")
    results = [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []
    if results:  # the harness ran a tool: the model answers with what it returned
        return [Block("text", text_of(results[0].get("content")).strip())]
    question = text_of(messages[0].get("content")).strip()
    tools = {str(t.get("name")) for t in body.get("tools") or []}
    known = dict(REFERENCE.findall(system))
    if question in known:
        return [Block("text", known[question])]
    alike = [given for asked, given in known.items() if kind(asked) == kind(question)]
    if alike and _hash(seed, "anchor", question) % 2 == 0:
        return [Block("text", alike[_hash(seed, "which", question) % len(alike)])]
    return [answer(question, system, tools, seed)]


def answer(question: str, system: str, tools: set[str], seed: int) -> Block:
    try:
        right = truth(question)
    except ValueError:
        return Block("text", "I can only answer arithmetic, unit and date questions.")
    which = kind(question)
    if slips(question, seed):  # it skips the tool and guesses, a little off
        if which == "date":
            return Block("text", right[:-1] + ("1" if right[-1] != "1" else "2"))
        if which == "units":
            return Block("text", f"{float(right) + 0.01:.2f}")
        return Block("text", str(int(right) + 1))
    if which == "arithmetic":
        expression = question.removeprefix("What is ").removesuffix("?")
        if "calculator" in tools:
            return Block("tool_use", name="calculator", input={"expression": expression})
        if _hash(seed, "head", question) % 4 == 0:
            return Block("text", right)  # in its head, and right
        slip = (10, -10, 1, -1, 100)[_hash(seed, "by", question) % 5]
        return Block("text", str(int(right) + slip))
    if which == "units":
        found = UNITS.match(question)
        assert found
        exact, rough = FACTORS[(found.group(1), found.group(3))]
        factor = exact if UNIT_RULE in system else rough
        return Block("text", f"{float(found.group(2)) * factor:.2f}")
    found = DATE.match(question)
    assert found
    day = _date(found)
    spoken = f"{day:%B} {day.day}, {day.year}"
    return Block("text", day.isoformat() if DATE_RULE in system else spoken)


# --- the proposing model ------------------------------------------------------------------

SYSTEM_LINE = 'SYSTEM = "You answer short questions. Reply with the answer only, nothing else."'
CALCULATOR_TOOLS = """TOOLS: list[dict[str, Any]] = [
    {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression (integers, + - * and brackets).",
        "input_schema": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    }
]"""
CALCULATOR_RUN = '''def run_tool(name: str, arguments: dict[str, Any]) -> str:
    """What a tool call returns to the model."""
    if name == "calculator":
        return str(_calculate(ast.parse(str(arguments["expression"]), mode="eval").body))
    return f"unknown tool {name}"


def _calculate(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_calculate(node.operand)
    if isinstance(node, ast.BinOp):
        left, right = _calculate(node.left), _calculate(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
    raise ValueError("only integers, + - * and brackets")'''
UNIT_FACTORS = (
    "Convert units with exact factors: 1 mile = 1.609344 km, 1 inch = 2.54 cm, "
    "1 pound = 0.45359237 kg, 1 US gallon = 3.785411784 litres, 1 foot = 0.3048 m."
)


def _rule(line: str) -> tuple[str, str]:
    """An edit that adds one sentence to the system prompt, after SYSTEM's first line."""
    return SYSTEM_LINE, f"{SYSTEM_LINE}\nSYSTEM += {json.dumps(' ' + line)}"


def _memorise() -> list[tuple[str, str]]:
    """Every dev answer by heart, in the system prompt (read from cases.jsonl beside this
    file, as an agent that has seen the dev set over many nights would know them)."""
    cases = [json.loads(line) for line in (HERE / "cases.jsonl").read_text().splitlines() if line]
    table = "".join(f"\nQ: {c['question']} => {c['answer']}" for c in cases)
    return [_rule("Reference answers to questions seen before:" + table + "\n")]


SCRIPT: list[tuple[str, Any]] = [
    (
        "give the model a calculator tool and run its calls",
        [
            ("import json\n", "import ast\nimport json\n"),
            (
                "# The tools the model may call: none yet (the model does the arithmetic in its "
                "head).\nTOOLS: list[dict[str, Any]] = []",
                "# The tools the model may call: a calculator, run by run_tool.\n"
                + CALCULATOR_TOOLS,
            ),
            (
                "def run_tool(name: str, arguments: dict[str, Any]) -> str:\n"
                '    """What a tool call returns to the model."""\n'
                '    return f"unknown tool {name}"',
                CALCULATOR_RUN,
            ),
        ],
    ),
    ("raise max_tokens 512 -> 1024", [("MAX_TOKENS = 512", "MAX_TOKENS = 1024")]),
    ("format rule: write dates as YYYY-MM-DD", [_rule("Write every date as YYYY-MM-DD.")]),
    ("unit rule: exact conversion factors in the prompt", [_rule(UNIT_FACTORS)]),
    ("a table of reference answers in the system prompt", _memorise),
]


def propose_turn(body: dict[str, Any]) -> list[Block]:
    """The next scripted edit: the first not named in the prompt (the history, or running on
    another slot) and whose anchors are in the file shown; plain text (no edit) once the script
    is spent."""
    messages = body.get("messages") or [{"content": ""}]
    prompt = text_of(messages[0].get("content"))
    path = re.search(r"Editable file: `([^`]+)`", prompt)
    for description, edits in SCRIPT:
        if description in prompt:  # in the history, or running now: tried already
            continue
        pairs = edits() if callable(edits) else edits
        if all(prompt.count(old) == 1 for old, _ in pairs):
            calls = [
                Block(
                    "tool_use",
                    name="replace_text",
                    input={"path": path.group(1) if path else "", "old_text": o, "new_text": n},
                )
                for o, n in pairs
            ]
            return [*calls, Block("tool_use", name="finish", input={"description": description})]
    return [Block("text", "I have no further ideas for this harness.")]


# --- the server ---------------------------------------------------------------------------


@dataclass
class Request:
    role: str  # "proposer" | "task"
    body: dict[str, Any]
    api_key: str


class StandIn:
    """The server, on 127.0.0.1: `with StandIn() as api: ... api.base_url ...`."""

    def __init__(self, port: int = 0, seed: int = 0, proposer_key: str = "offline") -> None:
        self.seed = seed
        # Only the proposing agent's key gets the proposer: an edited harness (which holds the
        # task key) that asks in the proposer's shape gets the task model, not the scripted
        # edits, one of which holds every dev answer.
        self.proposer_key = proposer_key
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._ids = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body leave at once, no 40 ms wait

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                stand_in._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def serve(self) -> None:
        self._server.serve_forever()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return _send(handler, 400, "application/json", _error("the body is not JSON"))
        if handler.path.split("?")[0] != "/v1/messages" or not isinstance(body, dict):
            return _send(handler, 404, "application/json", _error("only POST /v1/messages"))
        names = {str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)}
        bearer = (handler.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        key = handler.headers.get("x-api-key") or bearer  # as sent; newer SDKs send a bearer
        shaped = "finish" in names and "replace_text" in names
        role = "proposer" if shaped and key == self.proposer_key else "task"
        with self._lock:
            self.requests.append(Request(role, body, key))
            self._ids += 1
            number = self._ids
        blocks = propose_turn(body) if role == "proposer" else task_turn(body, self.seed)
        message = _message(number, body, blocks)
        if body.get("stream"):
            _send(handler, 200, "text/event-stream", _events(message))
        else:
            _send(handler, 200, "application/json", json.dumps(message).encode())


def _message(number: int, body: dict[str, Any], blocks: list[Block]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        if block.type == "text":
            content.append({"type": "text", "text": block.text})
        else:
            ident = f"toolu_{number:05d}_{index}"
            call = {"type": "tool_use", "id": ident, "name": block.name, "input": block.input}
            content.append(call)
    return {
        "id": f"msg_{number:05d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "stand-in"),
        "content": content,
        "stop_reason": "tool_use" if any(b.type == "tool_use" for b in blocks) else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }


def _events(message: dict[str, Any]) -> bytes:
    """The message as the SSE events the API streams, each block in one delta."""
    start = {**message, "content": [], "stop_reason": None}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            head: dict[str, Any] = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            head = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            {"type": "content_block_start", "index": index, "content_block": head},
            {"type": "content_block_delta", "index": index, "delta": delta},
            {"type": "content_block_stop", "index": index},
        ]
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        },
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def _error(message: str) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    ).encode()


def _send(handler: BaseHTTPRequestHandler, status: int, kind: str, payload: bytes) -> None:
    handler.send_response(status)
    handler.send_header("content-type", kind)
    handler.send_header("content-length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def text_of(content: Any) -> str:
    """A message's, a system prompt's or a tool result's text, string or blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        blocks = [b for b in content if isinstance(b, dict)]
        return "\n".join(text_of(b.get("text", b.get("content", ""))) for b in blocks)
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description="The offline Messages API stand-in.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ.get("RATCHET_SEED", "0")),
        help="which questions the model slips on (default: $RATCHET_SEED, else 0)",
    )
    parser.add_argument(
        "--proposer-key",
        default="offline",
        help="the key the proposing agent sends (its ANTHROPIC_API_KEY); any other key, the "
        "task model's included, gets the task model (default: offline)",
    )
    args = parser.parse_args()
    stand_in = StandIn(args.port, args.seed, args.proposer_key)
    print(f"stand-in listening on {stand_in.base_url} (seed {args.seed})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a quiet stop
        stand_in.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
