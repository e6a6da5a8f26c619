"""`ratchet init`: writes ratchet.toml and program.md for a folder, recognising an
autoresearch-style folder (prepare.py, train.py, program.md, val_bpb)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import CONFIG_NAME
from .errors import RatchetError


@dataclass(frozen=True)
class Triplet:
    editable: str
    locked: tuple[str, ...]
    command: str
    metric: str
    goal: str
    budget: str
    recognised: str


def guess(folder: Path) -> Triplet:
    if (folder / "train.py").is_file() and (folder / "prepare.py").is_file():
        uv = (folder / "uv.lock").exists() or (folder / "pyproject.toml").exists()
        return Triplet(
            "train.py",
            ("prepare.py",),
            "uv run train.py" if uv else "python train.py",
            "val_bpb",
            "minimize",
            "5m",
            "an autoresearch-style folder",
        )
    candidates = sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("test"))
    editable = (
        "train.py" if "train.py" in candidates else (candidates[0] if candidates else "main.py")
    )
    return Triplet(editable, (), f"python {editable}", "score", "maximize", "5m", "")


def render_config(t: Triplet) -> str:
    locked = ", ".join(f'"{p}"' for p in t.locked)
    return f'''[loop]
editable = "{t.editable}"          # the one file the agent may change
locked   = [{locked}]              # never changed; hashed around every experiment
program  = "program.md"            # your instructions to the agent
command  = "{t.command}"           # one experiment, run in its own worktree
budget   = "{t.budget}"            # per experiment; exported as RATCHET_TIME_BUDGET (seconds)
review   = "auto"                  # auto: unattended | propose: each proposal waits for accept

[metric]
name = "{t.metric}"                # read from the last `{t.metric}: <number>` line of the output
goal = "{t.goal}"
min_delta = 0.0

[agent]
# kind = "anthropic"               # default: anthropic if ANTHROPIC_API_KEY is set, else mutate
seed = 0

[runner]
kind = "local"
gpus = []                          # [0, 1, ...]: one experiment per GPU; []: one CPU slot
'''


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


def init(folder: Path, force: bool = False) -> tuple[list[str], Triplet]:
    """Writes the files; returns the names written and what was recognised."""
    target = folder / CONFIG_NAME
    if target.exists() and not force:
        raise RatchetError(
            f"{target} already exists; edit it, or run `ratchet init --force` to replace it"
        )
    triplet = guess(folder)
    written = [CONFIG_NAME]
    target.write_text(render_config(triplet), encoding="utf-8")
    program = folder / "program.md"
    if not program.exists():
        program.write_text(render_program(triplet), encoding="utf-8")
        written.append("program.md")
    return written, triplet
