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
from dataclasses import replace
from pathlib import Path

from . import hardware
from .autoresearch import HARNESS_PROGRAM, adapt_program, runs_git_itself
from .config import CONFIG_NAME, format_duration
from .errors import RatchetError
from .init_files import Triplet, render_config, render_program

DEFAULT_BUDGET_S = 300.0
_TIME_BUDGET = re.compile(r"^TIME_BUDGET\s*(?::[^=]*)?=\s*([0-9_]+(?:\.[0-9]*)?)", re.M)
_CACHE_JOIN = re.compile(
    r"os\.path\.join\(\s*os\.path\.expanduser\(\s*[\"']~[\"']\s*\)\s*,\s*((?:[\"'][^\"']+[\"']"
    r"\s*,?\s*)+)\)"
)
_HOME_PATH = re.compile(r"Path\.home\(\)\s*((?:/\s*[\"'][^\"']+[\"']\s*)+)")
_TILDE_PATH = re.compile(r"[\"'](~/[^\"'\s]+)[\"']")


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


# Files that judge or set up, never the one to edit (evolve layouts keep their best beside it).
_NOT_EDITABLE = re.compile(
    r"^(test.*|.*_test|conftest|setup|evaluat(e|or)|eval|best_program|run_evo|prepare)\.py$"
)
_OPENEVOLVE_TIMEOUT = re.compile(
    r"^evaluator:\s*\n(?:[ \t]+.*\n)*?[ \t]+timeout:\s*([0-9.]+)", re.M
)


def _python_words(python: str) -> str:
    """The interpreter as a command prefix: `uv run` runs a script, `uv run python` a flag."""
    return "uv run python" if python == "uv run" else python


def _compile_check(python: str, editable: str) -> str:
    """The command step of an evolve layout: the evaluator runs the program, so the command
    only checks that it compiles (a syntax error says its line at once)."""
    return f"{_python_words(python)} -m py_compile {editable}"


def _openevolve(folder: Path) -> Triplet:
    python, notes = interpreter(folder)
    evaluator = _text(folder / "evaluator.py")
    metric = "combined_score"
    notes += (
        "an OpenEvolve layout: initial_program.py is edited; evaluator.py is locked and its "
        "evaluate(program_path) is called on each edit, confined (a nested sandbox)",
    )
    if "def evaluate(" not in evaluator:
        notes += ("evaluator.py defines no `evaluate(program_path)`: set `evaluate` below",)
    if metric not in evaluator:
        notes += (
            "evaluator.py never names combined_score: set `name` below to the key of its "
            "dict to maximise (or `ratchet init --force --metric NAME`)",
        )
    budget_s = DEFAULT_BUDGET_S
    match = _OPENEVOLVE_TIMEOUT.search(_text(folder / "config.yaml"))
    if match:
        budget_s = float(match.group(1))
        notes += (f"budget: config.yaml's evaluator timeout, {budget_s:g}s",)
    locked = tuple(n for n in ("evaluator.py", "config.yaml") if (folder / n).is_file())
    return Triplet(
        "initial_program.py",
        locked,
        _compile_check(python, "initial_program.py"),
        metric,
        "maximize",
        format_duration(budget_s),
        "an OpenEvolve folder (initial_program.py, evaluator.py)",
        notes=notes,
        evaluate="evaluator.py:evaluate",
        python=_python_words(python),
    )


def _shinkaevolve(folder: Path) -> Triplet:
    python, notes = interpreter(folder)
    notes += (
        "a ShinkaEvolve layout: initial.py is edited; evaluate.py is locked and run on each "
        "edit in a clean room; it writes results/metrics.json (and correct.json), read from "
        "there, never from what the program prints",
    )
    script = "uv run evaluate.py" if python == "uv run" else f"{python} evaluate.py"
    return Triplet(
        "initial.py",
        tuple(n for n in ("evaluate.py",) if (folder / n).is_file()),
        _compile_check(python, "initial.py"),
        "combined_score",
        "maximize",
        format_duration(DEFAULT_BUDGET_S),
        "a ShinkaEvolve folder (initial.py, evaluate.py)",
        notes=notes,
        eval=f"{script} --program_path initial.py --results_dir results",
        file="results/metrics.json",
    )


def _plain(folder: Path, editable: str | None) -> Triplet:
    python, notes = interpreter(folder)
    if editable is None:
        candidates = sorted(p.name for p in folder.glob("*.py") if not _NOT_EDITABLE.match(p.name))
        if "train.py" in candidates:
            editable, why = "train.py", "train.py is the usual name of the file to edit"
        elif len(candidates) == 1:
            editable, why = candidates[0], f"{candidates[0]} is the only Python file to edit"
        elif not candidates:
            raise RatchetError(
                f"no Python file to edit in {folder}; name it: `ratchet init --editable FILE`"
            )
        else:
            raise RatchetError(
                f"several files could be the one to edit ({', '.join(candidates)}); "
                "name it: `ratchet init --editable FILE` (and `--metric NAME`)"
            )
        notes += (f"editable: {why} (a guess; `ratchet init --force --editable FILE`)",)
    command = f"uv run {editable}" if python == "uv run" else f"{python} {editable}"
    return Triplet(editable, (), command, "score", "maximize", "5m", "", notes=notes)


def guess(
    folder: Path,
    editable: str | None = None,
    metric: str | None = None,
    goal: str | None = None,
) -> Triplet:
    """What `ratchet init` writes: a layout it recognises, else a plain folder; `editable`,
    `metric` and `goal` (the flags) win over what it would guess, and are said in notes."""
    if editable is not None and not (folder / editable).is_file():
        raise RatchetError(f"--editable {editable}: there is no such file in {folder}")
    if editable in (None, "train.py") and all(
        (folder / n).is_file() for n in ("train.py", "prepare.py")
    ):
        triplet = _autoresearch(folder)
    elif editable in (None, "initial_program.py") and all(
        (folder / n).is_file() for n in ("initial_program.py", "evaluator.py")
    ):
        triplet = _openevolve(folder)
    elif editable in (None, "initial.py") and all(
        (folder / n).is_file() for n in ("initial.py", "evaluate.py")
    ):
        triplet = _shinkaevolve(folder)
    else:
        triplet = _plain(folder, editable)
    notes = triplet.notes
    if editable is not None:
        notes += (f"editable: {editable}, as --editable named it",)
        if editable in triplet.locked:
            raise RatchetError(f"--editable {editable}: that file is the evaluator, locked")
    if metric is not None:
        notes += (f"metric: {metric}, as --metric named it",)
        triplet = replace(triplet, metric=metric)
    elif not triplet.recognised:
        notes += (
            "metric: `score` is a placeholder: the last `score: <number>` line of the output; "
            "name yours with `ratchet init --force --metric NAME`",
        )
    if goal is not None:
        notes += (f"goal: {goal}, as --goal named it",)
        triplet = replace(triplet, goal=goal)
    return replace(triplet, notes=notes)


def init(
    folder: Path,
    force: bool = False,
    editable: str | None = None,
    metric: str | None = None,
    goal: str | None = None,
    gpus: bool | None = None,
    agent: str | None = None,
) -> tuple[list[str], Triplet]:
    """Writes the files; returns the names written and what was recognised. `gpus`: whether
    the runs have a GPU (None: whether this machine shows one); `agent`: the `[agent] kind`
    to write (`ratchet init --agent claude-code`)."""
    target = folder / CONFIG_NAME
    if target.exists() and not force:
        raise RatchetError(
            f"{target} already exists; edit it, or run `ratchet init --force` to replace it"
        )
    triplet = guess(folder, editable, metric, goal)
    if gpus is None:
        gpus = bool(hardware.local_gpus())
    triplet = replace(triplet, cpu=not gpus)
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
