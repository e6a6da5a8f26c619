"""Scores the triage agent on the labelled tickets. LOCKED: the loop never changes this file.

Run: python evaluate.py   (in the folder of triage.py and tasks.jsonl)

It triages every ticket of tasks.jsonl with triage.triage, in a child process that is given
the tickets and never the labels, and prints a summary the loop reads,

    ---
    accuracy:        0.640000   the metric: the share of tickets labelled right (higher is better)
    failed:          18
    recall_billing:  0.583333   ... one recall per label

and writes one block per failed case to failures.txt (named by `[metric] trace` in
ratchet.toml): the ticket, the expected and the given label, the scores, the matched rules
and the reason the agent gave. That file is what the proposing agent reads to find out what
fails and why. A triage that raises counts as a failed case, with its exception.

The edited code is the adversary. It never runs in this process: `ratchet.isolate` imports it
in a nested sandbox (its own PID namespace, no /proc of ours, files read-only, a deadline)
and calls `triage` there once per ticket, the answers coming back on a pipe only this process
reads; so nothing it prints, and no process it starts, reaches this output or this process.
Under Ratchet the labels are read first and the file is deleted from the evaluator's fresh
copy (ratchet.toml lists it in `eval_only`, so the command's folder never had it), and this
process is made non-dumpable, so the child can read neither the file nor this memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from pathlib import Path

try:
    from ratchet.isolate import CallFailed, Worker
except ImportError:  # Ratchet's helper is in the Python that has Ratchet installed
    sys.exit("evaluate.py needs Ratchet's `ratchet.isolate`: run it with the Python Ratchet is in")

HERE = Path(__file__).resolve().parent
TASKS = HERE / "tasks.jsonl"
TRACE = Path("failures.txt")  # in the evaluator's folder
TIMEOUT_S = 60  # for the whole child: its import and every ticket


class Decision:
    def __init__(self, answer: dict) -> None:
        self.label = answer.get("label")
        self.why = answer.get("why", "")
        self.scores = answer.get("scores", {})
        self.matches = answer.get("matches", {})


def load_tasks() -> list[dict]:
    tasks = [json.loads(line) for line in TASKS.read_text().splitlines() if line.strip()]
    if "RATCHET_EXPERIMENT" in os.environ:  # Ratchet's fresh copy, for this evaluation only
        TASKS.unlink()  # so the child cannot read it (by hand, your file stays)
    return tasks


def answers(tasks: list[dict]) -> tuple[dict[int, dict], str]:
    """triage.triage's answer to each ticket, by id (an error for one that raised or got
    none); and the import error, if triage.py did not import."""
    found: dict[int, dict] = {}
    try:
        worker = Worker(HERE, "triage", timeout_s=TIMEOUT_S)
    except CallFailed as error:
        return {}, str(error)
    with worker:
        for task in tasks:
            try:
                answer, _ = worker.call("triage", task["ticket"])
            except CallFailed as error:
                answer = {"error": str(error)}
            found[task["id"]] = answer if isinstance(answer, dict) else {"error": "not a Decision"}
    return found, ""


def main() -> int:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no child reads us
    if not TASKS.exists():
        print("tasks.jsonl is missing: run the evaluator in a fresh copy of the project")
        return 1
    tasks = load_tasks()
    given_by_id, import_error = answers(tasks)
    if import_error:
        print(import_error)
        TRACE.write_text("triage.py failed to import:\n" + import_error)
        print("---\ncorrect: 0")
        return 1
    labels = sorted({task["label"] for task in tasks})
    right = 0
    per_label = {label: [0, 0] for label in labels}  # right, total
    failures = []
    for task in tasks:
        expected = task["label"]
        per_label[expected][1] += 1
        answer = given_by_id.get(task["id"], {"error": "no answer (the child died?)"})
        if "error" in answer:
            failures.append(
                f"case {task['id']}: {task['ticket']!r}\n  expected {expected}, triage raised "
                f"{answer['error']}\n"
            )
            continue
        decision = Decision(answer)
        given = decision.label
        if given == expected:
            right += 1
            per_label[expected][0] += 1
            continue
        scores = ", ".join(f"{k}={v:g}" for k, v in sorted(decision.scores.items()))
        matched = "; ".join(
            f"{k}: {', '.join(v)}" for k, v in sorted(decision.matches.items()) if v
        )
        failures.append(
            f"case {task['id']}: {task['ticket']!r}\n"
            f"  expected {expected}, got {given} ({decision.why})\n"
            f"  scores: {scores}\n"
            f"  matched: {matched or 'nothing'}\n"
        )
    accuracy = right / len(tasks)
    header = f"{len(failures)} of {len(tasks)} tickets failed (accuracy {accuracy:.4f})\n\n"
    TRACE.write_text(header + "\n".join(failures))
    for block in failures[:5]:  # the log tail shows a few; failures.txt has them all
        print(block.rstrip())
    print("---")
    print(f"accuracy:        {accuracy:.6f}")
    print(f"failed:          {len(failures)}")
    for label in labels:
        good, total = per_label[label]
        print(f"recall_{label}:{' ' * (9 - len(label))}{good / total:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
