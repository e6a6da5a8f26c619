"""Scores the harness on the labelled cases. LOCKED: the loop never changes this file.

Run: python evaluate.py   (TASK_API_KEY set; TASK_BASE_URL for another Messages API host)

A child process imports the edited harness.py and answers one JSON line per question (it is
given the questions, never the answers); this process compares and prints

    ---
    accuracy:   0.500000   the share of cases answered right (higher is better)
    answered:   8

Under Ratchet the answers are read first and `cases.jsonl` is deleted from the evaluator's
fresh copy (it is `eval_only`: the command's folder never has it), and this process is made
non-dumpable, so the edited code can read neither the file nor this memory, and nothing it
prints reaches this output.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

CASES = Path(__file__).resolve().parent / "cases.jsonl"

CHILD = """
import json, sys
sys.path.insert(0, ".")
import harness
api = harness.client()
for line in sys.stdin:
    case = json.loads(line)
    try:
        answer = harness.solve(api, case["question"])
    except Exception as error:
        answer = "error: %s: %s" % (type(error).__name__, error)
    sys.stdout.write(json.dumps({"id": case["id"], "answer": answer}) + "\\n")
    sys.stdout.flush()
"""


def main() -> int:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no child reads us
    if not CASES.exists():
        print("cases.jsonl is missing: run the evaluator in a fresh copy of the project")
        return 1
    cases = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    if "RATCHET_EXPERIMENT" in os.environ:
        CASES.unlink()  # Ratchet's fresh copy, for this evaluation only
    questions = "".join(
        json.dumps({"id": c["id"], "question": c["question"]}) + "\n" for c in cases
    )
    child = subprocess.run(
        [sys.executable, "-I", "-c", CHILD],
        input=questions,
        capture_output=True,
        text=True,
        timeout=300,
    )
    answers: dict[int, str] = {}
    for line in child.stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
            found = json.loads(line)
            answers.setdefault(int(found["id"]), str(found["answer"]))
    right = 0
    for case in cases:
        given = answers.get(case["id"], "")
        ok = given.strip() == case["answer"]
        right += ok
        if not ok:
            print(
                f"case {case['id']}: {case['question']!r}: expected {case['answer']}, got {given!r}"
            )
    if child.returncode != 0 and not answers:
        print(child.stderr.strip()[-2000:])
    print("---")
    print(f"accuracy:   {right / len(cases):.6f}")
    print(f"answered:   {len(answers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
