"""Scores the harness on the labelled cases. LOCKED: the loop never changes this file.

Run: python evaluate.py   (TASK_API_KEY set; TASK_BASE_URL for another Messages API host)

A child imports the edited harness.py and answers one JSON line per question (it is given the
questions, never the answers); this process compares and prints

    ---
    accuracy:   0.500000   the share of cases answered right (higher is better)
    answered:   8

Under Ratchet the answers are read first and `cases.jsonl` is deleted from the evaluator's
fresh copy (it is `eval_only`: the command's folder never has it), and this process is made
non-dumpable. The child runs in a nested sandbox (`ratchet.isolate`: its own PID namespace, no
/proc of ours, files read-only, a deadline; the network is this sandbox's, so the declared
API host only): the edited code can read neither the file nor this memory, and nothing it
prints, and no process it starts, reaches this output or this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from pathlib import Path

try:
    from ratchet.isolate import run_isolated
except ImportError:  # Ratchet's helper is in the Python that has Ratchet installed
    sys.exit("evaluate.py needs Ratchet's `ratchet.isolate`: run it with the Python Ratchet is in")

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases.jsonl"

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
    child = run_isolated(
        [sys.executable, "-c", CHILD],
        input=questions.encode(),
        cwd=HERE,
        timeout_s=300,
        network=True,  # the sandbox's own: only the declared API host is reachable
    )
    answers: dict[int, str] = {}
    for line in child.output.decode(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError, ValueError):
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
    if child.exit_code != 0 and not answers:
        print(child.output.decode(errors="replace").strip()[-2000:])
    print("---")
    print(f"accuracy:   {right / len(cases):.6f}")
    print(f"answered:   {len(answers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
