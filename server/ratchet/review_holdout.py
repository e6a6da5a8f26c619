"""`ratchet finalize --measure`: the review branch measured once, as an experiment is (its
command, then the evaluator in its clean room), then `[metric] holdout` in the holdout's own
clean room: the branch's dev number and holdout, for a person. Nothing is recorded as an
experiment and nothing is kept or discarded; the logs go beside the loop's
(`review-<commit>.log`, `.eval.log`, `.holdout.log`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .config import Config
from .lockfile import LoopLock
from .measure import Measurer, failure
from .runners import make_runner
from .runners.base import RunControl
from .runners.processes import LOOP_VARIABLE, SEED_VARIABLE
from .workspace import Workspace, ensure_ratchet_dir


@dataclass(frozen=True)
class ReviewMeasured:
    metric: float | None
    holdout: float | None
    problem: str  # why there is no dev number ("" when there is one)
    log: str  # the holdout's log


async def measure_review(config: Config, tag: str, commit: str, loop_id: str) -> ReviewMeasured:
    """Holds the project's lock (a running loop is said, not disturbed) while it runs."""
    folder = ensure_ratchet_dir(config.root)
    lock = LoopLock(folder)
    await asyncio.to_thread(lock.acquire)
    runner = make_runner(config)
    workspace = Workspace(config.root, tag)
    try:
        slots = await runner.open()
        slot = slots[0]  # the loop's own first slot: the lock says no loop is using it
        measurer = Measurer(config, runner, workspace)
        text = await asyncio.to_thread(workspace.read, commit, config.loop.editable)
        logs = folder / "loops" / tag / "logs"
        log_path = logs / f"review-{commit[:10]}.log"
        env = {LOOP_VARIABLE: loop_id, SEED_VARIABLE: "0"}
        control = RunControl()
        attempt = await measurer.run(
            experiment=0,
            commit=commit,
            base_commit=commit,
            slot=slot,
            text=text,
            log_path=log_path,
            control=control,
            on_line=lambda line, elapsed: None,
            best_curve=[],
            env=env,
        )
        failed = failure(attempt, control, config.loop.timeout_s)
        if failed:
            return ReviewMeasured(None, None, failed[1], str(log_path))
        holdout = await measurer.holdout(
            experiment=0,
            commit=commit,
            slot=slot,
            text=text,
            log_path=log_path,
            control=control,
            env=env,
        )
        return ReviewMeasured(
            attempt.measurement.value, holdout, "", str(log_path.with_suffix(".holdout.log"))
        )
    finally:
        await runner.close()
        await asyncio.to_thread(workspace.remove_worktrees)
        lock.release()
