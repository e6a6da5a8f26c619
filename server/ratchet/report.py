"""`ratchet report`: what a loop did overnight, gathered from the ledger into plain data.

The rendering lives beside it (report_html, report_md); this module only reads and sums up.
The long tail is summarised, never dumped: every keep is listed, near misses are the top few,
crashes are grouped by their error line with one example each, so the report of a loop of
10,000 experiments stays a few MB and takes a few seconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from .cases import case_changes
from .experiment import Experiment, Status
from .ledger import Ledger
from .noise import estimate_noise

NEAR_MISSES = 10
EXAMPLE_LOG_LINES = 40
DIFF_LINES = 300

_ERROR_WORDS = re.compile(
    r"(error|exception|traceback|killed|abort|fault|timed? ?out|refused|denied|nan\b)", re.I
)
_VOLATILE = re.compile(r"0x[0-9a-f]+|\d+(\.\d+)?|/\S*/(worktrees|tmp)/\S*", re.I)


@dataclass(frozen=True)
class Keep:
    experiment: Experiment
    before: float | None  # the best it beat
    gain: float | None  # how much better, positive = better, in the metric's units
    runs: list[dict[str, Any]]
    holdout_before: float | None = None  # the holdout of the best it beat (`[metric] holdout`)
    cases: str = ""  # what it fixed and broke, case by case ("" without per-case scores)


@dataclass(frozen=True)
class NearMiss:
    experiment: Experiment
    best_then: float
    gap: float  # positive: better than the best then, yet not beyond the noise


@dataclass(frozen=True)
class CrashGroup:
    line: str  # the error line of the first example
    status: str
    ids: list[int]
    example: Experiment


@dataclass(frozen=True)
class Summary:
    tag: str
    metric: str
    goal: str
    generated_at: float
    total: int  # every experiment, the baseline included
    baseline: Experiment | None
    best: Experiment | None
    noise: float | None
    keeps: list[Keep]
    near_misses: list[NearMiss]
    crashes: list[CrashGroup]
    statuses: dict[str, int]
    notes: list[str]
    wall_s: float
    run_s: float
    gpu_hours: float
    cost_usd: float
    tokens: int
    hardware: list[str]
    sandbox: str
    points: list[tuple[int, float, str]] = field(default_factory=list)  # (id, metric, status)
    failed_ids: list[int] = field(default_factory=list)
    # (candidate id, the best's level measured beside it): the control series, so a person
    # sees the machine move under the loop.
    controls: list[tuple[int, float]] = field(default_factory=list)

    @property
    def lower_is_better(self) -> bool:
        return self.goal != "maximize"

    @property
    def gain(self) -> float | None:
        if self.baseline is None or self.best is None:
            return None
        if self.baseline.metric is None or self.best.metric is None:
            return None
        return self.better_by(self.best.metric, self.baseline.metric)

    def better_by(self, value: float, than: float) -> float:
        return better_by(self.lower_is_better, value, than)

    def in_noise(self, amount: float | None) -> str:
        """An amount in noise units, in words."""
        if amount is None:
            return ""
        if self.noise is None:
            return "noise not measured (one baseline run)"
        if self.noise == 0:
            return "deterministic metric (noise 0)"
        return f"{amount / self.noise:.1f}σ (σ {self.noise:.3g}, the run-to-run noise)"

    def keep_words(self, keep: Keep) -> str:
        """A keep in the judge's one currency, as its verdict measured it (against the level
        of the best beside it, on that moment's noise); older records: its gain over the best
        in today's noise."""
        e = keep.experiment
        if e.effect is None or e.resolvable is None:
            return self.in_noise(keep.gain)
        return f"gain {e.effect:.1f}σ at its verdict; its runs resolved {e.resolvable:.1f}σ"

    @property
    def has_holdout(self) -> bool:
        return any(e.holdout is not None for e in (self.baseline, self.best) if e) or any(
            k.experiment.holdout is not None for k in self.keeps
        )

    def holdout_change(self, keep: Keep) -> float | None:
        """How much better the keep's holdout is than that of the best it beat (positive =
        better); None when either was not measured."""
        after, before = keep.experiment.holdout, keep.holdout_before
        return None if after is None or before is None else self.better_by(after, before)

    def holdout_fell(self, keep: Keep) -> bool:
        """Dev rose but the holdout fell beyond its noise: the keep may not generalise.

        "Its noise" is the loop's run-to-run noise σ (the holdout is measured once per best,
        so it has no spread of its own; it scores the same kind of run on other cases): a fall
        larger than σ, or any fall where σ is not measured or is 0."""
        change = self.holdout_change(keep)
        rose = keep.gain is not None and keep.gain > 0
        return rose and change is not None and change < -(self.noise or 0.0)

    def holdout_words(self, keep: Keep) -> str:
        """The keep's holdout beside its dev number, in words ("" without a holdout)."""
        after = keep.experiment.holdout
        if after is None and keep.holdout_before is None:
            return ""
        change = self.holdout_change(keep)
        words = f"{format_value(keep.holdout_before)} → {format_value(after)}"
        if change is not None:
            words += f" ({change:+.4g}; {self.in_noise(change)})"
        if self.holdout_fell(keep):
            words += " ⚠ the holdout fell beyond its noise while dev rose: it may not generalise"
        return words


