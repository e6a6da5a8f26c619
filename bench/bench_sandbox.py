"""What the sandbox costs one run: the local runner running `true`, N times with
`[sandbox] kind = "bwrap"` and N times with "none", median and p95 of the wall time.

    python3 bench/bench_sandbox.py [N]      (goal: under 50 ms added per run)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from ratchet.config import SandboxConfig
from ratchet.runners.base import Isolation, Job, RunControl, Slot
from ratchet.runners.local import LocalRunner


async def wall_times(kind: str, runs: int, folder: Path) -> list[float]:
    sandbox = SandboxConfig(kind=kind)
    runner = LocalRunner((), sandbox)
    slot = (await runner.open())[0]
    times = []
    for number in range(runs):
        job = Job(
            experiment=number,
            command="true",
            worktree=folder,
            log_path=folder.parent / f"{kind}.log",
            budget_s=10,
            timeout_s=20,
            isolation=Isolation(sandbox, (str(folder.parent),)),
        )
        outcome = await runner.run(job, Slot(slot.name), lambda line: None, RunControl())
        assert outcome.exit_code == 0 and not outcome.refused, outcome
        times.append(outcome.wall_s)
    await runner.close()
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as scratch:
        folder = Path(scratch) / "run"
        folder.mkdir()
        await wall_times("bwrap", 3, folder)  # warm the caches: the probe, the page cache
        plain = await wall_times("none", runs, folder)
        boxed = await wall_times("bwrap", runs, folder)
    for name, values in (("none", plain), ("bwrap", boxed)):
        print(
            f"{name:6s} n={runs} median {statistics.median(values) * 1000:6.1f} ms  "
            f"p95 {p95(values) * 1000:6.1f} ms"
        )
    added = (statistics.median(boxed) - statistics.median(plain)) * 1000
    print(f"added by the sandbox: median {added:.1f} ms per run (goal < 50 ms)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
