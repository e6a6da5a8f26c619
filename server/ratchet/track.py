"""The best's level through time, for same-round controls: Kalman filters over its runs, one
per reading of how the machine moves (steady, trend, wander), averaged by how well the best's
runs fit each. Units: the noise (run-to-run sigma) and the loop's clock (one tick per run).
The judge (judge.py) reads a candidate against the level at the candidate's own times."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

Q_STEADY = 1e-5  # steady: the level's random walk, noise^2 per tick
Q_TREND, S_TREND = 1e-7, 0.3  # trend: its random walk (noise^2 per tick^3) and prior sd
Q_WANDER = 0.05  # wander: the level's random walk, noise^2 per tick
PEN_TREND, PEN_WANDER = 3.5, 3.5  # log-likelihood a moving reading must gain over steady
FORGET = 0.9  # each run's weight in the readings' likelihoods decays by this per run
RESET = 4.0  # a run this many sd from its prediction restarts the level (the machine jumped)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


class Timed(NamedTuple):
    """One run on the loop's clock (one tick per run recorded, in the order recorded)."""

    value: float
    at: float
    again: bool = False  # a run of a best after it was judged: a control, a re-measure


@dataclass(frozen=True)
class Drift:
    """One reading of how the machine moves, in units of the noise and the clock's ticks."""

    name: str
    level: float  # the level's random walk: variance per tick
    trend: float  # the trend's random walk: variance per tick^3 (with trend_prior > 0)
    trend_prior: float  # the trend's prior sd per tick; 0: no trend
    penalty: float  # the log-likelihood it must gain over "steady" to be the reading


DRIFTS = (
    Drift("steady", Q_STEADY, 0.0, 0.0, 0.0),
    Drift("trend", Q_STEADY, Q_TREND, S_TREND, PEN_TREND),
    Drift("wander", Q_WANDER, 0.0, 0.0, PEN_WANDER),
)


class _Filter:
    """A Kalman filter over the best's level and trend under one Drift; `fit` is the runs'
    log-likelihood under it, older runs weighing less (FORGET). Its covariance is kept in
    units of the noise's variance, so the level it gives does not depend on the noise
    estimate of the moment, and its variance is read with the noise of now."""

    __slots__ = ("a", "at", "b", "c", "drift", "fit", "level", "trend")

    def __init__(self, drift: Drift, value: float, at: float, variance: float) -> None:
        self.drift = drift
        self.level, self.trend, self.at, self.fit = value, 0.0, at, 0.0
        # The covariance of (level, trend) over the noise's variance: [[a, b], [b, c]].
        self.a, self.b, self.c = variance, 0.0, drift.trend_prior**2

    def inherit(self, parent: _Filter) -> None:
        """The machine's trend and fit carry over to a new best (its level does not)."""
        dt = max(0.0, self.at - parent.at)
        self.trend, self.fit = parent.trend, parent.fit
        self.c = parent.c + parent.drift.trend * dt

    def predict(self, at: float) -> None:
        dt = at - self.at
        if dt <= 0:
            return
        ql, qt = self.drift.level, self.drift.trend
        a, b, c = self.a, self.b, self.c
        self.level += self.trend * dt
        self.a = a + 2 * b * dt + c * dt * dt + ql * dt + qt * dt**3 / 3
        self.b = b + c * dt + qt * dt * dt / 2
        self.c = c + qt * dt
        self.at = at

    def update(self, value: float, at: float, noise: float) -> None:
        self.predict(at)
        innovation = value - self.level
        spread = self.a + 1.0
        z2 = innovation * innovation / (spread * noise * noise)
        self.fit = FORGET * self.fit - 0.5 * (math.log(spread) + min(z2, RESET * RESET))
        if z2 > RESET * RESET:  # the machine jumped: the level starts again from here
            self.a += z2 * spread
            spread = self.a + 1.0
        gain_level, gain_trend = self.a / spread, self.b / spread
        self.level += gain_level * innovation
        self.trend += gain_trend * innovation
        a, b, c = self.a, self.b, self.c
        self.a, self.b, self.c = a - a * a / spread, b - a * b / spread, c - b * b / spread

    def predicted(self, at: float) -> tuple[float, float]:
        """The level at `at` (before or after the last run) and its variance over the
        noise's variance."""
        d = at - self.at
        ql, qt = self.drift.level, self.drift.trend
        variance = self.a + 2 * self.b * d + self.c * d * d + ql * abs(d) + qt * abs(d) ** 3 / 3
        return self.level + self.trend * d, variance


class Track:
    """The best's level through time, from the runs it was judged on and its runs since
    (controls): what a candidate is judged against is the level at the candidate's own time,
    not a mean from hours ago. Run-to-run noise (the pooled estimate, from experiments'
    repeated runs) is kept apart from drift (the readings' random walks, fitted to the
    best's series). O(1) per run: the filters are updated, never rebuilt."""

    def __init__(
        self, value: float, at: float, runs: int, noise: float, parent: Track | None = None
    ) -> None:
        self.filters = [_Filter(d, value, at, 1 / runs) for d in DRIFTS]
        if parent is not None:
            for mine, theirs in zip(self.filters, parent.filters, strict=True):
                mine.inherit(theirs)
        self.last = at  # when the best was last measured
        self.controls = 0  # runs since it was judged
        self._total, self._count = value * runs, runs  # for `recorded`

    @classmethod
    def of(
        cls, series: list[Timed], noise: float, shift: float = 0.0, parent: Track | None = None
    ) -> Track:
        """The track of a best from its series: the runs it was judged on (read back by
        `shift`, its luck), then each run since."""
        judged = [run for run in series if not run.again]
        since = [run for run in series if run.again]
        if not judged:  # none on record: its first run stands for them, read once
            judged, since = series[:1], series[1:]
        value = mean([run.value for run in judged]) + shift
        track = cls(value, mean([run.at for run in judged]), len(judged), noise, parent)
        track.last = max(run.at for run in judged)
        for run in since:
            track.add(run, noise)
        return track

    def add(self, run: Timed, noise: float) -> None:
        for each in self.filters:
            each.update(run.value, run.at, noise)
        self.last = max(self.last, run.at)
        self.controls += 1
        self._total += run.value
        self._count += 1

    @property
    def recorded(self) -> float:
        """The best's metric over all its runs: their mean, the runs it was judged on read back
        for their luck. Not the filters' level: whatever the machine did, the mean of its runs
        reads the mean of its levels at their times, where a level predicted back from now
        reads a swing's past by today's trend."""
        return self._total / self._count

    @property
    def reading(self) -> _Filter:
        """The reading the runs fit best."""
        return max(self.filters, key=lambda f: f.fit - f.drift.penalty)

    def weights(self) -> list[float]:
        """Each reading's weight: its likelihood over the runs (less its penalty), relative."""
        scores = [f.fit - f.drift.penalty for f in self.filters]
        top = max(scores)
        raw = [math.exp(score - top) for score in scores]
        total = sum(raw)
        return [w / total for w in raw]

    def level(self, times: list[float], noise: float) -> tuple[float, float]:
        """The best's mean level over these times and its variance: the readings' predictions
        averaged by their weights, their disagreement counted in the variance."""
        centre = mean(times)
        predictions = [
            (mean([f.predicted(t)[0] for t in times]), f.predicted(centre)[1] * noise * noise)
            for f in self.filters
        ]
        weights = self.weights()
        level = sum(w * p for w, (p, _) in zip(weights, predictions, strict=True))
        variance = sum(
            w * (v + (p - level) ** 2) for w, (p, v) in zip(weights, predictions, strict=True)
        )
        return level, variance
