"""The report as Markdown, sized for a pull request's body: the headline, every keep with
its diff folded, the top near misses and the crash groups."""

from __future__ import annotations

from .report import Summary, clipped_diff, format_value, headline

NEAR_MISSES_MD = 5


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_md(summary: Summary) -> str:
    out = [f"## Ratchet loop `{summary.tag}`: {summary.metric}", ""]
    out += ["| | |", "|---|---|"]
    out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in headline(summary)]
    out += ["", f"### Keeps ({len(summary.keeps)})", ""]
    if not summary.keeps:
        out.append("Nothing beat the baseline beyond the noise.")
    for keep in summary.keeps:
        e = keep.experiment
        gain = f"{keep.gain:+.4g}" if keep.gain is not None else "—"
        runs = ", ".join(format_value(run["metric"]) for run in keep.runs) or "—"
        out += [
            f"- **exp {e.id}** {_cell(e.description)} — {summary.metric} "
            f"{format_value(keep.before)} → {format_value(e.metric)} ({gain}; "
            f"{summary.keep_words(keep)}); runs {runs}; `{(e.commit or '')[:10]}`"
            + (f"; holdout {holdout}" if (holdout := summary.holdout_words(keep)) else "")
            + (f"; cases: {_cell(keep.cases)}" if keep.cases else ""),
            "",
            f"<details><summary>diff</summary>\n\n```diff\n{clipped_diff(e.diff)}\n```\n</details>",
            "",
        ]
    if summary.near_misses:
        out += ["", "### Near misses", "", f"| exp | {summary.metric} | vs best | description |"]
        out.append("|---|---|---|---|")
        for miss in summary.near_misses[:NEAR_MISSES_MD]:
            e = miss.experiment
            out.append(
                f"| {e.id} | {format_value(e.metric)} | {miss.gap:+.4g} | {_cell(e.description)} |"
            )
    if summary.crashes:
        out += ["", "### Crashes", ""]
        for group in summary.crashes:
            ids = ", ".join(str(i) for i in group.ids[:20])
            out.append(f"- {len(group.ids)} × {group.status}: `{_cell(group.line)}` (exp {ids})")
    if summary.notes:
        out += ["", "### Notes given to the agent", ""]
        out += [f"- {_cell(note)}" for note in summary.notes]
    return "\n".join(out) + "\n"
