"""`ratchet init`: writes ratchet.toml and program.md for a folder, and adopts an
autoresearch-style folder (prepare.py, train.py, program.md, val_bpb) as it is.

For such a folder the budget is prepare.py's TIME_BUDGET (train.py enforces it itself), the
timeout leaves room for start-up and evaluation, the command uses the project's own
interpreter, the data folders prepare.py reads are declared for the sandbox, and a
program.md that tells the agent to run git itself is offered a Ratchet version beside it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from .autoresearch import HARNESS_PROGRAM, adapt_program, runs_git_itself
from .config import _SCHEMA, CONFIG_NAME, format_duration
from .errors import RatchetError

DEFAULT_BUDGET_S = 300.0
_TIME_BUDGET = re.compile(r"^TIME_BUDGET\s*(?::[^=]*)?=\s*([0-9_]+(?:\.[0-9]*)?)", re.M)
_CACHE_JOIN = re.compile(
    r"os\.path\.join\(\s*os\.path\.expanduser\(\s*[\"']~[\"']\s*\)\s*,\s*((?:[\"'][^\"']+[\"']"
    r"\s*,?\s*)+)\)"
)
_HOME_PATH = re.compile(r"Path\.home\(\)\s*((?:/\s*[\"'][^\"']+[\"']\s*)+)")
_TILDE_PATH = re.compile(r"[\"'](~/[^\"'\s]+)[\"']")


@dataclass(frozen=True)
class Triplet:
    editable: str
    locked: tuple[str, ...]
    command: str
    metric: str
    goal: str
    budget: str
    recognised: str
    timeout: str | None = None
    grace: str | None = None  # past the budget: warm-up, start-up and evaluation
    program: str = "program.md"
    read: tuple[str, ...] = ()  # folders outside the project the runs read (data, caches)
    notes: tuple[str, ...] = field(default=())  # comments for ratchet.toml, one a line
    agent: str | None = None  # `ratchet init --agent KIND`: written live; else the default


def time_budget(prepare: Path) -> float | None:
    """prepare.py's `TIME_BUDGET = <seconds>`, if it has one."""
    try:
        match = _TIME_BUDGET.search(prepare.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return float(match.group(1).replace("_", "")) if match else None


def data_folders(*sources: Path) -> tuple[str, ...]:
    """Folders under the home directory the scripts name (autoresearch: ~/.cache/autoresearch)."""
    found: list[str] = []
    for source in sources:
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for match in _CACHE_JOIN.finditer(text):
            parts = re.findall(r"[\"']([^\"']+)[\"']", match.group(1))
            found.append("~/" + "/".join(parts))
        for match in _HOME_PATH.finditer(text):
            found.append("~/" + "/".join(re.findall(r"[\"']([^\"']+)[\"']", match.group(1))))
        found += _TILDE_PATH.findall(text)
    return tuple(dict.fromkeys(path.rstrip("/") for path in found))


def interpreter(folder: Path) -> tuple[str, tuple[str, ...]]:
    """How to run the project's Python: its .venv, `uv run` where uv.lock and uv both are,
    else python3; with a note when a uv.lock is there but uv is not."""
    for candidate in (".venv/bin/python", "venv/bin/python", ".venv/Scripts/python.exe"):
        if (folder / candidate).exists():
            # Absolute, not followed: runs happen in worktrees that hold no (git-ignored) .venv,
            # and the venv's own python link must stay the one that is run.
            return os.path.abspath(folder / candidate), (
                f"command: the project's own interpreter, {candidate}, by its absolute path "
                "(experiments run in worktrees without it)",
            )
    if (folder / "uv.lock").exists():
        if shutil.which("uv"):
            return "uv run", ()
        return _plain_python(), (
            "uv.lock is here but uv is not installed: the command uses the python on PATH. "
            "Install uv (or make a .venv) and re-run `ratchet init --force` to use it.",
        )
    return _plain_python(), ()


def _plain_python() -> str:
    return "python" if shutil.which("python") else "python3"


def timeout_for(budget_s: float) -> float:
    """Room beyond the budget for start-up (imports, compilation) and the evaluation."""
    return 2 * budget_s + 120


def _autoresearch(folder: Path) -> Triplet:
    python, notes = interpreter(folder)
    command = f"{python} train.py" if python != "uv run" else "uv run train.py"
    budget = time_budget(folder / "prepare.py")
    notes += (
        (f"budget: TIME_BUDGET = {budget:g} in prepare.py (train.py stops itself in time)",)
        if budget is not None
        else ("prepare.py has no TIME_BUDGET: the budget is Ratchet's default",)
    )
    budget_s = budget if budget is not None else DEFAULT_BUDGET_S
    if "peak_vram_mb" in _text(folder / "train.py"):
        notes += ("train.py prints peak_vram_mb: results.tsv's memory_gb is read from it",)
    program = "program.md"
    if runs_git_itself(_text(folder / "program.md")):
        program = HARNESS_PROGRAM
    return Triplet(
        "train.py",
        ("prepare.py",),
        command,
        "val_bpb",
        "minimize",
        format_duration(budget_s),
        "an autoresearch-style folder",
        timeout=format_duration(timeout_for(budget_s)),
        grace=format_duration(timeout_for(budget_s) - budget_s),
        program=program,
        read=data_folders(folder / "prepare.py", folder / "train.py"),
        notes=notes,
    )


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def guess(folder: Path) -> Triplet:
    if (folder / "train.py").is_file() and (folder / "prepare.py").is_file():
        return _autoresearch(folder)
    candidates = sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("test"))
    editable = (
        "train.py" if "train.py" in candidates else (candidates[0] if candidates else "main.py")
    )
    python, notes = interpreter(folder)
    command = f"uv run {editable}" if python == "uv run" else f"{python} {editable}"
    return Triplet(editable, (), command, "score", "maximize", "5m", "", notes=notes)


