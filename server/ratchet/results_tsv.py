"""results.tsv, in autoresearch's column order (`commit  metric  memory_gb  status  description`):
each loop's own file `.ratchet/loops/<tag>/results.tsv`, and `.ratchet/results.tsv` a link to
the loop opened last."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from .experiment import Experiment, Status

RESULTS_NAME = "results.tsv"
# autoresearch knows three statuses; every failure is a crash there, at metric 0 as it writes
# them. Experiments that never came to a verdict (interrupted, cancelled, rejected) are left out.
_TSV_STATUS = {
    Status.KEPT: "keep",
    Status.DISCARDED: "discard",
    Status.ABORTED: "discard",
    Status.CRASHED: "crash",
    Status.TIMEOUT: "crash",
    Status.INVALID: "crash",
    Status.VOIDED: "crash",
    Status.LOST: "crash",
    Status.OVER_BUDGET: "crash",
}


def results_header(metric_name: str) -> str:
    return f"commit\t{metric_name}\tmemory_gb\tstatus\tdescription"


def in_results(status: Status) -> bool:
    """Whether an experiment of this status has a row in results.tsv."""
    return status in _TSV_STATUS


def results_row(exp: Experiment) -> str | None:
    status = _TSV_STATUS.get(exp.status)
    if status is None:
        return None
    memory_gb = exp.secondary.get("peak_vram_mb", 0.0) / 1024
    verdict = exp.judged if exp.judged is not None else exp.metric  # as it was judged
    value = verdict if status != "crash" and verdict is not None else 0.0
    description = " ".join(exp.description.split())
    return f"{(exp.commit or '')[:7]}\t{value:.6f}\t{memory_gb:.1f}\t{status}\t{description}"


def results_lines(experiments: Iterable[Experiment], metric_name: str) -> list[str]:
    rows = (results_row(e) for e in experiments)
    return [results_header(metric_name), *(row for row in rows if row is not None)]


def results_of(folder: Path, tag: str) -> Path:
    """One loop's results.tsv: its rows only, so a notebook pointed at it compares that loop's
    baseline with that loop's best."""
    return folder / "loops" / tag / RESULTS_NAME


def link_results(folder: Path, tag: str) -> None:
    """`.ratchet/results.tsv` made a link to this loop's file (where autoresearch's users look);
    a file there from an older Ratchet, every loop's rows mixed, is replaced."""
    link = folder / RESULTS_NAME
    target = Path("loops") / tag / RESULTS_NAME
    try:
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        scratch = folder / f".results-link-{os.getpid()}-{threading.get_ident()}"
        scratch.unlink(missing_ok=True)
        os.symlink(target, scratch)
        os.replace(scratch, link)
    except OSError:
        return  # no links here (a file system without them): the loop's own file stands


def append_result(folder: Path, experiment: Experiment, metric_name: str) -> None:
    """One finished experiment appended to its loop's results.tsv (the header first, if new):
    one row written, whatever the record holds."""
    line = results_row(experiment)
    if line is None:
        return
    path = results_of(folder, experiment.tag)
    fresh = not path.exists()
    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as results:
        if fresh:
            results.write(results_header(metric_name) + "\n")
        results.write(line + "\n")


def write_results(
    folder: Path, tag: str, metric_name: str, experiments: Iterable[Experiment]
) -> None:
    """A loop's results.tsv rewritten whole (recovery), through a temporary file of its own so
    that concurrent writers never share one."""
    lines = results_lines(experiments, metric_name)
    path = results_of(folder, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(prefix=".results-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
