"""Scores the harness on the labelled cases. LOCKED: the loop never changes this file.

Run: python evaluate.py                   (TASK_API_KEY set; TASK_BASE_URL for another host)
     python evaluate.py --split holdout   (the held-out cases of holdout.jsonl)

A child imports the edited harness.py and answers each question of the split (it is given the
questions, never the answers), with the transcript of how it got there; this process compares
and prints one case line per question and a summary the loop reads,

    {"case": "1", "score": 0, "trace": "expected -4875, got '-4885'\\nquestion: ...\\n..."}
    {"case": "13", "score": 1}
    ---
    accuracy:   0.500000   the share of cases answered right (higher is better)
    answered:   60
    accuracy_arithmetic: ...   one per kind of question

A case line is Ratchet's per-case evidence (README, "Per-case evidence"): the case's id, 1 when
it was answered exactly right, and for a failed case a trace: what went wrong in its first line
(`expected 246.38, got '242.50'`), then the question and the task agent's transcript (each
model turn and tool call the harness logged). The proposing agent is shown the failing cases.

The dev split (cases.jsonl) is what the loop optimises. The holdout split (holdout.jsonl,
`[metric] holdout` and `holdout_only` in ratchet.toml) is questions the loop never sees: it is
run on new bests only, in a clean room of its own, and its number is for a person.

Under Ratchet the answers are read first and every answer file is deleted from the evaluator's
fresh copy (`eval_only` and `holdout_only`: the command's folder never has them), and this
process is made non-dumpable. The child runs in a nested sandbox (`ratchet.isolate`: its own
PID namespace, no /proc of ours, files read-only, a deadline; the network is this sandbox's,
so the declared API host only): the edited code can read neither the files nor this memory,
and nothing it prints, and no process it starts, reaches this output or this process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import sys
from pathlib import Path

try:
    from ratchet.isolate import run_isolated
except ImportError:  # Ratchet's helper is in the Python that has Ratchet installed
    sys.exit("evaluate.py needs Ratchet's `ratchet.isolate`: run it with the Python Ratchet is in")

HERE = Path(__file__).resolve().parent
SPLITS = {"dev": HERE / "cases.jsonl", "holdout": HERE / "holdout.jsonl"}
TRANSCRIPT_CHARS = 1500  # of each failed case's transcript, its end kept

CHILD = """
import json, sys
sys.path.insert(0, ".")
import harness
api = harness.client()
for line in sys.stdin:
    case = json.loads(line)
    log = []
    try:
        answer = harness.solve(api, case["question"], log)
    except Exception as error:
        answer = "error: %s: %s" % (type(error).__name__, error)
    transcript = "\\n".join(str(entry) for entry in log)
    row = {"id": case["id"], "answer": str(answer), "log": transcript}
    sys.stdout.write(json.dumps(row) + "\\n")
    sys.stdout.flush()
"""


def load_cases(split: str) -> list[dict]:
    path = SPLITS[split]
    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if "RATCHET_EXPERIMENT" in os.environ:  # Ratchet's fresh copy, for this evaluation only
        for answers in SPLITS.values():  # so the child can read no answers (by hand, yours stay)
            answers.unlink(missing_ok=True)
    return cases


def kind(question: str) -> str:
    """The kind of question, for the per-kind accuracies."""
    if question.startswith("What date"):
        return "date"
    if re.match(r"How many \w+ are in", question):
        return "units"
    return "arithmetic"


def main() -> int:
    parser = argparse.ArgumentParser(description="Score harness.py on a split of the cases.")
    parser.add_argument("--split", choices=sorted(SPLITS), default="dev")
    split = parser.parse_args().split
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no child reads us
    if not SPLITS[split].exists():
        print(f"{SPLITS[split].name} is missing: run the evaluator in a fresh copy of the project")
        return 1
    cases = load_cases(split)
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
    found: dict[int, dict] = {}
    for line in child.output.decode(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError, ValueError):
            row = json.loads(line)
            found.setdefault(int(row["id"]), {"answer": str(row["answer"]), "log": str(row["log"])})
    per_kind: dict[str, list[int]] = {}  # right, total
    right = 0
    for case in cases:
        given = found.get(case["id"], {"answer": "", "log": "no answer (the child died?)"})
        ok = given["answer"].strip() == case["answer"]
        right += ok
        tally = per_kind.setdefault(kind(case["question"]), [0, 0])
        tally[0] += ok
        tally[1] += 1
        reported: dict[str, object] = {"case": str(case["id"]), "score": int(ok)}
        if not ok:
            transcript = given["log"][-TRANSCRIPT_CHARS:]
            reported["trace"] = "\n".join(
                [
                    f"expected {case['answer']}, got {given['answer'].strip()!r}",
                    f"question: {case['question']}",
                    "transcript:",
                    transcript,
                ]
            )
        print(json.dumps(reported))
    if child.exit_code != 0 and not found:  # why it died, each line marked as the child's:
        # none of them reads as a case line or a summary line of ours
        for line in child.output.decode(errors="replace").strip()[-2000:].splitlines():
            print(f"child> {line}")
    print("---")
    print(f"accuracy:   {right / len(cases):.6f}")
    print(f"answered:   {len(found)}")
    for name, (good, total) in sorted(per_kind.items()):
        print(f"accuracy_{name}: {good / total:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
