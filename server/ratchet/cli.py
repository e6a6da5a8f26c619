"""`ratchet init | run | log | plot | report | finalize | show | note | doctor | serve`:
a thin face on the engine."""

# Here the parser, `init`, `run` and `serve`; the commands that read a loop's record are
# cli_readers.py, `doctor` is cli_doctor.py. (The docstring above is `ratchet --help`.)

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from rich.console import Console
from rich.markup import escape

from . import __version__, cli_doctor, cli_readers
from .config import AGENT_KINDS, ConfigError, load_config
from .control.spawn import EXIT_INTERRUPTED
from .engine import Engine
from .errors import RatchetError
from .events import Event, ExperimentProposed
from .view import LoopView, experiments_table, format_metric

EXIT_USER_ERROR = 2
EXIT_ROWS = 20  # the rows `ratchet run` prints when it ends without a terminal


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


_Commands: TypeAlias = (
    "argparse._SubParsersAction[argparse.ArgumentParser]"  # what add_subparsers returns
)


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
    _add_init(commands)
    _add_run(commands)
    forget = commands.add_parser(
        "forget", help="drop a loop whose baseline never succeeded (its record and branch)"
    )
    forget.add_argument("--tag", type=_tag, default=None)
    _add_records(commands)
    _add_finalize(commands)
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


def _add_init(commands: _Commands) -> None:
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


def _add_run(commands: _Commands) -> None:
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
    run.add_argument(
        "--detach",
        action="store_true",
        help="run in the background (editors attach to it; its output goes to .ratchet/loop.log)",
    )
    # The loop process an editor starts: no terminal view, reviews come from the editors.
    run.add_argument("--headless", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--wait-for-start", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--review", choices=("auto", "propose"), default=None, help=argparse.SUPPRESS)


def _add_records(commands: _Commands) -> None:
    """The readers of the record: log, plot, report."""
    log = commands.add_parser("log", help="the experiments: a table, JSON or results.tsv")
    form = log.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true")
    form.add_argument("--tsv", action="store_true")
    log.add_argument("--tag", type=_tag, default=None)
    log.add_argument(
        "--all",
        action="store_true",
        help=f"every experiment (the table shows the last {cli_readers.LOG_ROWS})",
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


def _add_finalize(commands: _Commands) -> None:
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
        from .init_files import CPU_JUDGE

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
    with LoopView(engine, console, live=not reviewing and not args.headless) as view:
        engine.bus.subscribe(view.on_event)
        if reviewing:
            one_at_a_time = asyncio.Lock()  # several slots: one prompt on the terminal at once
            engine.bus.subscribe(lambda event: _ask_review(event, engine, console, one_at_a_time))
        final = asyncio.run(_loop(engine, args, detach_tracking))
    rows = not console.is_terminal and not args.headless
    _print_ending(final, engine, config.metric.name, console, rows)
    if engine.state == "error":
        return 1
    return EXIT_INTERRUPTED if final["interrupted"] else 0


async def _loop(
    engine: Engine, args: argparse.Namespace, detach_tracking: Callable[[], int]
) -> dict[str, Any]:
    """The loop in this process until it ends: a first Ctrl-C (or SIGTERM) stops it, a second
    leaves at once. Returns how it ended: its status, its last rows, the experiments MLflow did
    not log, and whether it was interrupted."""
    from .control.run import host_run

    running = asyncio.get_running_loop()
    stopping = asyncio.Event()  # set by the first interrupt

    def on_interrupt() -> None:
        if stopping.is_set():  # a second Ctrl-C: leave now; the next run recovers
            os._exit(EXIT_INTERRUPTED)
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
        status = engine.status()
        # The last rows only: the summary costs the same at 30 experiments or 30,000.
        after = status["total"] - 1 - 2 * EXIT_ROWS  # ids run a little ahead
        final = {
            "status": status,
            "experiments": engine.experiments_since(after)[-EXIT_ROWS:],
            "untracked": await asyncio.to_thread(detach_tracking),
            "interrupted": stopping.is_set(),
        }
        await engine.close()
    return final


def _print_ending(
    final: dict[str, Any], engine: Engine, metric: str, console: Console, rows: bool
) -> None:
    """The loop's last lines: with `rows` (no terminal showed the live view) its last
    experiments, then the best and the branch."""
    status = final["status"]
    if rows:
        console.print(experiments_table(final["experiments"], metric))
        if status["total"] > len(final["experiments"]):
            earlier = status["total"] - len(final["experiments"])
            console.print(f"(and {earlier} earlier experiments: `ratchet log --all`)")
    if final["untracked"]:
        console.print(f"{final['untracked']} experiments were not logged to MLflow (unreachable)")
    console.print(
        f"loop {engine.tag}: best {metric} {format_metric(status['best'])}, "
        f"{status['kept']} kept of {status['total']}; branch {engine.workspace.branch}"
    )


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


def _attach_tracking(engine: Engine, console: Console) -> Callable[[], int]:
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
            if event.id not in engine.trial.reviews:
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


def _serve(args: argparse.Namespace, project: Path, console: Console) -> int:
    from .lsp.server import serve

    serve(tcp=args.tcp, project=project if args.project else None)
    return 0


_COMMANDS = {
    "init": _init,
    "run": _run,
    **cli_readers.COMMANDS,
    **cli_doctor.COMMANDS,
    "serve": _serve,
}


if __name__ == "__main__":
    raise SystemExit(main())
