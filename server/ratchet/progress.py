"""Early abort: the live output yields a learning curve; a run clearly worse than the best
run's curve at the same fraction of the budget is stopped, saving GPU time on losers."""

from __future__ import annotations

import bisect
import json
import re
from pathlib import Path

from .config import MetricConfig

Curve = list[tuple[float, float]]  # (fraction of the budget, value)


class CurveReader:
    """Reads `name: value` (or the pattern's group) from output lines as a learning curve."""

    def __init__(self, progress: str) -> None:
        if re.fullmatch(r"[A-Za-z_][\w./-]*", progress):
            self._pattern = re.compile(rf"(?:^|[\s,|]){re.escape(progress)}\s*[:=]\s*([-+0-9.eE]+)")
        else:
            self._pattern = re.compile(progress)
        self.points: Curve = []

    def feed(self, line: str, fraction: float) -> float | None:
        match = self._pattern.search(line)
        if not match:
            return None
        try:
            value = float(match.group(1))
        except ValueError:
            return None
        self.points.append((fraction, value))
        return value


def value_at(curve: Curve, fraction: float) -> float | None:
    """The curve's value at a fraction of the budget, interpolated; None outside it."""
    if not curve or fraction < curve[0][0] or fraction > curve[-1][0]:
        return None
    index = bisect.bisect_left([f for f, _ in curve], fraction)
    if curve[index][0] == fraction or index == 0:
        return curve[index][1]
    (f0, v0), (f1, v1) = curve[index - 1], curve[index]
    return v0 + (v1 - v0) * (fraction - f0) / (f1 - f0)


class AbortWatch:
    """Compares a running curve with the best run's; says why to stop, once, or None."""

    def __init__(self, config: MetricConfig, best_curve: Curve) -> None:
        assert config.progress is not None
        self.reader = CurveReader(config.progress)
        self.best = best_curve
        self.lower_is_better = config.progress_goal == "minimize"
        self.after = config.abort_after
        self.margin = config.abort_margin
        self._fired = False

    def feed(self, line: str, fraction: float) -> str | None:
        value = self.reader.feed(line, fraction)
        if value is None or self._fired or fraction < self.after:
            return None
        reference = value_at(self.best, fraction)
        if reference is None:
            return None
        worse = value - reference if self.lower_is_better else reference - value
        if worse > self.margin * abs(reference):
            self._fired = True
            return (
                f"aborted at {fraction:.0%} of the budget: progress {value:.4g} against the "
                f"best run's {reference:.4g} there (more than {self.margin:.0%} worse)"
            )
        return None


def save_curve(folder: Path, experiment: int, curve: Curve) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{experiment}.json").write_text(json.dumps(curve), encoding="utf-8")


def load_curve(folder: Path, experiment: int) -> Curve:
    try:
        raw = json.loads((folder / f"{experiment}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [(float(f), float(v)) for f, v in raw]
