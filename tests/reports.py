"""Ledgers to report on: a synthetic loop of any size, written through the ledger's own API,
and a headless Chromium to look at the HTML."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

from ratchet.experiment import Experiment, Status
from ratchet.ledger import Ledger

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

DIFF = "--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,3 @@\n import os\n-LR = {a}\n+LR = {b}\n"
LOG = 'step 1\nstep 2\nTraceback (most recent call last):\n  File "train.py", line {n}\n{error}\n'
ERRORS = ["RuntimeError: CUDA out of memory at step {n}", "ValueError: width {n} too small"]


def synthetic_ledger(folder: Path, count: int, tag: str = "big", seed: int = 0) -> Ledger:
    """A minimizing loop of `count` experiments: mostly discards, ~2% keeps, ~5% crashes."""
    rng = random.Random(seed)
    ledger = Ledger(folder)
    ledger.add_loop(tag, "0" * 40, "val_bpb", "minimize")
    best = 1.0
    hardware = {"host": "gpu-box", "cpu": "Xeon", "cpus": 32, "gpu": "H100", "gpu_count": 1}
    for n in range(count):
        metric: float | None = best + rng.gauss(0.004, 0.003)
        status = Status.KEPT if n == 0 else Status.DISCARDED
        log = "val_bpb: ok\n" * 30
        if n and rng.random() < 0.05:
            status, metric = Status.CRASHED, None
            log = LOG.format(n=n, error=rng.choice(ERRORS).format(n=n)) * 10
        elif n and rng.random() < 0.02:
            status, metric = Status.KEPT, best - abs(rng.gauss(0.003, 0.001))
        if status is Status.KEPT and metric is not None:
            best = metric
        ledger.save(
            Experiment(
                id=n,
                tag=tag,
                status=status,
                description="baseline" if n == 0 else f"LR tweak number {n}",
                agent="mutate",
                base_commit="0" * 40,
                commit=f"{n:040x}",
                metric=metric,
                reason="kept: beats the best" if status is Status.KEPT else "within the noise",
                diff="" if n == 0 else DIFF.format(a=n, b=n + 1) * 8,
                run_s=300.0,
                hardware=hardware,
                log_tail=log,
                started_at=1000.0 + 300 * n,
                finished_at=1300.0 + 300 * n,
                source="baseline" if n == 0 else "agent",
                # Keeps of even number carry their verdict in σ; odd ones are records from
                # before the judge wrote it.
                effect=2.5 if status is Status.KEPT and n % 2 == 0 else None,
                resolvable=1.25 if status is Status.KEPT and n % 2 == 0 else None,
            )
        )
        if metric is not None:
            for _ in range(3 if n == 0 else 1):
                ledger.add_run(tag, n, metric + rng.gauss(0, 0.002), 300.0, "measure")
    return ledger


def screenshot(page: Path, image: Path, height: int = 1800) -> Path:
    """The page as headless Chromium draws it, 1100 px wide."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed (apt-get install chromium)"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_ARGS,
            f"--window-size=1100,{height}",
            f"--screenshot={image}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return image


def dump_dom(page: Path) -> str:
    """The page's DOM after Chromium has parsed it (what a browser makes of the file)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium
    done = subprocess.run(
        [chromium, *CHROMIUM_ARGS, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout
