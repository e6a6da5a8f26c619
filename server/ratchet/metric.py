"""Reading the one metric (and the summary's other numbers) from an experiment's output."""

from __future__ import annotations

import math
import re

from .config import MetricConfig
from .experiment import Measurement

# autoresearch's summary lines: `val_bpb:          0.997900`
_KEY_NUMBER = re.compile(
    r"^\s*([A-Za-z_][\w./-]*)\s*[:=]\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf(?:inity)?)\s*$",
    re.IGNORECASE,
)


class MetricReader:
    """Fed the output line by line; keeps the last metric value and the summary block it sat in.

    Incremental, so a run that prints millions of lines costs no second pass over its log.
    """

    def __init__(self, config: MetricConfig) -> None:
        self._name = config.name
        self._pattern = re.compile(config.pattern) if config.pattern else None
        self._raw: str | None = None
        self._block: dict[str, str] = {}
        self._summary: dict[str, str] = {}

    def feed(self, line: str) -> None:
        match = _KEY_NUMBER.match(line)
        if match:
            key, value = match.group(1), match.group(2)
            self._block[key] = value
            if self._pattern is None and key == self._name:
                self._raw = value
                self._summary = self._block  # later lines of this block join it too
        else:
            self._block = {}
        if self._pattern is not None and (found := self._pattern.search(line)):
            self._raw = found.group(1)
            self._summary = self._block

    def result(self) -> Measurement:
        secondary = {}
        for key, raw in self._summary.items():
            if key == self._name:
                continue
            number = _to_float(raw)
            if number is not None and math.isfinite(number):
                secondary[key] = number
        if self._raw is None:
            wanted = f"/{self._pattern.pattern}/" if self._pattern else f"`{self._name}: <number>`"
            return Measurement(None, secondary, f"no {wanted} line in the output")
        value = _to_float(self._raw)
        if value is None or not math.isfinite(value):
            return Measurement(None, secondary, f"{self._name} is {self._raw}, not a finite number")
        return Measurement(value, secondary)


def _to_float(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def read_metric(config: MetricConfig, lines: list[str]) -> Measurement:
    reader = MetricReader(config)
    for line in lines:
        reader.feed(line)
    return reader.result()
