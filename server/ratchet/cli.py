"""`ratchet init | run | log | plot | report | finalize | show | note | doctor | serve`:
a thin face on the engine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import __version__, hardware
from .cases import case_changes
from .config import AGENT_KINDS, LLM_KINDS, Config, ConfigError, load_config
from .engine import Engine
from .errors import RatchetError
from .events import Event, ExperimentProposed
from .experiment import Experiment
from .judge import estimate_noise
from .ledger import CONTROL, Ledger, results_lines
from .runners.sandbox import describe as sandbox_status
from .traces import trace_path
from .view import LoopView, experiments_table, format_metric
from .workspace import RATCHET_DIR

EXIT_USER_ERROR = 2
LOG_ROWS = 200  # the table's last rows; --all for every one
EXIT_ROWS = 20  # the rows `ratchet run` prints when it ends without a terminal
EXIT_INTERRUPTED = 130


def _positive(text: str) -> int:
    number = int(text) if text.strip().isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return number


_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _tag(text: str) -> str:
    """A loop's tag names a branch, refs and a folder: letters, digits, `_`, `-`, `.` only."""
    if not _TAG.fullmatch(text) or ".." in text or text.endswith((".", ".lock")):
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot name a loop: use up to 64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (e.g. --tag dec6)"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratchet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ratchet {__version__}")
    parser.add_argument(
        "-C",
        "--project",
        type=Path,
        default=Path.cwd(),
        help="the folder of ratchet.toml (default: here)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="write ratchet.toml and program.md for this folder")
    init.add_argument("--force", action="store_true", help="replace an existing ratchet.toml")
    init.add_argument("--editable", metavar="FILE", help="the one file the agent may change")
    init.add_argument("--metric", metavar="NAME", help="the metric's name (or its key)")
    init.add_argument(
        "--goal", choices=("minimize", "maximize"), help="whether lower or higher is better"
    )
    init.add_argument(
        "--agent",
        choices=AGENT_KINDS,
        help="the proposing agent to write as [agent] kind (e.g. claude-code)",
    )

    run = commands.add_parser("run", help="run (or resume) the loop with a live view")
    run.add_argument(
        "--max-experiments",
        type=_positive,
        default=None,
        metavar="N",
        help="stop after N experiments (the baseline counts as one)",
    )
    run.add_argument(
        "--tag", type=_tag, default=None, help="the loop's name; its branch is ratchet/TAG"
    )
    run.add_argument(
        "--new-rules",
        action="store_true",
        help="ratchet.toml changed the metric, budget, command or evaluator: re-pin them and "
        "measure the baseline again under them",
    )
    run.add_argument(
        "--carry",
        action="store_true",
        help="your branch changed the editable file since the loop began: measure your change "
        "in the loop as a person's experiment",
    )

    forget = commands.add_parser(
        "forget", help="drop a loop whose baseline never succeeded (its record and branch)"
    )
    forget.add_argument("--tag", type=_tag, default=None)
    run.add_argument(
        "--detach",
        action="store_true",
        help="run in the background (editors attach to it; its output goes to .ratchet/loop.log)",
    )
    # The loop process an editor starts: no terminal view, reviews come from the editors.
    run.add_argument("--headless", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--wait-for-start", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--review", choices=("auto", "propose"), default=None, help=argparse.SUPPRESS)

    log = commands.add_parser("log", help="the experiments: a table, JSON or results.tsv")
    form = log.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true")
    form.add_argument("--tsv", action="store_true")
    log.add_argument("--tag", type=_tag, default=None)
    log.add_argument(
        "--all", action="store_true", help=f"every experiment (the table shows the last {LOG_ROWS})"
    )

    plot = commands.add_parser("plot", help="the metric over experiments, kept ones marked")
    plot.add_argument(
        "-o", "--output", type=Path, default=None, help="default: .ratchet/progress.png"
    )
    plot.add_argument("--tag", type=_tag, default=None)

    report = commands.add_parser("report", help="the morning report: one self-contained file")
    report.add_argument(
        "-o", "--output", type=Path, default=None, help="default: .ratchet/report.html (or .md)"
    )
    report.add_argument("--format", choices=("html", "md"), default=None)
    report.add_argument("--tag", type=_tag, default=None)

    final = commands.add_parser(
        "finalize", help="the keeps as one new review branch on top of your branch"
    )
    final.add_argument("--squash", action="store_true", help="one commit for all the keeps")
    final.add_argument("--exclude", metavar="N,...", default=None, help="keeps to leave out")
    final.add_argument(
        "--patch", metavar="DIR", type=Path, default=None, help="write a patch series instead"
    )
    final.add_argument(
        "--measure",
        action="store_true",
        help="run the review branch once (command, evaluator, then [metric] holdout) and print "
        "its numbers",
    )
    final.add_argument("--tag", type=_tag, default=None)

    show = commands.add_parser("show", help="one experiment: diff, metric, log tail, trace")
    show.add_argument("experiment", type=int)
    show.add_argument("--tag", type=_tag, default=None)

    note = commands.add_parser("note", help="a note the agent sees from its next proposal on")
    note.add_argument("text")
    note.add_argument("--tag", type=_tag, default=None)

    commands.add_parser("doctor", help="check git, python and the GPUs seen")

    serve = commands.add_parser("serve", help="the language server, on stdio")
    serve.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        default=None,
        help="listen on TCP instead (loopback unless a host is given)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=False, highlight=False, width=140)  # logs and CI: no wrapping
    errors = Console(stderr=True, highlight=False)
    project: Path = (args.project or Path.cwd()).resolve()
    try:
        handler = _COMMANDS[args.command]
        return handler(args, project, console)
    except ConfigError as error:
        errors.print(f"[red]error[/red] {escape(str(error))}", soft_wrap=True)
        return EXIT_USER_ERROR
    except RatchetError as error:
        errors.print(f"[red]error[/red] {escape(str(error))}", soft_wrap=True)
        return EXIT_USER_ERROR


# --- commands ------------------------------------------------------------------------------


def _init(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .autoresearch import HARNESS_PROGRAM
    from .initialize import init

    written, triplet = init(
        project,
        force=args.force,
        editable=args.editable,
        metric=args.metric,
        goal=args.goal,
        agent=args.agent,
    )
    if triplet.recognised:
        console.print(f"Recognised {triplet.recognised}.")
    elif not args.editable:
        console.print("No layout recognised (autoresearch, OpenEvolve, ShinkaEvolve): guessed.")
    for note in triplet.notes:
        console.print(f"  {escape(note)}")
    console.print(
        f"Wrote {', '.join(written)}: editable {triplet.editable}, metric "
        f"{triplet.metric} ({triplet.goal}), command `{triplet.command}`, budget "
        f"{triplet.budget}" + (f", timeout {triplet.timeout}" if triplet.timeout else "") + "."
    )
    judge = (
        f"`{triplet.evaluate}` (called, confined)"
        if triplet.evaluate
        else f"`{triplet.eval}`" + (f", read from {triplet.file}" if triplet.file else "")
        if triplet.eval
        else ""
    )
    if judge:
        locked = ", ".join(triplet.locked)
        console.print(f"  the metric comes from {escape(judge)}; locked: {escape(locked)}")
    if triplet.read:
        console.print(f"  runs may read {escape(', '.join(triplet.read))} (\\[sandbox] read)")
    if triplet.cpu:
        from .initialize import CPU_JUDGE

        judged = ", ".join(f"{name} = {value}" for name, value, _ in CPU_JUDGE)
        console.print(
            f"  No GPU seen: CPU runs are slow, so \\[judge] {judged} (the defaults, 3 and "
            "5, are for GPU runs); raise them for a finer judge, or remove them on a GPU machine."
        )
    if triplet.program == HARNESS_PROGRAM:
        console.print(
            "program.md tells the agent to run git and the loop itself, which is Ratchet's job: "
            f"{HARNESS_PROGRAM} keeps its research instructions without those steps, and "
            "ratchet.toml's program points to it (program.md is unchanged)."
        )
    console.print(
        f"Check ratchet.toml, write your instructions in {triplet.program}, commit, then "
        "`ratchet run`."
    )
    return 0


def _run(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .control.host import with_review
    from .control.run import host_run

    if args.detach:
        return _run_detached(args, project, console)
    config = with_review(load_config(project), args.review)
    reviewing = config.loop.review == "propose" and not args.headless
    if reviewing and not sys.stdin.isatty():
        raise RatchetError(
            'review = "propose" waits for a person to accept each proposal: run it in a '
            'terminal (you are asked), from the editor, or set review = "auto" in ratchet.toml'
        )
    engine = Engine(config, tag=args.tag, new_rules=args.new_rules, carry_user_change=args.carry)
    detach_tracking = _attach_tracking(engine, console)  # [track] mlflow
    interrupted = False
    final: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal interrupted
        running = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def on_interrupt() -> None:
            nonlocal interrupted
            if interrupted:  # a second Ctrl-C: leave now; the next run recovers
                os._exit(EXIT_INTERRUPTED)
            interrupted = True
            stopping.set()
            engine.stop()

        running.add_signal_handler(signal.SIGINT, on_interrupt)
        running.add_signal_handler(signal.SIGTERM, on_interrupt)
        try:
            await host_run(
                engine,
                max_experiments=args.max_experiments,
                review=args.review,
                wait_for_start=WAIT_FOR_START_S if args.wait_for_start else None,
                interrupted=stopping,
            )
        finally:
            final["status"] = engine.status()
            # The last rows only: the summary costs the same at 30 experiments or 30,000.
            after = final["status"]["total"] - 1 - 2 * EXIT_ROWS  # ids run a little ahead
            final["experiments"] = engine.experiments_since(after)[-EXIT_ROWS:]
            final["untracked"] = await asyncio.to_thread(detach_tracking)
            await engine.close()

    with LoopView(engine, console, live=not reviewing and not args.headless) as view:
        engine.bus.subscribe(view.on_event)
        if reviewing:
            one_at_a_time = asyncio.Lock()  # several slots: one prompt on the terminal at once
            engine.bus.subscribe(lambda event: _ask_review(event, engine, console, one_at_a_time))
        asyncio.run(loop())
    status = final["status"]
    if not console.is_terminal and not args.headless:
        console.print(experiments_table(final["experiments"], config.metric.name))
        if status["total"] > len(final["experiments"]):
            earlier = status["total"] - len(final["experiments"])
            console.print(f"(and {earlier} earlier experiments: `ratchet log --all`)")
    if final.get("untracked"):
        console.print(f"{final['untracked']} experiments were not logged to MLflow (unreachable)")
    console.print(
        f"loop {engine.tag}: best {config.metric.name} {format_metric(status['best'])}, "
        f"{status['kept']} kept of {status['total']}; branch {engine.workspace.branch}"
    )
    if engine.state == "error":
        return 1
    return EXIT_INTERRUPTED if interrupted else 0


WAIT_FOR_START_S = 60.0


def _run_detached(args: argparse.Namespace, project: Path, console: Console) -> int:
    """`ratchet run --detach`: the loop in a process of its own, which outlives this one."""
    from .control import spawn, wire

    config = load_config(project)  # a mistake in ratchet.toml is said here, not in a log
    command = spawn.loop_command(project, tag=args.tag, max_experiments=args.max_experiments)
    process = spawn.spawn(project, command)
    deadline = time.monotonic() + spawn.START_TIMEOUT_S
    while not wire.socket_path(project).exists() or spawn.lock_holder(project) != process.pid:
        if process.poll() is not None:
            raise spawn.started_error(project, process.returncode)
        if time.monotonic() > deadline:
            raise RatchetError(f"the loop did not start; see {wire.log_path(project)}")
        time.sleep(0.05)
    console.print(
        f"loop running in the background (pid {process.pid}); its output: "
        f"{wire.log_path(project)}. Watch it with `ratchet log` or the editor; "
        f"stop it from the editor or with `kill {process.pid}`."
    )
    if config.loop.review == "propose":
        console.print('review = "propose": each proposal waits for accept or reject in the editor.')
    return 0


def _attach_tracking(engine: Engine, console: Console) -> Any:
    """[track] mlflow: each experiment logged in the background; its outages said once."""
    from .tracking import TrackerUnavailable, attach

    detach = attach(engine)
    engine.bus.subscribe(
        lambda event: (
            console.print(f"[yellow]{escape(event.message)}[/yellow]")
            if isinstance(event, TrackerUnavailable)
            else None
        )
    )
    return detach


def _ask_review(event: Event, engine: Engine, console: Console, turn: asyncio.Lock) -> None:
    """review = "propose" in a terminal: show the proposal and ask (off the event loop)."""
    if not (isinstance(event, ExperimentProposed) and event.awaiting_review):
        return

    async def ask() -> None:
        async with turn:
            if event.id not in engine.reviews:
                return  # answered elsewhere, or the loop stopped
            console.print(event.diff, markup=False, highlight=False)
            answer = await asyncio.to_thread(
                input, f"exp {event.id}: {event.description} — accept and run it? [y/N] "
            )
            with contextlib.suppress(RatchetError):  # the loop may have stopped meanwhile
                engine.decide(event.id, answer.strip().lower() in ("y", "yes"))

    task = asyncio.get_running_loop().create_task(ask())
    _PROMPTS.add(task)
    task.add_done_callback(_PROMPTS.discard)


_PROMPTS: set[asyncio.Task[None]] = set()


def _open_ledger(project: Path, tag: str | None) -> tuple[Ledger, str]:
    folder = project / RATCHET_DIR
    if not (folder / "ledger.sqlite").exists():
        raise RatchetError(f"no experiments yet in {project}: start the loop with `ratchet run`")
    ledger = Ledger(folder, read_only=True)
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
    base = ledger.kept_at(tag, exp.base_commit)
    if base is None or base == exp.id:
        return
    words = case_changes(ledger, tag, exp.id, base)
    if words:
        console.print(f"cases  against exp {base}: {words}", markup=False)


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
    ledger, tag = _open_ledger(project, args.tag)
    ledger.add_note(tag, args.text)
    console.print(f"noted for loop {tag}; the agent sees it from its next proposal on")
    return 0


def _doctor(args: argparse.Namespace, project: Path, console: Console) -> int:
    problems = 0
    git_path = shutil.which("git")
    if git_path:
        version = subprocess.run(
            ["git", "--version"], capture_output=True, text=True
        ).stdout.strip()
        console.print(f"[green]ok[/green]  {version}")
    else:
        problems += 1
        console.print("[red]missing[/red]  git: install it (apt-get install git)")
    console.print(f"[green]ok[/green]  python {platform.python_version()} ({sys.executable})")
    gpus = hardware.local_gpus()
    if gpus:
        for gpu in gpus:
            console.print(
                f"[green]ok[/green]  GPU {gpu['index']}: {gpu['name']} (driver {gpu['driver']})"
            )
    else:
        console.print(
            "[yellow]none[/yellow]  no NVIDIA GPU seen (nvidia-smi); experiments run on CPU"
        )
    console.print(f"      CPU: {hardware.cpu_model()}, {os.cpu_count()} cores")
    sandboxed, line = sandbox_status()  # issue 11: can runs be sandboxed here
    console.print(f"[green]ok[/green]  {line}" if sandboxed else f"[red]missing[/red]  {line}")
    problems += not sandboxed
    try:
        config = load_config(project)
        console.print(
            f"[green]ok[/green]  ratchet.toml: edits {config.loop.editable}, metric "
            f"{config.metric.name} ({config.metric.goal}), budget {config.loop.budget_s:g}s"
        )
    except ConfigError as error:
        problems += 1
        console.print(f"[red]error[/red]  {escape(str(error))}")
        return 1
    from .preflight import check_command

    for check in check_command(config):
        problems += not check.ok
        mark = "[green]ok[/green]" if check.ok else "[red]error[/red]"
        console.print(f"{mark}  {escape(check.message)}", soft_wrap=True)
    for ok, message in _evaluator_checks(config):
        problems += not ok
        mark = "[green]ok[/green]" if ok else "[red]error[/red]"
        console.print(f"{mark}  {escape(message)}", soft_wrap=True)
    problems += not _doctor_agent(config, console)
    if config.agent.kind in LLM_KINDS:
        program = config.loop.program
        if (config.root / program).is_file():
            console.print(f"[green]ok[/green]  the agent's instructions: {escape(program)}")
        else:
            console.print(
                f"[yellow]missing[/yellow]  {escape(program)}, the agent's instructions: the "
                "agent proposes without them (`ratchet init` writes one)"
            )
    return 1 if problems else 0


def _evaluator_checks(config: Config) -> list[tuple[bool, str]]:
    """`[metric] evaluate`: the function is there, and a nested sandbox can be made here."""
    target = config.metric.evaluate
    if not target:
        return []
    import ast

    from .isolate import available

    path, function = target.rsplit(":", 1)
    try:
        tree = ast.parse((config.root / path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError) as error:
        return [(False, f"evaluate: cannot read {path}: {error}")]
    bound: set[str] = set()  # a def, or a name bound another way (assigned, imported)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign):
            bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    defined = function in bound
    checks = [
        (
            defined,
            f"evaluate: {path} defines {function}(program_path)"
            if defined
            else f"evaluate: {path} defines no function `{function}`; fix `evaluate` in [metric]",
        )
    ]
    problem = available()
    checks.append(
        (True, "evaluate: the program is confined in a nested sandbox (user namespaces)")
        if problem is None
        else (False, f"evaluate: no nested sandbox can be made here: {problem}")
    )
    return checks


def _doctor_agent(config: Config, console: Console) -> bool:
    """What an offline agent would tune in the editable file; False when nothing (its loop
    would end after the baseline)."""
    from .agents import resolve_kind
    from .agents.mutate import find_constants
    from .agents.space import build_space, nothing_to_tune, print_only

    kind = resolve_kind(config)
    if kind not in ("portfolio", "optuna", "mutate"):
        return True
    editable = config.loop.editable
    try:
        text = (config.root / editable).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True  # said by the command's check
    if kind == "mutate":
        names = [c.name for c in find_constants(text)]
    else:
        dead = print_only(text, config.metric.name) if kind == "portfolio" else set()
        names = [d.name for d in build_space(text, config.agent.space).dimensions]
        names = [n for n in names if n not in dead] or names
    if not names:
        message = nothing_to_tune(kind, editable, text, numbers_only=kind == "mutate")
        console.print(f"[red]error[/red]  {escape(message)}", soft_wrap=True)
        return False
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    console.print(
        f"[green]ok[/green]  the {kind} agent tunes {len(names)} constant"
        f"{'s' if len(names) != 1 else ''} of {escape(editable)}: {escape(shown)}",
        soft_wrap=True,
    )
    return True


def _serve(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .lsp.server import serve

    serve(tcp=args.tcp, project=project if args.project else None)
    return 0


_COMMANDS = {
    "init": _init,
    "run": _run,
    "log": _log,
    "plot": _plot,
    "report": _report,
    "finalize": _finalize,
    "show": _show,
    "note": _note,
    "forget": _forget,
    "doctor": _doctor,
    "serve": _serve,
}


if __name__ == "__main__":
    raise SystemExit(main())
