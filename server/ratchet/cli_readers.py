"""`ratchet log | plot | report | show | note | forget | finalize`: the CLI's commands that
read a loop's record (and `finalize`, which makes the branch a person reviews from it)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from pathlib import Path

from rich.console import Console

from .cases import changes_from_base
from .config import load_config
from .errors import RatchetError
from .experiment import Experiment
from .ledger import CONTROL, Ledger
from .noise import estimate_noise
from .results_tsv import results_lines
from .traces import trace_path
from .view import experiments_table, format_metric
from .workspace import RATCHET_DIR

LOG_ROWS = 200  # the table's last rows; --all for every one


def _open_ledger(project: Path, tag: str | None, write: bool = False) -> tuple[Ledger, str]:
    """The record, read-only unless `write` (a note is the one thing a reader adds)."""
    folder = project / RATCHET_DIR
    if not (folder / "ledger.sqlite").exists():
        raise RatchetError(f"no experiments yet in {project}: start the loop with `ratchet run`")
    ledger = Ledger(folder, read_only=not write)
    tags = ledger.tags()
    if tag is None:
        if not tags:
            raise RatchetError("no loop has run here yet: start one with `ratchet run`")
        tag = tags[-1]
    elif tag not in tags:
        raise RatchetError(f"no loop tagged {tag!r}; known tags: {', '.join(tags) or 'none'}")
    return ledger, tag


def _write_json_rows(experiments: list[Experiment], groups: dict[int, list[float]]) -> None:
    """A JSON array, one object per experiment with its runs, written as it goes."""
    out = sys.stdout
    out.write("[")
    for number, exp in enumerate(experiments):
        row = dict(vars(exp))  # flat fields: no deep copy (asdict) for 100,000 rows
        row["status"] = str(exp.status)
        row["runs"] = groups.get(exp.id, [])
        out.write(("," if number else "") + "\n" + json.dumps(row))
    out.write("\n]\n")


def _log(args: argparse.Namespace, project: Path, console: Console) -> int:
    ledger, tag = _open_ledger(project, args.tag)
    loop = ledger.loop(tag) or {}
    groups = ledger.run_groups(tag)
    noise = estimate_noise(list(groups.values()))
    if args.json:
        _write_json_rows(ledger.experiments(tag), groups)
    elif args.tsv:  # printed from the ledger; results.tsv itself is the loop's to write
        lines = results_lines(
            ledger.experiments(tag, light=True), loop.get("metric_name", "metric")
        )
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        experiments = ledger.experiments(tag, light=True)
        limit = None if args.all else LOG_ROWS
        console.print(experiments_table(experiments, loop.get("metric_name", "metric"), limit))
        if limit and len(experiments) > limit:
            console.print(
                f"… {len(experiments) - limit} earlier experiments not shown: `ratchet log --all`"
            )
        repeated = sum(len(runs) for runs in groups.values() if len(runs) > 1)
        if noise is not None:
            console.print(
                f"noise band: ±{noise:.4g} (run-to-run standard deviation, from "
                f"{repeated} repeated runs); a keep must beat the best by more than this noise "
                "and than [metric] min_delta"
            )
    return 0


def _plot(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .outputs import output_path
    from .plot import plot

    ledger, tag = _open_ledger(project, args.tag)
    loop = ledger.loop(tag) or {}
    output = output_path(project, args.output, "progress.png")
    noise = estimate_noise(list(ledger.run_groups(tag).values()))
    count = plot(
        ledger.experiments(tag, light=True),
        loop.get("metric_name", "metric"),
        loop.get("goal", "minimize"),
        output,
        noise,
    )
    console.print(f"wrote {output} ({count} measured experiments)")
    return 0


def _report(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .outputs import output_path
    from .report import summarise

    fmt = args.format or ("md" if args.output and args.output.suffix == ".md" else "html")
    ledger, tag = _open_ledger(project, args.tag)
    output = output_path(project, args.output, f"report.{fmt}")
    summary = summarise(ledger, tag)
    if fmt == "md":
        from .report_md import render_md

        text = render_md(summary)
    else:
        from .report_html import render_html

        text = render_html(summary)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console.print(
        f"wrote {output} ({len(text.encode()) / 1024:.0f} kB): {len(summary.keeps)} keeps of "
        f"{summary.total} experiments"
    )
    return 0


def _finalize(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .finalize import finalize, outcome_lines, parse_exclude

    ledger, tag = _open_ledger(project, args.tag)
    done = finalize(
        project,
        ledger,
        tag,
        squash=args.squash,
        exclude=parse_exclude(args.exclude),
        patch_dir=args.patch,
    )
    for line in outcome_lines(done, tag, args.squash, args.patch):
        console.print(line)
    if args.measure and done.tip:
        console.print(_measure_review(project, ledger, tag, done.tip), markup=False)
    return 0


def _measure_review(project: Path, ledger: Ledger, tag: str, tip: str) -> str:
    """`finalize --measure`: the review branch's own dev number and holdout, in words."""
    from .report import summarise
    from .review_holdout import measure_review

    config = load_config(project)
    summary = summarise(ledger, tag, near_misses=0)
    loop_id = hashlib.sha256(f"{config.root.resolve()}:{tag}".encode()).hexdigest()[:16]
    measured = asyncio.run(measure_review(config, tag, tip, loop_id))
    if measured.problem:
        return f"the review branch, measured: {measured.problem} (log {measured.log})"
    base = summary.baseline
    words = (
        f"the review branch, measured: {config.metric.name} {format_metric(measured.metric)} "
        f"(baseline {format_metric(base.metric if base else None)})"
    )
    if config.metric.holdout:
        words += (
            f"; holdout {format_metric(measured.holdout)} (baseline "
            f"{format_metric(base.holdout if base else None)}; log {measured.log})"
        )
    return words


