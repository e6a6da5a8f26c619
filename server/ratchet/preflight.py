"""`ratchet doctor`'s check of the experiment's command: that it can start, with the
experiment's own interpreter (not Ratchet's), and that the modules the editable file
imports are there for that interpreter."""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .config import Config

_PROBE = (
    "import importlib.util, sys\n"
    "missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n"
    "print(sys.version.split()[0]); print(' '.join(missing))\n"
)


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str


def _program(command: str) -> list[str]:
    """The command's words without leading VAR=value assignments."""
    words = shlex.split(command)
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        words.pop(0)
    return words


def _imports(path: Path) -> list[str]:
    """Top-level modules the file imports (what must exist for the run to start)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module.split(".")[0])
    return sorted(set(names))


def check_command(config: Config) -> list[Check]:
    words = _program(config.loop.command)
    if not words:
        return [Check(False, "[loop] command is empty: write the experiment's command line")]
    program = words[0]
    root = config.root
    local = root / program
    found = str(local) if ("/" in program and local.exists()) else shutil.which(program)
    if found is None:
        hint = (
            "install uv, or point `command` at the project's interpreter (e.g. .venv/bin/python)"
            if program == "uv"
            else "install it, or fix `command` under [loop] in ratchet.toml"
        )
        return [
            Check(False, f"the experiment's command cannot start: `{program}` not found; {hint}")
        ]
    if program == "uv" or not os.path.basename(program).startswith("python"):
        return [Check(True, f"the experiment's command starts with {found}")]
    return [_probe_python(found, root, config.loop.editable)]


def _probe_python(python: str, root: Path, editable: str) -> Check:
    modules = _imports(root / editable)
    try:
        done = subprocess.run(
            [python, "-c", _PROBE, *modules],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return Check(False, f"the experiment's interpreter {python} does not start: {error}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Check(False, f"the experiment's interpreter {python} does not start: {last}")
    version, _, missing = done.stdout.partition("\n")
    missing = missing.strip()
    if missing:
        return Check(
            False,
            f"{editable} imports {', '.join(missing.split())}, which the experiment's "
            f"interpreter {python} (Python {version}) does not have; install them there",
        )
    return Check(
        True,
        f"the experiment's interpreter {python} (Python {version}) has what {editable} imports",
    )
