"""Ratchet's own overhead per experiment: all wall time outside the agent and the experiment
command (git, worktree, guard, ledger, events), over 50 experiments of a trivial command.

    python bench/bench_overhead.py [--experiments 50]

Goal: median under 150 ms on a 2-core machine. Two figures are printed: the overhead each
experiment records in the ledger, and a cross-check from the loop's total wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ratchet.config import load_config
from ratchet.engine import Engine

TRAIN = "LR = 0.5\nWIDTH = 8\nDEPTH = 3\n"
CONFIG = """\
[loop]
editable = "train.py"
command = "awk -F' = ' '/^LR/ {print \\"score: \\" $2}' train.py"
budget = "10s"

[metric]
name = "score"
goal = "minimize"

[agent]
kind = "mutate"
"""


def make_repo(root: Path) -> None:
    (root / "train.py").write_text(TRAIN)
    (root / "program.md").write_text("bench\n")
    (root / "ratchet.toml").write_text(CONFIG)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=root, check=True
        )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(root: Path, count: int) -> None:
    engine = Engine(load_config(root), tag="bench")
    started = time.monotonic()
    await engine.run(max_experiments=count)
    wall = time.monotonic() - started
    await engine.close()
    experiments = engine.experiments()
    overhead_ms = [e.overhead_s * 1000 for e in experiments]
    run_s = sum(e.run_s for e in experiments)
    agent_s = sum(e.agent_s for e in experiments)
    kept = sum(1 for e in experiments if str(e.status) == "kept")
    print(
        f"experiments: {len(experiments)} ({kept} kept), command time {run_s:.2f} s, "
        f"agent time {agent_s:.3f} s, loop wall time {wall:.2f} s"
    )
    print(
        f"recorded overhead per experiment: median {statistics.median(overhead_ms):.1f} ms, "
        f"p95 {percentile(overhead_ms, 0.95):.1f} ms, max {max(overhead_ms):.1f} ms"
    )
    print(
        f"wall-clock cross-check: (wall - command - agent) / n = "
        f"{(wall - run_s - agent_s) / len(experiments) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as folder:
        root = Path(folder)
        make_repo(root)
        asyncio.run(measure(root, args.experiments))


if __name__ == "__main__":
    main()
