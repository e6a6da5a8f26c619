"""Cost against the size of the record: Ratchet's own time per experiment, open time, the CLI's
reads and the status snapshot, with 0, 1,000, 10,000 and 100,000 earlier experiments.

    python bench/bench_history.py [--sizes 0,1000,10000,100000] [--experiments 25]

The earlier experiments are written straight into the ledger (with diffs and log tails of a
realistic size, and their refs packed as git packs them), then a real loop runs `--experiments`
more trivial experiments through the real engine. Goals: at 10,000 within 1.2x of a fresh
loop's time per experiment, at 100,000 within 1.5x; open under 2 s at 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_overhead import make_repo
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Experiment, Status
from ratchet.ledger import Ledger

DIFF = "--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,3 @@\n-LR = 0.5\n+LR = 0.4\n" * 6
LOG = "step 100 loss 1.234 lr 0.01\n" * 30


def seed_ledger(root: Path, count: int) -> None:
    """A loop with `count` finished experiments, as a long night would leave it."""
    head = _git(root, "rev-parse", "HEAD")
    ledger = Ledger(root / ".ratchet")
    engine = Engine(load_config(root), tag="bench")
    rules = engine.opening.rules(engine.config, head)
    ledger.add_loop("bench", head, "score", "minimize", rules)
    ledger.close()
    db = sqlite3.connect(root / ".ratchet" / "ledger.sqlite")
    columns = [f for f in Experiment.__dataclass_fields__]
    marks = ", ".join("?" for _ in columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    hardware = json.dumps({"host": "bench", "cpu": "x", "gpu": None, "gpu_count": 0})
    rows, runs = [], []
    for n in range(count):
        status = Status.KEPT if n == 0 or n % 50 == 0 else Status.DISCARDED
        exp = Experiment(
            id=n,
            tag="bench",
            status=status,
            description=f"LR change {n}",
            agent="mutate",
            base_commit=head,
            commit=head,
            metric=0.5 - n * 1e-7,
            diff=DIFF,
            log_tail=LOG,
            source="baseline" if n == 0 else "agent",
            digest=f"{n:016x}",
            reason="seeded",
            finished_at=time.time(),
        )
        values = [getattr(exp, c) for c in columns]
        values[columns.index("status")] = str(status)
        values[columns.index("secondary")] = json.dumps({"num_steps": 10.0})
        values[columns.index("hardware")] = hardware
        rows.append(values)
        runs.append(("bench", n, 0, exp.metric, 0.1, "measure", time.time()))
        if n % 3 == 0:
            runs.append(("bench", n, 1, exp.metric, 0.1, "rerun", time.time()))
    db.executemany(f"INSERT INTO experiments ({quoted}) VALUES ({marks})", rows)
    db.executemany(
        "INSERT INTO runs (tag, experiment, run, metric, wall_s, purpose, recorded_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        runs,
    )
    db.commit()
    db.close()
    if count:
        lines = [f"update refs/ratchet/bench/exp/{n} {head}\n" for n in range(count)]
        lines.append(f"update refs/heads/ratchet/bench {head}\n")
        subprocess.run(
            ["git", "update-ref", "--stdin"], input="".join(lines).encode(), cwd=root, check=True
        )
        subprocess.run(["git", "pack-refs", "--all"], cwd=root, check=True)
    else:
        subprocess.run(
            ["git", "update-ref", "refs/heads/ratchet/bench", head], cwd=root, check=True
        )


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def _cli_seconds(root: Path, *args: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "-C", str(root), *args],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return time.monotonic() - started


async def loop_figures(root: Path, more: int) -> dict[str, float]:
    # The first open finds no mark of a clean close (the record was written straight into
    # the ledger, as after a kill) and checks every ref; the second follows a clean close.
    engine = Engine(load_config(root), tag="bench")
    started = time.monotonic()
    await engine.open()
    recovered = time.monotonic() - started
    started = time.monotonic()
    await engine.close()  # writes the record's snapshot and the mark that the refs agree
    closed = time.monotonic() - started
    engine = Engine(load_config(root), tag="bench")
    started = time.monotonic()
    await engine.open()
    opened = time.monotonic() - started
    status_started = time.process_time()
    for _ in range(100):
        engine.status()
    status_ms = (time.process_time() - status_started) * 10  # ms of CPU per snapshot
    before = len(engine.experiments())
    wall_started = time.monotonic()
    await engine.run(more=more)
    wall = time.monotonic() - wall_started
    await engine.close()
    new = engine.experiments()[before:]
    overhead = [e.overhead_s * 1000 for e in new]
    command = sum(e.run_s + e.agent_s for e in new)
    return {
        "open_s": opened,
        "open_after_kill_s": recovered,
        "close_s": closed,
        "overhead_ms": statistics.median(overhead),
        "wall_per_exp_ms": (wall - command) / len(new) * 1000,
        "status_ms": status_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,1000,10000,100000")
    parser.add_argument("--experiments", type=int, default=25)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="ratchet-history-") as folder:
            root = Path(folder)
            make_repo(root)
            seeded = time.monotonic()
            seed_ledger(root, size)
            seeded = time.monotonic() - seeded
            figures = asyncio.run(loop_figures(root, args.experiments))
            figures["log_s"] = _cli_seconds(root, "log")
            figures["log_json_s"] = _cli_seconds(root, "log", "--json")
            figures["show_s"] = _cli_seconds(root, "show", "1")
            results[size] = figures
            print(
                f"{size:>7} earlier: open {figures['open_s']:.2f} s (after a kill "
                f"{figures['open_after_kill_s']:.2f} s, close {figures['close_s']:.2f} s), "
                "own time per experiment "
                f"median {figures['overhead_ms']:.1f} ms (wall cross-check "
                f"{figures['wall_per_exp_ms']:.1f} ms), status {figures['status_ms']:.2f} ms CPU, "
                f"`log` {figures['log_s']:.2f} s, `log --json` {figures['log_json_s']:.2f} s, "
                f"`show` {figures['show_s']:.2f} s  (seeded in {seeded:.1f} s)",
                flush=True,
            )
    if 0 in results:
        fresh = results[0]["overhead_ms"]
        for size, figures in results.items():
            if size:
                ratio = figures["overhead_ms"] / fresh
                print(f"at {size}: {ratio:.2f}x a fresh loop's own time per experiment")


if __name__ == "__main__":
    main()
