"""Checks and times sorting.sort. LOCKED: the loop never changes this file.

Run: python evaluate.py            (python evaluate.py --check: the checks only, no timing)
Prints, at the end, the summary the loop reads:

    ---
    runtime_ms:  61.234     the metric: the sum, over the input kinds, of the fastest time
    correct:     1          of sorting one input of that kind (lower is better)

When the sort is wrong, breaks the rules of program.md, or raises, it prints `correct: 0`
with the reason, prints no runtime_ms, and exits with status 1.

The edited sort never runs in this process: `ratchet.isolate` imports sorting.py in a nested
sandbox (its own PID namespace, no /proc of ours, files read-only, a deadline) and each timed
sort is one call there, its input sent and its result read back over pipes this process owns.
The time is taken here, from sending the input to reading the whole result, with this
process's clock, which the sort cannot reach: whatever it replaces (`time.perf_counter`, its
own clock) is its own. The inputs are drawn from a fresh seed each evaluation, so no answer
can be prepared in advance. The rules' check (no imports, no built-in sort) reads the source
and can be talked around by a determined edit: it states the rules, it is not a sandbox.
"""

from __future__ import annotations

import ast
import os
import random
import sys
import time
from pathlib import Path

try:
    from ratchet.isolate import CallFailed, Worker
except ImportError:  # Ratchet's helper is in the Python that has Ratchet installed
    sys.exit("evaluate.py needs Ratchet's `ratchet.isolate`: run it with the Python Ratchet is in")

EDITABLE = Path(__file__).with_name("sorting.py")
SIZE = 20_000
REPEATS = 15  # timed sorts per input kind; the fastest counts (the least disturbed by the machine)
FORBIDDEN_NAMES = {
    "sorted",
    "__import__",
    "eval",
    "exec",
    "compile",
    "getattr",
    "open",
    "globals",
    "vars",
    "__builtins__",
}
FORBIDDEN_ATTRIBUTES = {"sort"}


def inputs(kind: str, seed: str) -> list:
    rng = random.Random(f"{kind}/{seed}")
    n = SIZE
    if kind == "random":
        return [rng.randrange(-(10**9), 10**9) for _ in range(n)]
    if kind == "sorted":
        return sorted(rng.randrange(10**6) for _ in range(n))
    if kind == "reversed":
        return sorted((rng.randrange(10**6) for _ in range(n)), reverse=True)
    if kind == "nearly_sorted":  # sorted, then 1% of the items swapped at random
        values = sorted(rng.randrange(10**6) for _ in range(n))
        for _ in range(n // 100):
            i, j = rng.randrange(n), rng.randrange(n)
            values[i], values[j] = values[j], values[i]
        return values
    if kind == "few_unique":
        return [rng.randrange(8) for _ in range(n)]
    if kind == "floats":
        return [rng.uniform(-1.0, 1.0) for _ in range(n)]
    raise ValueError(kind)


KINDS = ["random", "sorted", "reversed", "nearly_sorted", "few_unique", "floats"]
EDGE_CASES = [
    [],
    [1],
    [2, 1],
    [1, 1, 1],
    [3, -1, 2, -1, 0],
    list(range(100, 0, -1)),
    [5, 3] * 37,
    [0.5, -0.25, 1e9, -1e9, 0.0],
]


class Failed(Exception):
    """The sort is wrong or breaks the rules: no runtime is reported."""


def fail(reason: str):
    raise Failed(reason)


def check_rules(source: str) -> None:
    """program.md's rules: pure Python, no imports, no built-in sort."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            fail(f"line {node.lineno}: imports are not allowed")
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            fail(f"line {node.lineno}: `{node.id}` is not allowed")
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            fail(f"line {node.lineno}: `.{node.attr}` is not allowed")


def main() -> None:
    try:
        evaluate(check_only="--check" in sys.argv[1:])
    except Failed as failure:
        print("---")
        print("correct:     0")
        print(f"reason:      {failure}")
        sys.exit(1)


def evaluate(check_only: bool) -> None:
    started = time.perf_counter()
    budget = float(os.environ.get("RATCHET_TIME_BUDGET") or 20.0)
    deadline = started + 0.6 * budget  # past it, each kind is timed once more at most

    check_rules(EDITABLE.read_text())
    try:
        worker = Worker(EDITABLE.parent, EDITABLE.stem, timeout_s=0.9 * budget)
    except CallFailed as error:
        fail(f"sorting.py did not import: {error}")
    with worker:
        for case in EDGE_CASES:
            if sort_in(worker, case, "an edge case")[0] != sorted(case):
                fail(f"wrong result for {case[:10]}")
        if check_only:
            print("---\ncorrect:            1")
            return
        best, repeats = time_kinds(worker, deadline)

    print("---")
    print(f"runtime_ms:         {sum(best.values()) * 1000:.3f}")
    print("correct:            1")
    for kind in KINDS:
        print(f"{kind + '_ms:':<19} {best[kind] * 1000:.3f}")
    print(f"repeats:            {repeats}")
    print(f"eval_seconds:       {time.perf_counter() - started:.1f}")


def sort_in(worker: Worker, values: list, what: str) -> tuple[list, float]:
    """sort(values) in the child, and the seconds from sending `values` to reading the result."""
    try:
        return worker.call("sort", values)
    except CallFailed as error:
        fail(f"on {what}: {error}")


def time_kinds(worker: Worker, deadline: float) -> tuple[dict[str, float], int]:
    """The fastest sort of each kind, over up to REPEATS fresh inputs of it."""
    seed = random.SystemRandom().getrandbits(64)  # unknown to the sort until it is called
    best: dict[str, float] = {}
    repeats = 0
    while repeats < REPEATS and (repeats == 0 or time.perf_counter() < deadline):
        for kind in KINDS:
            values = inputs(kind, f"{seed}/{repeats}")
            result, elapsed = sort_in(worker, values, f"{kind} input")
            if result != sorted(values):
                fail(f"wrong result on {kind} input")
            best[kind] = min(best.get(kind, float("inf")), elapsed)
        repeats += 1
    return best, repeats


if __name__ == "__main__":
    main()
