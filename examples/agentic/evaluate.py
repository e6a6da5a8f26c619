"""Scores the triage agent on the labelled tickets. LOCKED: the loop never changes this file.

Run: python evaluate.py                   (in the folder of triage.py and tasks.jsonl)
     python evaluate.py --split holdout   (the held-out tickets of holdout.jsonl)

It triages every ticket of the split with triage.triage, in a child process that is given
the tickets and never the labels, and prints one case line per ticket and a summary the loop
reads,

    {"case": "9", "score": 0, "trace": "expected billing, got account\\n..."}
    {"case": "10", "score": 1}
    ---
    accuracy:        0.640000   the metric: the share of tickets labelled right (higher is better)
    failed:          18
    recall_billing:  0.583333   ... one recall per label

A case line is Ratchet's per-case evidence (README, "Per-case evidence"): the ticket's id, 1
when it was labelled right, and for a failed ticket what went wrong (its first line, the
expected and the given label, groups the failures the proposing agent is shown). It also
writes one block per failed case to failures.txt (named by `[metric] trace` in ratchet.toml):
the ticket, the expected and the given label, the scores, the matched rules and the reason the
agent gave. A triage that raises counts as a failed case, with its exception.

The dev split (tasks.jsonl) is what the loop optimises. The holdout split (holdout.jsonl,
`[metric] holdout` and `holdout_only` in ratchet.toml) is tickets the loop never sees: it is
run on new bests only, in a clean room of its own, and its number is for a person.

The edited code is the adversary. It never runs in this process: `ratchet.isolate` imports it
in a nested sandbox (its own PID namespace, no /proc of ours, files read-only, a deadline)
and calls `triage` there once per ticket, the answers coming back on a pipe only this process
reads; so nothing it prints, and no process it starts, reaches this output or this process.
Under Ratchet the labels are read first and every label file is deleted from the evaluator's
fresh copy (ratchet.toml lists them in `eval_only` and `holdout_only`, so the command's folder
never had them), and this process is made non-dumpable, so the child can read neither the
files nor this memory.
"""

from __future__ import annotations

import argparse
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
SPLITS = {"dev": HERE / "tasks.jsonl", "holdout": HERE / "holdout.jsonl"}
TRACE = Path("failures.txt")  # in the evaluator's folder
TIMEOUT_S = 60  # for the whole child: its import and every ticket


class Decision:
    def __init__(self, answer: dict) -> None:
        self.label = answer.get("label")
        self.why = answer.get("why", "")
        self.scores = answer.get("scores", {})
        self.matches = answer.get("matches", {})


def load_tasks(split: str) -> list[dict]:
    path = SPLITS[split]
    tasks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if "RATCHET_EXPERIMENT" in os.environ:  # Ratchet's fresh copy, for this evaluation only
        for labels in SPLITS.values():  # so the child can read no labels (by hand, yours stay)
            labels.unlink(missing_ok=True)
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


def failure(task: dict, answer: dict) -> tuple[str, list[str]] | None:
    """What went wrong with one ticket: a headline (the same for every ticket that failed the
    same way) and the details; None when it was labelled right."""
    expected = task["label"]
    if "error" in answer:
        return f"expected {expected}, triage raised", [str(answer["error"])]
    decision = Decision(answer)
    if decision.label == expected:
        return None
    scores = ", ".join(f"{k}={v:g}" for k, v in sorted(decision.scores.items()))
    matched = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(decision.matches.items()) if v)
    return (
        f"expected {expected}, got {decision.label}",
        [f"why: {decision.why}", f"scores: {scores}", f"matched: {matched or 'nothing'}"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="Score triage.py on a split of the tickets.")
    parser.add_argument("--split", choices=sorted(SPLITS), default="dev")
    split = parser.parse_args().split
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no child reads us
    if not SPLITS[split].exists():
        print(f"{SPLITS[split].name} is missing: run the evaluator in a fresh copy of the project")
        return 1
    tasks = load_tasks(split)
    given_by_id, import_error = answers(tasks)
    if import_error:
        print(import_error)
        TRACE.write_text("triage.py failed to import:\n" + import_error)
        print("---\ncorrect: 0")
        return 1
    labels = sorted({task["label"] for task in tasks})
    per_label = {label: [0, 0] for label in labels}  # right, total
    blocks = []
    for task in tasks:
        per_label[task["label"]][1] += 1
        answer = given_by_id.get(task["id"], {"error": "no answer (the child died?)"})
        failed = failure(task, answer)
        case = {"case": str(task["id"]), "score": 0 if failed else 1}
        if failed:
            headline, details = failed
            case["trace"] = "\n".join([headline, f"ticket: {task['ticket']!r}", *details])
            blocks.append(
                f"case {task['id']}: {task['ticket']!r}\n  {headline}"
                + "".join(f"\n  {line}" for line in details)
                + "\n"
            )
        else:
            per_label[task["label"]][0] += 1
        print(json.dumps(case))
    accuracy = (len(tasks) - len(blocks)) / len(tasks)
    header = f"{len(blocks)} of {len(tasks)} tickets failed (accuracy {accuracy:.4f})\n\n"
    TRACE.write_text(header + "\n".join(blocks))
    print("---")
    print(f"accuracy:        {accuracy:.6f}")
    print(f"failed:          {len(blocks)}")
    for label in labels:
        good, total = per_label[label]
        print(f"recall_{label}:{' ' * (9 - len(label))}{good / total:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
