"""The end-to-end test's Messages API: tests/fake_anthropic.py on 127.0.0.1, answering every
proposal of the anthropic agent with one edit (WIDTH 8 -> 12) and its description. Prints its
base URL, then serves until stdin closes; each key it is sent goes, one a line, to KEYS.

    python fake_api.py KEYS
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from fake_anthropic import FakeAnthropic, Turn, tool, turn  # noqa: E402


def main(keys: Path) -> None:
    api = FakeAnthropic()

    def answer(body: dict[str, Any]) -> Turn:
        with keys.open("a") as out:
            out.write(f"{api.requests[-1].api_key}\n")
        last = body.get("messages", [{}])[-1].get("content")
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        if answered:
            return turn(tool("finish", {"description": "WIDTH 8 -> 12 (from the stand-in API)"}))
        edit = {"path": "train.py", "old_text": "WIDTH = 8", "new_text": "WIDTH = 12"}
        return turn(tool("replace_text", edit))

    api.script(*[answer] * 200)
    with api:
        print(api.base_url, flush=True)
        sys.stdin.read()  # until the test closes it (or ends)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
