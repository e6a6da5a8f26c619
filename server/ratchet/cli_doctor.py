"""`ratchet doctor`: what this machine and project have, and what they lack, before a loop."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from . import hardware
from .config import LLM_KINDS, Config, ConfigError, load_config
from .runners.sandbox import describe as sandbox_status


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


COMMANDS = {"doctor": _doctor}
