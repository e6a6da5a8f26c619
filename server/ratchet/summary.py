"""The whole history in a few kilobytes, grouped by what was changed.

An LLM agent sees the last experiments in full; this summary is how it remembers the rest, so
it does not walk back into dead ends once the history outgrows its context. Each experiment
counts towards what it changed: each constant of a `NAME a → b` description, or else the
most specific word of its description (the one rarest across the history: "swiglu" in
"replace relu with swiglu"). A group's line says how often it was tried, its best effect
against the best of its time, and the last result. Groups that do not fit in full are still
named, with their counts, so every earlier idea can be found.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .agents.space import parse_changes
from .experiment import Experiment, Status

SUMMARY_CHARS = 8000  # the whole summary, at any history length
FULL_LINES = 25  # groups shown with their numbers; the rest by name and count
_WORD = re.compile(r"[a-z][a-z0-9_]{3,}")
_STOP = frozenset(
    {
        "with",
        "from",
        "that",
        "this",
        "into",
        "than",
        "then",
        "them",
        "they",
        "were",
        "have",
        "more",
        "less",
        "make",
        "makes",
        "made",
        "over",
        "under",
        "each",
        "also",
        "only",
        "just",
        "some",
        "when",
        "what",
        "which",
        "while",
        "after",
        "before",
        "again",
        "same",
        "instead",
        "using",
        "use",
        "used",
        "change",
        "changed",
        "changes",
        "replace",
        "replaced",
        "add",
        "added",
        "remove",
        "removed",
        "try",
        "tried",
        "increase",
        "decrease",
        "lower",
        "higher",
        "raise",
        "reduce",
        "larger",
        "smaller",
    }
)


@dataclass
class Group:
    name: str
    tries: int = 0
    kept: int = 0
    crashed: int = 0
    best_effect: float | None = None  # signed change of the metric against its base
    best_id: int = 0
    last: str = ""
    samples: list[str] = field(default_factory=list)


def _idea(description: str) -> str:
    return description.split(" (", 1)[0].strip()


def _effect(exp: Experiment, bases: dict[str, float]) -> float | None:
    base = bases.get(exp.base_commit)
    if exp.metric is None or base is None:
        return None
    return exp.metric - base


def _keys(exp: Experiment, frequency: Counter[str]) -> list[str]:
    changes = parse_changes(exp.description)
    if changes:
        return list(changes)
    words = [w for w in _WORD.findall(_idea(exp.description).lower()) if w not in _STOP]
    if not words:
        return [_idea(exp.description)[:40] or "(no description)"]
    return [min(words, key=lambda w: (frequency[w], words.index(w)))]


def summarise(experiments: Sequence[Experiment], lower_is_better: bool = True) -> str:
    """The summary text; empty when there is nothing but the baseline."""
    rows = [e for e in experiments if e.source not in ("baseline",) and e.status.is_final]
    if not rows:
        return ""
    bases = {e.commit: e.metric for e in experiments if e.commit and e.metric is not None}
    frequency: Counter[str] = Counter()
    for exp in rows:
        frequency.update(set(_WORD.findall(_idea(exp.description).lower())))
    groups: dict[str, Group] = {}
    sign = 1.0 if lower_is_better else -1.0
    for exp in rows:
        effect = _effect(exp, bases)
        for key in _keys(exp, frequency):
            group = groups.setdefault(key, Group(key))
            group.tries += 1
            group.kept += exp.status is Status.KEPT
            group.crashed += exp.status in (Status.CRASHED, Status.TIMEOUT, Status.INVALID)
            if effect is not None and (
                group.best_effect is None or sign * effect < sign * group.best_effect
            ):
                group.best_effect, group.best_id = effect, exp.id
            group.last = f"exp {exp.id} {exp.status}"
            if len(group.samples) < 2 and _idea(exp.description) not in group.samples:
                group.samples.append(_idea(exp.description)[:60])
    return _render(list(groups.values()), len(rows), sign)


def _line(group: Group) -> str:
    effect = (
        f"best {group.best_effect:+.4g} (exp {group.best_id})"
        if group.best_effect is not None
        else "never measured"
    )
    crashed = f", {group.crashed} crashed" if group.crashed else ""
    sample = group.samples[0] if group.samples else ""
    example = f' e.g. "{sample}"' if sample and group.name not in sample else ""
    return (
        f"- {group.name}: tried {group.tries}x, kept {group.kept}{crashed}; {effect}; "
        f"last {group.last}{example}"[:160]
    )


def _render(groups: list[Group], total: int, sign: float) -> str:
    def rank(g: Group) -> tuple[float, int]:
        return (sign * g.best_effect if g.best_effect is not None else float("inf"), -g.tries)

    groups.sort(key=rank)
    head = f"{total} experiments, grouped by what they changed (best effect first):"
    lines = [head]
    size = len(head)
    shown = 0
    for group in groups[:FULL_LINES]:
        line = _line(group)
        if size + len(line) > SUMMARY_CHARS // 2:
            break
        lines.append(line)
        size += len(line) + 1
        shown += 1
    rest = sorted(groups[shown:], key=lambda g: -g.tries)
    if rest:
        names: list[str] = []
        left = SUMMARY_CHARS - size - 80
        for group in rest:
            token = f"{group.name} {group.tries}"
            if left < len(token) + 2:
                names.append(f"and {len(rest) - len(names)} more")
                break
            names.append(token)
            left -= len(token) + 2
        lines.append("- also tried (name, tries): " + ", ".join(names))
    return "\n".join(lines)