def better_by(lower_is_better: bool, value: float, than: float) -> float:
    """How much better `value` is than `than` (positive = better), in the metric's units."""
    return than - value if lower_is_better else value - than


def summarise(ledger: Ledger, tag: str, near_misses: int = NEAR_MISSES) -> Summary:
    loop = ledger.loop(tag) or {}
    experiments = ledger.experiments(tag)
    goal = loop.get("goal") or "minimize"
    lower = goal != "maximize"
    baseline = next((e for e in experiments if e.source == "baseline"), None) or (
        experiments[0] if experiments else None
    )
    keeps, best = _keeps(tag, lower, baseline, experiments, ledger)
    noise = estimate_noise(list(ledger.run_groups(tag).values()))
    return Summary(
        tag=tag,
        metric=loop.get("metric_name") or "metric",
        goal=goal,
        generated_at=time.time(),
        total=len(experiments),
        baseline=baseline,
        best=best or baseline,
        noise=noise,
        keeps=keeps,
        near_misses=_near_misses(lower, experiments, noise)[:near_misses],
        crashes=_crash_groups(experiments),
        statuses=_count_statuses(experiments),
        notes=ledger.notes(tag),
        wall_s=_wall(experiments),
        run_s=sum(e.run_s for e in experiments),
        gpu_hours=sum(e.run_s * int(e.hardware.get("gpu_count") or 0) for e in experiments) / 3600,
        cost_usd=sum(e.cost_usd for e in experiments),
        tokens=sum(e.input_tokens + e.output_tokens for e in experiments),
        hardware=_hardware(experiments),
        sandbox=_sandbox(experiments),
        points=[
            (e.id, e.metric, str(e.status))
            for e in experiments
            if e.metric is not None and e.status.measured
        ],
        failed_ids=[e.id for e in experiments if e.status.is_final and not e.status.measured],
        controls=[(e.id, e.control) for e in experiments if e.control is not None],
    )


def _keeps(
    tag: str,
    lower: bool,
    baseline: Experiment | None,
    experiments: list[Experiment],
    ledger: Ledger,
) -> tuple[list[Keep], Experiment | None]:
    """Every keep after the baseline, with the best it beat; the last keep is the best."""
    keeps: list[Keep] = []
    best: Experiment | None = None
    for exp in experiments:
        if exp.status is not Status.KEPT or exp.metric is None:
            continue
        if best is not None and exp is not baseline:
            before = best.metric
            gain = better_by(lower, exp.metric, before) if before is not None else None
            changes = case_changes(ledger, tag, exp.id, best.id)
            cases = changes.words() if changes else ""
            keeps.append(Keep(exp, before, gain, ledger.runs(tag, exp.id), best.holdout, cases))
        best = exp
    return keeps, best


def _near_misses(lower: bool, experiments: list[Experiment], noise: float | None) -> list[NearMiss]:
    """Discarded experiments within two noise units of the best of their time (within 1 %
    for a metric without noise), closest first: a second run might have kept them."""
    misses: list[NearMiss] = []
    best_then: float | None = None
    for exp in experiments:
        if exp.metric is None:
            continue
        if exp.status is Status.KEPT:
            best_then = exp.metric
        elif exp.status is Status.DISCARDED and best_then is not None:
            gap = better_by(lower, exp.metric, best_then)
            if gap > -(2 * noise if noise else 0.01 * abs(best_then)):
                misses.append(NearMiss(exp, best_then, gap))
    misses.sort(key=lambda miss: -miss.gap)
    return misses


