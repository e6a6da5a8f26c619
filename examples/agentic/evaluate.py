"""Scores the triage agent on the labelled tickets. LOCKED: the loop never changes this file.

Run: python evaluate.py   (in the folder of triage.py and tasks.jsonl)

It triages every ticket of tasks.jsonl with triage.triage, prints a summary the loop reads,

    ---
    accuracy:        0.640000   the metric: the share of tickets labelled right (higher is better)
    failed:          18
    recall_billing:  0.583333   ... one recall per label

and writes one block per failed case to failures.txt (named by `[metric] trace` in
ratchet.toml): the ticket, the expected and the given label, the scores, the matched rules
and the reason the agent gave. That file is what the proposing agent reads to find out what
fails and why. A triage that raises counts as a failed case, with its exception.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = HERE / "tasks.jsonl"
TRACE = Path("failures.txt")  # in the experiment's folder


def load_tasks() -> list[dict]:
    return [json.loads(line) for line in TASKS.read_text().splitlines() if line.strip()]


def main() -> int:
    sys.path.insert(0, str(Path.cwd()))
    try:
        agent = importlib.import_module("triage")
    except Exception:
        traceback.print_exc()
        TRACE.write_text("triage.py failed to import:\n" + traceback.format_exc())
        print("---\ncorrect: 0")
        return 1
    tasks = load_tasks()
    labels = sorted({task["label"] for task in tasks})
    right = 0
    per_label = {label: [0, 0] for label in labels}  # right, total
    failures = []
    for task in tasks:
        expected = task["label"]
        per_label[expected][1] += 1
        try:
            decision = agent.triage(task["ticket"])
            given = decision.label
        except Exception as error:
            failures.append(
                f"case {task['id']}: {task['ticket']!r}\n  expected {expected}, triage raised "
                f"{type(error).__name__}: {error}\n"
            )
            continue
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
