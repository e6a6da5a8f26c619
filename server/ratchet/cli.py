"""`ratchet init | run | log | plot | show | note | doctor | serve` — a thin face on the engine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import __version__, hardware
from .config import ConfigError, load_config
from .engine import Engine
from .errors import RatchetError
from .events import Event, ExperimentProposed
from .judge import estimate_noise
from .ledger import Ledger
from .runners.sandbox import describe as sandbox_status
from .view import LoopView, experiments_table, format_metric
from .workspace import RATCHET_DIR

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive(text: str) -> int:
    number = int(text) if text.strip().isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return number


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

    run = commands.add_parser("run", help="run (or resume) the loop with a live view")
    run.add_argument(
        "--max-experiments",
        type=_positive,
        default=None,
        metavar="N",
        help="stop after N experiments (the baseline counts as one)",
    )
    run.add_argument("--tag", default=None, help="the loop's name; its branch is ratchet/TAG")

    log = commands.add_parser("log", help="the experiments: a table, JSON or results.tsv")
    form = log.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true")
    form.add_argument("--tsv", action="store_true")
    log.add_argument("--tag", default=None)

    plot = commands.add_parser("plot", help="the metric over experiments, kept ones marked")
    plot.add_argument("-o", "--output", type=Path, default=Path("progress.png"))
    plot.add_argument("--tag", default=None)

    show = commands.add_parser("show", help="one experiment: diff, metric, log tail, trace")
    show.add_argument("experiment", type=int)
    show.add_argument("--tag", default=None)

    note = commands.add_parser("note", help="a note the agent sees from its next proposal on")
    note.add_argument("text")
    note.add_argument("--tag", default=None)

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
    from .initialize import init

    written, triplet = init(project, force=args.force)
    if triplet.recognised:
        console.print(f"Recognised {triplet.recognised}.")
    console.print(
        f"Wrote {', '.join(written)}: editable {triplet.editable}, metric "
        f"{triplet.metric} ({triplet.goal}), command `{triplet.command}`."
    )
    console.print(
        "Check ratchet.toml, write your instructions in program.md, commit, then `ratchet run`."
    )
    return 0


def _run(args: argparse.Namespace, project: Path, console: Console) -> int:
    config = load_config(project)
    reviewing = config.loop.review == "propose"
    if reviewing and not sys.stdin.isatty():
        raise RatchetError(
            'review = "propose" waits for a person to accept each proposal: run it in a '
            'terminal (you are asked), from the editor, or set review = "auto" in ratchet.toml'
        )
    engine = Engine(config, tag=args.tag)
    interrupted = False
    final: dict[str, Any] = {}

    async def loop() -> None:
        nonlocal interrupted
        running = asyncio.get_running_loop()

        def on_interrupt() -> None:
            nonlocal interrupted
            if interrupted:  # a second Ctrl-C: leave now; the next run recovers
                os._exit(EXIT_INTERRUPTED)
            interrupted = True
            engine.stop()

        running.add_signal_handler(signal.SIGINT, on_interrupt)
        running.add_signal_handler(signal.SIGTERM, on_interrupt)
        try:
            await engine.run(max_experiments=args.max_experiments)
        finally:
            final["experiments"], final["status"] = engine.experiments(), engine.status()
            await engine.close()

    with LoopView(engine, console, live=not reviewing) as view:
        engine.bus.subscribe(view.on_event)
        if reviewing:
            engine.bus.subscribe(lambda event: _ask_review(event, engine, console))
        asyncio.run(loop())
    if not console.is_terminal:
        console.print(experiments_table(final["experiments"], config.metric.name))
    status = final["status"]
    console.print(
        f"loop {engine.tag}: best {config.metric.name} {format_metric(status['best'])}, "
        f"{status['kept']} kept of {status['total']}; branch {engine.workspace.branch}"
    )
    if engine.state == "error":
        return 1
    return EXIT_INTERRUPTED if interrupted else 0


def _ask_review(event: Event, engine: Engine, console: Console) -> None:
    """review = "propose" in a terminal: show the proposal and ask (off the event loop)."""
    if not (isinstance(event, ExperimentProposed) and event.awaiting_review):
        return

    async def ask() -> None:
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
    ledger = Ledger(folder)
    tags = ledger.tags()
    if tag is None:
        if not tags:
            raise RatchetError("no loop has run here yet: start one with `ratchet run`")
        tag = tags[-1]
    elif tag not in tags:
        raise RatchetError(f"no loop tagged {tag!r}; known tags: {', '.join(tags) or 'none'}")
    return ledger, tag


def _log(args: argparse.Namespace, project: Path, console: Console) -> int:
    ledger, tag = _open_ledger(project, args.tag)
    experiments = ledger.experiments(tag)
    loop = ledger.loop(tag) or {}
    groups = ledger.run_groups(tag)
    noise = estimate_noise(list(groups.values()))
    if args.json:
        rows = []
        for exp in experiments:
            row = asdict(exp)
            row["status"] = str(exp.status)
            row["runs"] = groups.get(exp.id, [])
            rows.append(row)
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
    elif args.tsv:
        ledger.write_results(tag, loop.get("metric_name", "metric"))
        sys.stdout.write(ledger.results_path.read_text(encoding="utf-8"))
    else:
        console.print(experiments_table(experiments, loop.get("metric_name", "metric")))
        repeated = sum(len(runs) for runs in groups.values() if len(runs) > 1)
        if noise is not None:
            console.print(
                f"noise band: ±{noise:.4g} (run-to-run standard deviation, from "
                f"{repeated} repeated runs); a keep must beat the best by more"
            )
    return 0


def _plot(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .plot import plot

    ledger, tag = _open_ledger(project, args.tag)
    loop = ledger.loop(tag) or {}
    output = args.output if args.output.is_absolute() else Path.cwd() / args.output
    noise = estimate_noise(list(ledger.run_groups(tag).values()))
    count = plot(
        ledger.experiments(tag),
        loop.get("metric_name", "metric"),
        loop.get("goal", "minimize"),
        output,
        noise,
    )
    console.print(f"wrote {output} ({count} measured experiments)")
    return 0


def _show(args: argparse.Namespace, project: Path, console: Console) -> int:
    ledger, tag = _open_ledger(project, args.tag)
    exp = ledger.get(tag, args.experiment)
    if exp is None:
        raise RatchetError(f"no experiment {args.experiment} in loop {tag}")
    console.print(f"[bold]exp {exp.id}[/bold] {exp.status}: {exp.description}")
    console.print(f"metric {format_metric(exp.metric)}   {exp.reason}")
    console.print(
        f"commit {exp.commit or '—'} on {exp.base_commit[:10]}   agent {exp.agent}   "
        f"run {exp.run_s:.1f}s   agent {exp.agent_s:.1f}s   overhead {exp.overhead_s * 1000:.0f}ms"
    )
    if exp.secondary:
        console.print("  ".join(f"{k} {v:g}" for k, v in exp.secondary.items()))
    if exp.diff:
        console.print("[bold]diff[/bold]")
        console.print(exp.diff, markup=False)
    if exp.log_tail:
        console.print("[bold]log tail[/bold]")
        console.print(exp.log_tail, markup=False)
    trace = project / RATCHET_DIR / "traces" / f"{exp.id}.jsonl"
    if trace.exists():
        console.print("[bold]agent trace[/bold]")
        console.print(trace.read_text(encoding="utf-8")[-8000:], markup=False)
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
    return 1 if problems else 0


def _serve(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .lsp.server import serve

    serve(tcp=args.tcp, project=project if args.project else None)
    return 0


_COMMANDS = {
    "init": _init,
    "run": _run,
    "log": _log,
    "plot": _plot,
    "show": _show,
    "note": _note,
    "doctor": _doctor,
    "serve": _serve,
}


if __name__ == "__main__":
    raise SystemExit(main())