def error_line(exp: Experiment) -> str:
    """The line that says what went wrong: the last error-looking line of the log, else the
    reason the loop gave."""
    lines = [line.strip() for line in exp.log_tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_WORDS.search(line):
            return line[:300]
    return (exp.reason or (lines[-1] if lines else "") or str(exp.status))[:300]


def _crash_groups(experiments: list[Experiment]) -> list[CrashGroup]:
    groups: dict[tuple[str, str], CrashGroup] = {}
    for exp in experiments:
        if not exp.status.is_final or exp.status.measured or exp.status is Status.REJECTED:
            continue
        line = error_line(exp)
        key = (str(exp.status), _VOLATILE.sub("#", line))
        group = groups.get(key)
        if group is None:
            groups[key] = CrashGroup(line, str(exp.status), [exp.id], exp)
        else:
            group.ids.append(exp.id)
    return sorted(groups.values(), key=lambda group: -len(group.ids))


def _count_statuses(experiments: list[Experiment]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for exp in experiments:
        counts[str(exp.status)] = counts.get(str(exp.status), 0) + 1
    return counts


def _wall(experiments: list[Experiment]) -> float:
    starts = [e.started_at for e in experiments if e.started_at]
    ends = [e.finished_at for e in experiments if e.finished_at]
    return max(ends) - min(starts) if starts and ends else 0.0


def _hardware(experiments: list[Experiment]) -> list[str]:
    """Each distinct machine the runs used, with how many experiments ran there."""
    counts: dict[str, int] = {}
    for exp in experiments:
        hw = exp.hardware
        if not hw:
            continue
        device = hw.get("gpu") or f"{hw.get('cpu') or 'CPU'} ({hw.get('cpus', '?')} cores)"
        if int(hw.get("gpu_count") or 0) > 1:
            device = f"{hw['gpu_count']} × {device}"
        name = f"{hw.get('host') or 'local'}: {device}"
        counts[name] = counts.get(name, 0) + 1
    return [f"{name} — {count} experiments" for name, count in counts.items()]


def _sandbox(experiments: list[Experiment]) -> str:
    """Whether runs were sandboxed, as the experiments recorded it (hardware or secondary)."""
    kinds: dict[str, int] = {}
    ran = 0
    for exp in experiments:
        if not exp.hardware and not exp.run_s:
            continue
        ran += 1
        value: Any = exp.hardware.get("sandbox", exp.secondary.get("sandbox"))
        if value is None:
            continue
        if isinstance(value, dict):
            value = value.get("kind") or "recorded"
        kinds[str(value)] = kinds.get(str(value), 0) + 1
    if not kinds:
        return "not recorded"
    parts = [f"{kind} ({count} of {ran} runs)" for kind, count in kinds.items()]
    missing = ran - sum(kinds.values())
    if missing:
        parts.append(f"not recorded ({missing})")
    return ", ".join(parts)


def format_value(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def headline(summary: Summary) -> list[tuple[str, str]]:
    """The numbers at the top, as (label, value) pairs, shared by HTML and Markdown."""
    base, best = summary.baseline, summary.best
    gain = summary.gain
    if gain is not None and base is not None and base.metric:
        change = f"{gain:+.4g} ({100 * gain / abs(base.metric):+.2f} %) — {summary.in_noise(gain)}"
    else:
        change = "—"
    crashed = sum(len(group.ids) for group in summary.crashes)
    candidates = max(0, summary.total - 1)
    rows = [
        (
            summary.metric,
            f"{format_value(base.metric if base else None)} → "
            f"{format_value(best.metric if best else None)}"
            f" ({'lower' if summary.lower_is_better else 'higher'} is better)",
        ),
        ("gain", change),
        ("kept", f"{len(summary.keeps)} of {candidates} candidates (plus the baseline)"),
        ("crashed / invalid", f"{crashed}" + _status_breakdown(summary)),
        ("wall time", f"{format_duration(summary.wall_s)} (runs {format_duration(summary.run_s)})"),
        ("GPU-hours", f"{summary.gpu_hours:.2f}" if summary.gpu_hours else "0 (CPU only)"),
        ("API cost", f"${summary.cost_usd:.2f} ({summary.tokens:,} tokens)"),
        ("hardware", "; ".join(summary.hardware) or "not recorded"),
        ("sandboxed", summary.sandbox),
    ]
    if summary.has_holdout:
        rows.insert(2, ("holdout", holdout_headline(summary)))
    return rows


def holdout_headline(summary: Summary) -> str:
    """The holdout from the baseline to the best, and the keeps where it fell while dev rose."""
    base, best = summary.baseline, summary.best
    first = base.holdout if base else None
    last = best.holdout if best else None
    words = f"{format_value(first)} → {format_value(last)}"
    if first is not None and last is not None:
        change = summary.better_by(last, first)
        words += f" ({change:+.4g}; {summary.in_noise(change)})"
    fell = [keep.experiment.id for keep in summary.keeps if summary.holdout_fell(keep)]
    if fell:
        words += f"; fell while dev rose at exp {', '.join(map(str, fell))}"
    return words + " (measured on each new best; never shown to the agent; selects nothing)"


def _status_breakdown(summary: Summary) -> str:
    failed = {
        status: count
        for status, count in summary.statuses.items()
        if status not in ("kept", "discarded", "rejected") and Status(status).is_final
    }
    if not failed:
        return ""
    return " (" + ", ".join(f"{count} {status}" for status, count in failed.items()) + ")"


def clipped_diff(diff: str) -> str:
    lines = diff.splitlines()
    if len(lines) <= DIFF_LINES:
        return diff
    return "\n".join([*lines[:DIFF_LINES], f"… {len(lines) - DIFF_LINES} more lines"])


def example_log(exp: Experiment) -> str:
    lines = exp.log_tail.splitlines()
    return "\n".join(lines[-EXAMPLE_LOG_LINES:])
