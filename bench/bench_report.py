"""`ratchet report` on a synthetic loop of N experiments (default 10,000): seconds and size.

PYTHONPATH=server:tests python3 bench/bench_report.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from ratchet.cli import main
from reports import synthetic_ledger


def bench(count: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch)
        started = time.perf_counter()
        synthetic_ledger(project / ".ratchet", count).close()
        made = time.perf_counter() - started
        for fmt in ("html", "md"):
            started = time.perf_counter()
            assert main(["-C", str(project), "report", "--format", fmt]) == 0
            took = time.perf_counter() - started
            size = (project / ".ratchet" / f"report.{fmt}").stat().st_size
            print(
                f"{count} experiments ({made:.1f}s to write): {fmt} in {took:.2f}s, "
                f"{size / 1e6:.2f} MB"
            )


if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
