"""`ratchet plot`: the metric over experiments, in the spirit of autoresearch's progress.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import RatchetError
from .experiment import Experiment, Status


def running_best(experiments: list[Experiment]) -> list[tuple[int, float]]:
    """The best's value after each kept experiment, as (experiment, value) steps."""
    return [
        (e.id, e.metric) for e in experiments if e.status is Status.KEPT and e.metric is not None
    ]


def plot(
    experiments: list[Experiment], metric: str, goal: str, output: Path, noise: float | None = None
) -> int:
    """Writes the PNG; returns how many measured experiments it shows."""
    plt = _pyplot()
    measured = [e for e in experiments if e.metric is not None and e.status.measured]
    kept = [e for e in measured if e.status is Status.KEPT]
    figure, axes = plt.subplots(figsize=(10, 5), dpi=120)
    _draw_points(axes, measured)
    _draw_best(axes, experiments, noise)
    _draw_failures(axes, experiments, measured)
    _label(axes, kept, metric, goal, len(measured))
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)
    return len(measured)


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only."""
    try:
        import matplotlib
    except ImportError:
        raise RatchetError(
            "ratchet plot needs matplotlib: `pip install 'ratchet[plot]'` (or use "
            "`ratchet report`, which needs nothing more)"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_points(axes: Any, measured: list[Experiment]) -> None:
    """Each measured experiment a point: discarded grey, kept green."""
    value = {e.id: float(e.metric or 0.0) for e in measured}
    kept = [e for e in measured if e.status is Status.KEPT]
    others = [e for e in measured if e.status is not Status.KEPT]
    axes.scatter(
        [e.id for e in others],
        [value[e.id] for e in others],
        s=18,
        color="#b0b0b0",
        label="discarded",
        zorder=2,
    )
    axes.scatter(
        [e.id for e in kept],
        [value[e.id] for e in kept],
        s=46,
        color="#1a9850",
        edgecolor="black",
        linewidth=0.5,
        label="kept",
        zorder=4,
    )


def _draw_best(axes: Any, experiments: list[Experiment], noise: float | None) -> None:
    """The best so far as steps to the last experiment, with its noise band."""
    steps = running_best(experiments)
    if not steps:
        return
    last = max(e.id for e in experiments)
    xs = [s[0] for s in steps] + [last]
    ys = [s[1] for s in steps] + [steps[-1][1]]
    axes.step(xs, ys, where="post", color="#1a9850", linewidth=1.6, label="best so far", zorder=3)
    if noise:
        axes.fill_between(
            xs,
            [y - noise for y in ys],
            [y + noise for y in ys],
            step="post",
            color="#1a9850",
            alpha=0.12,
            label="noise band",
            zorder=1,
        )


def _draw_failures(axes: Any, experiments: list[Experiment], measured: list[Experiment]) -> None:
    """Experiments that measured nothing, as crosses along the lowest value measured."""
    failed = [e for e in experiments if not e.status.measured]
    if failed and measured:
        floor = min(e.metric for e in measured if e.metric is not None)
        axes.scatter(
            [e.id for e in failed],
            [floor] * len(failed),
            marker="x",
            s=22,
            color="#d73027",
            label="crashed / invalid",
            zorder=2,
        )


def _label(axes: Any, kept: list[Experiment], metric: str, goal: str, measured: int) -> None:
    """Each kept experiment's description beside it; the axes, the title and the legend."""
    for e in kept:
        axes.annotate(
            e.description[:40],
            (e.id, e.metric),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=7,
            rotation=20,
            color="#444444",
        )
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # experiments are whole numbers
    axes.set_xlabel("experiment")
    axes.set_ylabel(f"{metric} ({'lower' if goal == 'minimize' else 'higher'} is better)")
    axes.set_title(f"{measured} experiments, {max(0, len(kept) - 1)} kept improvements")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
