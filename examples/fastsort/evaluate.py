"""Checks and times sorting.sort. LOCKED: the loop never changes this file.

Run: python evaluate.py
Prints, at the end, the summary the loop reads:

    ---
    runtime_ms:  61.234     the metric: the sum, over the input kinds, of the fastest time
    correct:     1          of sorting one input of that kind (lower is better)

When the sort is wrong, breaks the rules of program.md, or raises, it prints `correct: 0`
with the reason, prints no runtime_ms, and exits with status 1.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import io
import os
import random
import sys
import time
from pathlib import Path

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


def inputs(kind: str, seed: int) -> list:
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
        evaluate()
    except Failed as failure:
        print("---")
        print("correct:     0")
        print(f"reason:      {failure}")
        sys.exit(1)


def evaluate() -> None:
    started = time.perf_counter()
    budget = float(os.environ.get("RATCHET_TIME_BUDGET") or 20.0)
    deadline = started + 0.6 * budget  # past it, each kind is timed once more at most

    check_rules(EDITABLE.read_text())
    quiet = io.StringIO()  # the sort's own prints are swallowed: only this file reports
    try:
        with contextlib.redirect_stdout(quiet):
            sys.path.insert(0, str(EDITABLE.parent))
            sort = importlib.import_module(EDITABLE.stem).sort
            for case in EDGE_CASES:
                original = list(case)
                if sort(case) != sorted(original):
                    fail(f"wrong result for {original[:10]}")
                if case != original:
                    fail("the input list was changed; sort must return a new list")
    except Failed:
        raise
    except BaseException as error:  # SystemExit and KeyboardInterrupt from the sort too
        fail(f"{type(error).__name__}: {error}")

    best: dict[str, float] = {}
    gc.disable()
    try:
        repeats = 0
        while repeats < REPEATS and (repeats == 0 or time.perf_counter() < deadline):
            for kind in KINDS:
                values = inputs(kind, repeats)  # fresh data every time: a cache cannot help
                expected = sorted(values)
                with contextlib.redirect_stdout(quiet):
                    t0 = time.perf_counter()
                    try:
                        result = sort(values)
                    except BaseException as error:
                        fail(f"{type(error).__name__} on {kind} input: {error}")
                    elapsed = time.perf_counter() - t0
                if result != expected:
                    fail(f"wrong result on {kind} input")
                best[kind] = min(best.get(kind, float("inf")), elapsed)
                gc.collect()
            repeats += 1
    finally:
        gc.enable()

    print("---")
    print(f"runtime_ms:         {sum(best.values()) * 1000:.3f}")
    print("correct:            1")
    for kind in KINDS:
        print(f"{kind + '_ms:':<19} {best[kind] * 1000:.3f}")
    print(f"repeats:            {repeats}")
    print(f"eval_seconds:       {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