def _show(args: argparse.Namespace, project: Path, console: Console) -> int:
    ledger, tag = _open_ledger(project, args.tag)
    exp = ledger.get(tag, args.experiment)
    if exp is None:
        raise RatchetError(f"no experiment {args.experiment} in loop {tag}")
    console.print(f"[bold]exp {exp.id}[/bold] {exp.status}: {exp.description}")
    console.print(f"metric {format_metric(exp.metric)}   {exp.reason}")
    if exp.effect is not None and exp.resolvable is not None:
        console.print(
            f"verdict  gain {exp.effect:.1f}σ; its runs resolved {exp.resolvable:.1f}σ  "
            "(σ: the run-to-run noise; the judge's one currency)"
        )
    console.print(
        f"commit {exp.commit or '—'} on {exp.base_commit[:10]}   agent {exp.agent}   "
        f"run {exp.run_s:.1f}s   agent {exp.agent_s:.1f}s   overhead {exp.overhead_s * 1000:.0f}ms"
    )
    runs = ledger.runs(tag, exp.id)
    if runs:
        console.print(
            "runs  "
            + "   ".join(
                f"{r['run'] + 1}: {format_metric(r['metric'])} ({r['wall_s']:.1f}s, {r['purpose']})"
                for r in runs
            )
        )
    _show_controls(ledger, tag, exp.id, console)
    _show_cases(ledger, tag, exp, console)
    last = f" (run {len(runs)} of {len(runs)})" if len(runs) > 1 else ""
    if exp.holdout is not None:
        console.print(
            f"holdout {format_metric(exp.holdout)}   (its own command and files, run on this new "
            "best; shown to you, never to an agent; it selects nothing)"
        )
    if exp.secondary:
        console.print(
            f"secondary{last}  " + "  ".join(f"{k} {v:g}" for k, v in exp.secondary.items())
        )
    if exp.diff:
        console.print("[bold]diff[/bold]")
        console.print(exp.diff, markup=False)
    if exp.log_tail:
        console.print(f"[bold]log tail{last}[/bold]")
        console.print(exp.log_tail, markup=False)
    evaluator = _eval_log_tail(exp.log_path, len(runs))
    if evaluator:  # the evaluator's own output holds the metric (issue 23)
        console.print(f"[bold]evaluator log tail{last}[/bold]")
        console.print(evaluator, markup=False)
    trace = trace_path(project / RATCHET_DIR / "loops" / tag, exp.id)
    if trace.exists():
        console.print("[bold]agent trace[/bold]")
        console.print(trace.read_text(encoding="utf-8")[-8000:], markup=False)
    return 0


def _eval_log_tail(log_path: str, runs: int, lines: int = 20) -> str:
    """The last lines of the evaluator's log of an experiment's last run ("" when none)."""
    if not log_path:
        return ""
    path = Path(log_path)
    if runs > 1:
        path = path.with_name(f"{path.stem}.run{runs}.log")
    path = path.with_suffix(".eval.log")
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - 16384))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _show_cases(ledger: Ledger, tag: str, exp: Experiment, console: Console) -> None:
    """What the experiment fixed and broke, case by case, against the best it was made from
    (its own runs against that best's runs and the control runs beside it); ids bounded."""
    changes = changes_from_base(ledger, tag, exp)
    if changes is not None:
        console.print(f"cases  against exp {changes.against}: {changes.words()}", markup=False)


def _show_controls(ledger: Ledger, tag: str, experiment: int, console: Console) -> None:
    """The control runs beside this experiment (the best of its time, measured again on its
    slot), and this experiment's own runs as a control beside later candidates."""
    beside = ledger.controls_beside(tag, experiment)
    if beside:
        console.print(
            "controls  "
            + "   ".join(
                f"exp {r['experiment']}: {format_metric(r['metric'])} ({r['wall_s']:.1f}s, control)"
                for r in beside
            )
        )
    own = [r for r in ledger.runs(tag, experiment, controls=True) if r["purpose"] == CONTROL]
    if own:
        shown = own[-8:]
        console.print(
            f"as a control  {len(own)} run{'s' if len(own) != 1 else ''} beside later candidates"
            + (f" (the last {len(shown)})" if len(shown) < len(own) else "")
            + ":  "
            + "   ".join(
                f"{format_metric(r['metric'])} beside exp {r['beside']}"
                if r["beside"] is not None
                else format_metric(r["metric"])
                for r in shown
            )
        )


def _forget(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .forget import forget

    ledger, tag = _open_ledger(project, args.tag)
    ledger.close()
    console.print(forget(project, tag))
    return 0


def _note(args: argparse.Namespace, project: Path, console: Console) -> int:
    ledger, tag = _open_ledger(project, args.tag, write=True)
    ledger.add_note(tag, args.text)
    console.print(f"noted for loop {tag}; the agent sees it from its next proposal on")
    return 0


COMMANDS = {
    "log": _log,
    "plot": _plot,
    "report": _report,
    "finalize": _finalize,
    "show": _show,
    "note": _note,
    "forget": _forget,
}
