"""The report's progress chart as inline SVG: every experiment a dot, keeps marked, the best
as a step line with the noise band around it, the best's control runs beside each candidate
as short dashes (the machine moving), crashes as ticks along the bottom.

Written by hand (no plotting library, no script) so the report opens offline anywhere. The
discarded dots are one <path> of zero-length round-capped segments, so 10,000 of them cost
a few hundred kB, not a DOM node each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

from .report import Summary, format_value

WIDTH, HEIGHT = 960, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 20, 44


Scale = Callable[[float], float]


def _scale(low: float, high: float, start: float, end: float) -> Scale:
    span = (high - low) or 1.0
    return lambda value: start + (value - low) / span * (end - start)


def _ticks(low: float, high: float, count: int, integer: bool = False) -> list[float]:
    """Round tick values between low and high (whole numbers for experiment ids)."""
    span = (high - low) or 1.0
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * 0.999)
    if integer:
        step = max(1.0, round(step))
    first = (low // step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks


def _y_range(summary: Summary) -> tuple[float, float]:
    """Shows the best's path and the bulk of the dots; far outliers are pinned to the edge."""
    values = sorted(point[1] for point in summary.points)
    if not values:
        return 0.0, 1.0
    anchor = [v for e in (summary.baseline, summary.best) if e and (v := e.metric) is not None]
    if summary.lower_is_better:
        low = min(values[0], *anchor)
        high = max(values[int(0.9 * (len(values) - 1))], *anchor)
    else:
        low = min(values[int(0.1 * (len(values) - 1))], *anchor)
        high = max(values[-1], *anchor)
    pad = (high - low) * 0.06 or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def progress_svg(summary: Summary) -> str:
    if not summary.points:
        return '<p class="muted">No measured experiments yet.</p>'
    last = max([p[0] for p in summary.points] + summary.failed_ids + [1])
    low, high = _y_range(summary)
    x = _scale(0, last, LEFT, WIDTH - RIGHT)
    y = _scale(low, high, HEIGHT - BOTTOM, TOP)

    def clamp(value: float) -> float:
        return min(max(y(value), TOP), HEIGHT - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="progress chart" class="chart">'
    ]
    parts += _axes(summary, last, low, high, x, y)
    steps = [(k.experiment.id, k.experiment.metric or 0.0) for k in summary.keeps]
    if summary.baseline is not None and summary.baseline.metric is not None:
        steps.insert(0, (summary.baseline.id, summary.baseline.metric))
    if steps and summary.noise:
        parts.append(_band(steps, last, summary.noise, x, clamp))
    discarded = "".join(
        f"M{x(i):.1f} {clamp(v):.1f}h0" for i, v, status in summary.points if status != "kept"
    )
    parts.append(f'<path class="discarded" d="{discarded}"/>')
    if summary.controls:
        controls = "".join(f"M{x(i) - 3:.1f} {clamp(v):.1f}h6" for i, v in summary.controls)
        parts.append(f'<path class="control" d="{controls}"/>')
    if summary.failed_ids:
        ticks = "".join(f"M{x(i):.1f} {HEIGHT - BOTTOM - 1}v-6" for i in summary.failed_ids)
        parts.append(f'<path class="failed" d="{ticks}"/>')
    if steps:
        line = f"M{x(steps[0][0]):.1f} {clamp(steps[0][1]):.1f}"
        for i, v in steps[1:]:
            line += f"H{x(i):.1f}V{clamp(v):.1f}"
        line += f"H{x(last):.1f}"
        parts.append(f'<path class="best" d="{line}"/>')
    radius = 5 if len(summary.keeps) <= 50 else 3
    for keep in summary.keeps:
        e = keep.experiment
        parts.append(
            f'<circle class="kept" cx="{x(e.id):.1f}" cy="{clamp(e.metric or 0):.1f}" '
            f'r="{radius}">'
            f"<title>exp {e.id}: {escape(e.description)} — {format_value(e.metric)}</title>"
            "</circle>"
        )
    parts.append(_legend(summary))
    parts.append("</svg>")
    return "".join(parts)


def _band(steps: list[tuple[int, float]], last: int, noise: float, x: Scale, clamp: Scale) -> str:
    """The best ± noise, following the step line."""
    upper, lower = [], []
    ends = [s[0] for s in steps[1:]] + [last]
    for (start, value), end in zip(steps, ends, strict=True):
        upper += [(x(start), clamp(value + noise)), (x(end), clamp(value + noise))]
        lower += [(x(start), clamp(value - noise)), (x(end), clamp(value - noise))]
    points = upper + lower[::-1]
    return '<path class="band" d="M' + "L".join(f"{a:.1f} {b:.1f}" for a, b in points) + 'Z"/>'


def _axes(summary: Summary, last: int, low: float, high: float, x: Scale, y: Scale) -> list[str]:
    parts = [
        f'<line class="axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" '
        f'y2="{HEIGHT - BOTTOM}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}"/>',
    ]
    for tick in _ticks(0, last, 10, integer=True):
        parts.append(
            f'<text class="tick" x="{x(tick):.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle">{int(tick)}</text>'
        )
    for tick in _ticks(low, high, 6):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}"/><text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{tick:.4g}</text>'
        )
    better = "lower" if summary.lower_is_better else "higher"
    parts.append(
        f'<text class="label" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" '
        f'text-anchor="middle">experiment</text>'
        f'<text class="label" transform="translate(14 {(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)"'
        f' text-anchor="middle">{escape(summary.metric)} ({better} is better)</text>'
    )
    return parts


def _legend(summary: Summary) -> str:
    items = [
        ("kept", '<circle class="kept" cx="6" cy="-4" r="5"/>'),
        ("discarded", '<path class="discarded" d="M6 -4h0"/>'),
        ("best so far", '<path class="best" d="M0 -4h14"/>'),
    ]
    if summary.noise:
        band = '<rect class="band" x="0" y="-9" width="14" height="10"/>'
        items.append(("noise band (±σ)", band))
    if summary.controls:
        items.append(("the best, measured beside", '<path class="control" d="M3 -4h6"/>'))
    if summary.failed_ids:
        items.append(("crashed / invalid", '<path class="failed" d="M6 0v-8"/>'))
    out, offset = [f'<g transform="translate({WIDTH - RIGHT - 170} {TOP + 14})">'], 0
    for label, mark in items:
        out.append(
            f'<g transform="translate(0 {offset})">{mark}'
            f'<text class="tick" x="20" y="0">{label}</text></g>'
        )
        offset += 16
    out.append("</g>")
    return "".join(out)