def _toml_list(items: tuple[str, ...]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _line(key: str, value: str, comment: str = "", pad: int = 0) -> str:
    text = f"{key:<{pad}} = {value}"
    return (f"{text:<34} # {comment}" if comment else text) + "\n"


def render_config(t: Triplet) -> str:
    notes = "".join(f"# {note}\n" for note in t.notes)

    def key(name: str, value: str, comment: str) -> str:
        return _line(name, value, comment, pad=8)  # [loop]'s keys line up

    loop = [
        key("editable", f'"{t.editable}"', "the one file the agent may change"),
        key("locked", f"[{_toml_list(t.locked)}]", "never changed; hashed around each run"),
        key("program", f'"{t.program}"', "your instructions to the agent"),
        key("command", f'"{t.command}"', "one experiment, run in its own worktree"),
        key("budget", f'"{t.budget}"', "per experiment; exported as RATCHET_TIME_BUDGET"),
    ]
    if t.grace:
        loop.append(key("grace", f'"{t.grace}"', "past the budget: warm-up, start-up, eval"))
    if t.timeout:
        loop.append(key("timeout", f'"{t.timeout}"', "hard kill: budget + start-up + eval"))
    loop.append(key("review", '"auto"', "auto: unattended | propose: each waits for you"))
    return (
        f"{notes}[loop]\n{''.join(loop)}\n[metric]\n"
        + _line("name", f'"{t.metric}"', f"the last `{t.metric}: <number>` line of the output")
        + _line("goal", f'"{t.goal}"')
        + _line("min_delta", "0.0", "a keep must beat the best by more than this")
        + _agent(t)
        + "seed = 0\n\n[runner]\n"
        + _line("kind", '"local"')
        + _line("gpus", "[]", "[0, 1, ...]: one experiment per GPU; []: one CPU slot")
        + _sandbox(t)
    )


AGENT_NOTES = {
    "claude-code": "Claude Code's CLI (`claude -p`), its file tools only, in a sandbox",
    "anthropic": "Claude through the Messages API (ANTHROPIC_API_KEY)",
    "command": "any CLI coding agent: set `run`",
}


def _agent(t: Triplet) -> str:
    if not t.agent:
        return (
            '\n[agent]\n# kind = "anthropic"  # default: anthropic if ANTHROPIC_API_KEY is set, '
            "else portfolio\n"
        )
    text = "\n[agent]\n" + _line("kind", f'"{t.agent}"', AGENT_NOTES.get(t.agent, ""))
    if t.agent == "command":
        text += 'run = "claude -p {prompt_file}"   # the agent\'s command line\n'
    return text


def _sandbox(t: Triplet) -> str:
    if not t.read:
        return ""
    # Written live only where this Ratchet knows [sandbox]; commented out otherwise.
    prefix = "" if "sandbox" in _SCHEMA else "# "
    return (
        f"\n{prefix}[sandbox]\n"
        f"{prefix}read = [{_toml_list(t.read)}]   # data the runs read outside the project\n"
    )


def render_program(t: Triplet) -> str:
    better = "lower" if t.goal == "minimize" else "higher"
    return f"""# Program

You improve `{t.editable}`. Each experiment runs `{t.command}` within a fixed time budget
(RATCHET_TIME_BUDGET seconds) and is judged by one number, `{t.metric}` ({better} is better).

Rules:
- Change only `{t.editable}`.{" Never change " + ", ".join(t.locked) + "." if t.locked else ""}
- Keep the output's final `{t.metric}: <number>` line.
- One idea per experiment, described in one line.

Ideas worth trying: (write yours here)
"""


def init(folder: Path, force: bool = False, agent: str | None = None) -> tuple[list[str], Triplet]:
    """Writes the files; returns the names written and what was recognised. `agent`: the
    `[agent] kind` to write (`ratchet init --agent claude-code`)."""
    target = folder / CONFIG_NAME
    if target.exists() and not force:
        raise RatchetError(
            f"{target} already exists; edit it, or run `ratchet init --force` to replace it"
        )
    triplet = guess(folder)
    if agent:
        triplet = replace(triplet, agent=agent)
    written = [CONFIG_NAME]
    target.write_text(render_config(triplet), encoding="utf-8")
    program = folder / "program.md"
    if triplet.program == HARNESS_PROGRAM:
        adapted = folder / HARNESS_PROGRAM
        if force or not adapted.exists():
            adapted.write_text(adapt_program(_text(program), triplet.metric), encoding="utf-8")
            written.append(HARNESS_PROGRAM)
    elif not program.exists():
        program.write_text(render_program(triplet), encoding="utf-8")
        written.append("program.md")
    return written, triplet
