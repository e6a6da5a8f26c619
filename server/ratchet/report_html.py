"""The report as one self-contained HTML file: inline CSS, inline SVG, no script, nothing
fetched, so it opens offline and can be mailed or attached as it is."""

from __future__ import annotations

import time
from html import escape

from .report import (
    Keep,
    Summary,
    clipped_diff,
    example_log,
    format_value,
    headline,
)
from .report_svg import progress_svg

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2329;
background:#f6f7f9}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde;
padding-bottom:4px}
.muted{color:#6b7580}.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;
padding:12px 16px;margin:8px 0}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 8px;
border-bottom:1px solid #eef;vertical-align:top}th{color:#55606b;font-weight:600}
table.headline td:first-child{width:150px;color:#55606b}
.big{font-size:20px;font-weight:600}
pre{background:#f3f4f6;padding:8px;overflow:auto;font:12px/1.4 ui-monospace,Menlo,monospace;
margin:6px 0;max-height:420px}
.add{color:#176f2c;background:#e6ffec}.del{color:#a11;background:#ffebe9}.hunk{color:#6b45c2}
.chart{width:100%;height:auto;background:#fff;border:1px solid #e1e4e8;border-radius:6px}
.chart .axis{stroke:#889}.chart .grid{stroke:#eef0f3}.chart .tick{font-size:11px;fill:#55606b}
.chart .label{font-size:12px;fill:#33404d}
.chart .discarded{stroke:#a9b0b8;stroke-width:5;stroke-linecap:round;fill:none}
.chart .kept{fill:#1a9850;stroke:#0b3d20;stroke-width:1}
.chart .best{stroke:#1a9850;stroke-width:2;fill:none}
.chart .band{fill:#1a9850;fill-opacity:.13;stroke:none}
.chart .control{stroke:#d95f02;stroke-width:2.5;fill:none}
.chart .failed{stroke:#d73027;stroke-width:1.5}
.status-kept{color:#176f2c;font-weight:600}.gain{font-weight:600}
.holdout-fell{color:#b3261e;font-weight:600}
details summary{cursor:pointer}
"""


def render_html(summary: Summary) -> str:
    generated = time.strftime("%Y-%m-%d %H:%M", time.localtime(summary.generated_at))
    body = [
        f"<h1>Ratchet report — loop <code>{escape(summary.tag)}</code></h1>",
        f'<p class="muted">{escape(summary.metric)}, {escape(summary.goal)}; '
        f"{summary.total} experiments; generated {generated}</p>",
        _headline(summary),
        "<h2>Progress</h2>",
        progress_svg(summary),
        _keeps(summary),
        _near_misses(summary),
        _crashes(summary),
        _notes(summary),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Ratchet report: {escape(summary.tag)}</title>"
        f'<meta name="viewport" content="width=device-width"><style>{_CSS}</style></head>'
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _headline(summary: Summary) -> str:
    rows = headline(summary)
    first_label, first_value = rows[0]
    cells = [
        f'<tr><td>{escape(first_label)}</td><td class="big">{escape(first_value)}</td></tr>',
        *(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows[1:]),
    ]
    return f'<div class="card"><table class="headline">{"".join(cells)}</table></div>'


def diff_html(diff: str) -> str:
    if not diff.strip():
        return '<p class="muted">(no change to the file)</p>'
    lines = []
    for line in clipped_diff(diff).splitlines():
        css = ""
        if line.startswith("+") and not line.startswith("+++"):
            css = "add"
        elif line.startswith("-") and not line.startswith("---"):
            css = "del"
        elif line.startswith("@@"):
            css = "hunk"
        text = escape(line)
        lines.append(f'<span class="{css}">{text}</span>' if css else text)
    return "<pre>" + "\n".join(lines) + "</pre>"


def _keeps(summary: Summary) -> str:
    out = [f"<h2>Keeps ({len(summary.keeps)})</h2>"]
    if not summary.keeps:
        out.append('<p class="muted">Nothing beat the baseline beyond the noise.</p>')
    for keep in summary.keeps:
        e = keep.experiment
        runs = ", ".join(
            f"{format_value(run['metric'])}"
            + (f" ({escape(str(run['purpose']))})" if run.get("purpose") else "")
            for run in keep.runs
        )
        gain = (
            f"{keep.gain:+.4g} over {format_value(keep.before)} — "
            f"{escape(summary.keep_words(keep))}"
            if keep.gain is not None
            else "—"
        )
        out.append(
            '<div class="card">'
            f"<b>exp {e.id}</b> {escape(e.description)}"
            f"<table><tr><th>{escape(summary.metric)}</th><td>{format_value(e.metric)}</td>"
            f'<th>gain added</th><td class="gain">{gain}</td></tr>'
            f"<tr><th>runs</th><td>{runs or '—'}</td><th>commit</th>"
            f"<td><code>{escape((e.commit or '—')[:10])}</code> · {escape(e.agent)}</td></tr>"
            f"{_holdout_row(summary, keep)}"
            + (
                f'<tr><th>cases</th><td colspan="3">{escape(keep.cases)}</td></tr>'
                if keep.cases
                else ""
            )
            + f'<tr><th>reason</th><td colspan="3">{escape(e.reason)}</td></tr></table>'
            f"{diff_html(e.diff)}</div>"
        )
    return "".join(out)


def _holdout_row(summary: Summary, keep: Keep) -> str:
    """The keep's holdout beside its dev number; marked when it fell while dev rose."""
    words = summary.holdout_words(keep)
    if not words:
        return ""
    css = ' class="holdout-fell"' if summary.holdout_fell(keep) else ""
    return f'<tr><th>holdout</th><td colspan="3"{css}>{escape(words)}</td></tr>'


def _near_misses(summary: Summary) -> str:
    out = ["<h2>Near misses worth a second look</h2>"]
    if not summary.near_misses:
        return out[0] + '<p class="muted">None.</p>'
    out.append(
        f"<table><tr><th>exp</th><th>{escape(summary.metric)}</th><th>best then</th>"
        "<th>vs best</th><th>description</th></tr>"
    )
    for miss in summary.near_misses:
        e = miss.experiment
        noise = f" ({escape(summary.in_noise(miss.gap))})" if summary.noise else ""
        out.append(
            f"<tr><td>{e.id}</td><td>{format_value(e.metric)}</td>"
            f"<td>{format_value(miss.best_then)}</td><td>{miss.gap:+.4g}{noise}</td>"
            f"<td>{escape(e.description)}<details><summary>diff</summary>"
            f"{diff_html(e.diff)}</details></td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _crashes(summary: Summary) -> str:
    count = sum(len(group.ids) for group in summary.crashes)
    out = [f"<h2>Crashes and refusals ({count}, {len(summary.crashes)} kinds)</h2>"]
    if not summary.crashes:
        return out[0] + '<p class="muted">None.</p>'
    for group in summary.crashes:
        ids = ", ".join(str(i) for i in group.ids[:20])
        more = f" and {len(group.ids) - 20} more" if len(group.ids) > 20 else ""
        out.append(
            f'<div class="card"><b>{len(group.ids)} × {escape(group.status)}</b>: '
            f"<code>{escape(group.line)}</code>"
            f'<div class="muted">experiments {ids}{more}</div>'
            f"<details><summary>example: exp {group.example.id} — "
            f"{escape(group.example.description)}</summary>"
            f"<pre>{escape(example_log(group.example) or group.example.reason)}</pre>"
            "</details></div>"
        )
    return "".join(out)


def _notes(summary: Summary) -> str:
    head = "<h2>Your notes to the agent</h2>"
    if not summary.notes:
        return head + '<p class="muted">None given (<code>ratchet note "…"</code> adds one).</p>'
    return head + "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in summary.notes) + "</ul>"
