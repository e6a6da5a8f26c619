"""Scaling over slots: 1, 2 and 4 slots of the local runner (fake GPU indices; for a sleep,
CUDA_VISIBLE_DEVICES is just a variable), each experiment a 5-second sleep, 40 experiments
(the baseline counts as one), an agent that takes 1 second per proposal.

    python bench/bench_scaling.py [--experiments 40] [--sleep 5] [--agent 1] [--slots 1 2 4]

Goal: 4 slots reach at least 3.6 x the throughput of 1 slot, and each slot is busy at least
95% of the wall time. "Busy" is the time a slot spends inside the runner (the command, and
the runner's own start and clean-up); the wall time is the loop's, from `run` to its return.
Figures are printed for the whole loop and for its steady state (after the baseline, which
must finish alone before anything can be judged, and before the last wave, when there is no
work left for the slots that finish first).

Every proposal is worse than the baseline, so nothing is kept and nothing is merged and
re-measured: the figures are the scheduler's alone. `--improve-every K` makes every K-th
proposal an improvement, to see the cost of the merge-and-re-measure rule.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Proposal, ProposalContext
from ratchet.runners.base import Job, OnLine, RunControl, RunOutcome, Slot
from ratchet.runners.local import LocalRunner

TRAIN = """\
import time
VALUE = 0
time.sleep(SLEEP)
print(f"score: {1000 + VALUE}")
"""

CONFIG = """\
[loop]
editable = "train.py"
command = "python3 train.py"
budget = "{budget}s"

[metric]
name = "score"
goal = "minimize"

[judge]
baseline_runs = 1
max_runs = 1

[runner]
kind = "local"
gpus = {gpus}
"""


class SleepyAgent:
    """Takes `delay` seconds per proposal; each proposal sets VALUE to a number not used
    before (positive: worse than the baseline; every K-th one negative: better)."""

    kind = "bench"

    def __init__(self, delay: float, improve_every: int = 0) -> None:
        self.delay = delay
        self.improve_every = improve_every
        self.count = 0

    async def propose(self, context: ProposalContext) -> Proposal:
        await asyncio.sleep(self.delay)
        self.count += 1
        value = self.count
        if self.improve_every and self.count % self.improve_every == 0:
            value = -self.count
        lines = [
            f"VALUE = {value}" if line.startswith("VALUE = ") else line
            for line in context.editable_text.splitlines()
        ]
        return Proposal({context.editable_path: "\n".join(lines) + "\n"}, f"VALUE → {value}")

    async def close(self) -> None:
        return None


@dataclass
class TimedRunner:
    """The local runner, with the time each slot spends inside `run` written down."""

    inner: LocalRunner
    kind: str = "local"
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    async def open(self) -> list[Slot]:
        return await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def run(self, job: Job, slot: Slot, on_line: OnLine, control: RunControl) -> RunOutcome:
        started = time.monotonic()
        try:
            return await self.inner.run(job, slot, on_line, control)
        finally:
            self.spans.setdefault(slot.name, []).append((started, time.monotonic()))


def make_repo(root: Path, slots: int, sleep: float) -> None:
    gpus = json.dumps(list(range(slots)))
    (root / "train.py").write_text(TRAIN.replace("SLEEP", repr(sleep)))
    (root / "program.md").write_text("bench\n")
    (root / "ratchet.toml").write_text(CONFIG.format(budget=int(sleep * 4 + 10), gpus=gpus))
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=root, check=True
        )


def busy_within(spans: list[tuple[float, float]], start: float, end: float) -> float:
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans)


async def measure(slots: int, count: int, sleep: float, delay: float, improve: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ratchet-scaling-") as folder:
        root = Path(folder)
        make_repo(root, slots, sleep)
        config = load_config(root)
        runner = TimedRunner(LocalRunner(config.runner.gpus))
        engine = Engine(config, tag="bench", agent=SleepyAgent(delay, improve), runner=runner)
        await engine.open()
        started = time.monotonic()
        try:
            await engine.run(max_experiments=count)
        finally:
            ended = time.monotonic()
            await engine.close()
        experiments = engine.experiments()
    wall = ended - started
    runs = sum(len(s) for s in runner.spans.values())
    all_spans = sorted(span for spans in runner.spans.values() for span in spans)
    # Steady state: from the end of the baseline to the first moment a slot has no more work.
    baseline_end = all_spans[0][1]
    last_starts = max(span[0] for span in all_spans)
    steady_end = min(spans[-1][1] for spans in runner.spans.values())
    steady_end = max(steady_end, min(last_starts, ended))
    per_slot = {}
    for name in sorted(runner.spans):
        spans = runner.spans[name]
        steady = steady_end - baseline_end
        gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
        per_slot[name] = {
            "runs": len(spans),
            "idle_before_first_s": spans[0][0] - started,
            "idle_after_last_s": ended - spans[-1][1],
            "gap_between_runs_s": {
                "median": sorted(gaps)[len(gaps) // 2] if gaps else None,
                "max": max(gaps) if gaps else None,
                "total": sum(gaps),
            },
            "busy": busy_within(spans, started, ended) / wall,
            "busy_steady": busy_within(spans, baseline_end, steady_end) / steady
            if steady > 0
            else None,
        }
    statuses: dict[str, int] = {}
    for exp in experiments:
        statuses[str(exp.status)] = statuses.get(str(exp.status), 0) + 1
    return {
        "slots": slots,
        "experiments": len(experiments),
        "runs": runs,
        "statuses": statuses,
        "wall_s": wall,
        "throughput_per_hour": len(experiments) / wall * 3600,
        "per_slot": per_slot,
        "overhead_ms_median": sorted(e.overhead_s for e in experiments)[len(experiments) // 2]
        * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=5.0)
    parser.add_argument("--agent", type=float, default=1.0, help="seconds per proposal")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--improve-every", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results = []
    for slots in args.slots:
        result = asyncio.run(
            measure(slots, args.experiments, args.sleep, args.agent, args.improve_every)
        )
        results.append(result)
        busy = [s["busy"] for s in result["per_slot"].values()]
        steady = [s["busy_steady"] for s in result["per_slot"].values() if s["busy_steady"]]
        print(
            f"{slots} slot(s): {result['experiments']} experiments ({result['runs']} runs) in "
            f"{result['wall_s']:.1f} s = {result['throughput_per_hour']:.0f}/h; busy per slot "
            f"{', '.join(f'{b:.1%}' for b in busy)} (steady state "
            f"{', '.join(f'{b:.1%}' for b in steady)}); statuses {result['statuses']}",
            flush=True,
        )
    base = next((r for r in results if r["slots"] == 1), None)
    if base is not None:
        for result in results:
            if result["slots"] != 1:
                ratio = result["throughput_per_hour"] / base["throughput_per_hour"]
                print(f"throughput {result['slots']} vs 1 slot: {ratio:.2f} x")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
