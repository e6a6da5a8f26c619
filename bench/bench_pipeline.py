"""Pipelining: the agent prepares the next proposal while the current experiment runs.

    python bench/bench_pipeline.py [--agent 3] [--experiment 5] [--count 20] [--scale 1.0]

With an agent that takes 3 s and an experiment that takes 5 s, 20 experiments should take at
most 1.05 x (20 x 5 + 3) s with pipelining, against about 20 x 8 s without. Also reported:
the GPU idle fraction (time no experiment ran / total). `--scale 0.2` shrinks every time.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.events import Event, ExperimentFinished, ExperimentStarted
from ratchet.experiment import Proposal, ProposalContext

CONFIG = """\
[loop]
editable = "train.py"
command = "sleep {experiment}; awk -F' = ' '/^LR/ {{print \\"score: \\" $2}}' train.py"
budget = "{budget}s"
pipeline = {pipeline}

[metric]
name = "score"
goal = "minimize"

[judge]
baseline_runs = 1
"""


class SlowAgent:
    """Thinks for a fixed time, then proposes a new distinct value."""

    kind = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def propose(self, context: ProposalContext) -> Proposal:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        text = context.editable_text.replace("LR = ", f"LR = {self.calls}0", 1)
        return Proposal({"train.py": text}, f"proposal {self.calls}", agent_seconds=self.seconds)

    async def close(self) -> None:
        return None


async def measure(root: Path, agent_s: float, count: int) -> tuple[float, float]:
    engine = Engine(load_config(root), tag="bench", agent=SlowAgent(agent_s))
    busy: list[list[float]] = []

    def on_event(event: Event) -> None:
        if isinstance(event, ExperimentStarted):
            busy.append([time.monotonic(), 0.0])
        elif isinstance(event, ExperimentFinished) and busy and event.experiment.run_s:
            busy[-1][1] = time.monotonic()

    engine.bus.subscribe(on_event)
    started = time.monotonic()
    await engine.run(max_experiments=count)
    wall = time.monotonic() - started
    await engine.close()
    # Busy from each experiment's start to the next state change after it (one slot).
    covered = sum(end - begin for begin, end in busy if end)
    return wall, 1 - covered / wall


def make_repo(root: Path, experiment_s: float, pipeline: bool) -> None:
    (root / "train.py").write_text("LR = 5\n")
    (root / "program.md").write_text("bench\n")
    (root / "ratchet.toml").write_text(
        CONFIG.format(
            experiment=experiment_s,
            budget=max(10, experiment_s * 3),
            pipeline=str(pipeline).lower(),
        )
    )
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=root, check=True
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent", type=float, default=3.0)
    parser.add_argument("--experiment", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    agent_s, experiment_s = args.agent * args.scale, args.experiment * args.scale
    ideal = args.count * experiment_s + agent_s
    print(
        f"{args.count} experiments of {experiment_s:g} s, agent {agent_s:g} s "
        f"(goal with pipelining: <= {1.05 * ideal:.1f} s = 1.05 x {ideal:.1f} s)"
    )
    for pipeline in (True, False):
        with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as folder:
            make_repo(Path(folder), experiment_s, pipeline)
            wall, idle = asyncio.run(measure(Path(folder), agent_s, args.count))
        print(
            f"  pipelining {'on ' if pipeline else 'off'}: {wall:6.1f} s "
            f"({wall / ideal:.3f} x ideal), GPU idle {100 * idle:.1f}% of the time"
        )


if __name__ == "__main__":
    main()
