"""ratchet.toml and program.md, written from what `ratchet init` recognised in a folder (a
Triplet: the editable file, the command, the metric, and what goes with them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import SECTIONS


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
    # evolve-style evaluators (issue 23): [metric] eval / evaluate / python / file / key
    eval: str | None = None
    evaluate: str | None = None
    python: str | None = None
    file: str | None = None
    key: str | None = None
    agent: str | None = None  # `ratchet init --agent KIND`: written live; else the default
    cpu: bool = False  # no GPU seen: the judge's CPU defaults (CPU_JUDGE) are written


# Without a GPU a run is slow (a 5-minute baseline measured 3 times was 16 minutes on a CPU):
# the baseline twice, the least that estimates its noise, and a promising change confirmed by
# up to two more runs (the defaults, 3 and 5, are for GPU runs).
CPU_JUDGE = (
    ("baseline_runs", "2", "the baseline twice: the least that measures its noise"),
    ("max_runs", "3", "a promising change confirmed by up to 2 more runs"),
)


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
        + _line("name", f'"{t.metric}"', _metric_source(t))
        + _line("goal", f'"{t.goal}"')
        + _evaluator_lines(t)
        + _line("min_delta", "0.0", "a keep must beat the best by more than this")
        + _agent(t)
        + "seed = 0\n\n[runner]\n"
        + _line("kind", '"local"')
        + _line("gpus", "[]", "[0, 1, ...]: one experiment per GPU; []: one CPU slot")
        + _sandbox(t)
        + _judge(t)
    )


def _judge(t: Triplet) -> str:
    if not t.cpu:
        return ""
    return (
        "\n[judge]\n# No GPU was seen when this file was written: fewer runs judge each change, "
        "as CPU runs\n# are slow (the defaults, for GPU runs: baseline_runs = 3, max_runs = 5).\n"
        + "".join(_line(name, value, comment) for name, value, comment in CPU_JUDGE)
    )


def _metric_source(t: Triplet) -> str:
    if t.evaluate:
        return "the key of the dict `evaluate` returns"
    if t.file:
        return f"the key in {t.file}, which the evaluator writes"
    return f"the last `{t.metric}: <number>` line of the output"


def _evaluator_lines(t: Triplet) -> str:
    lines = ""
    if t.evaluate:
        lines += _line("evaluate", f'"{t.evaluate}"', "called on the edited program, confined")
        if t.python:
            lines += _line("python", f'"{t.python}"', "the interpreter `evaluate` runs in")
    if t.eval:
        lines += _line("eval", f'"{t.eval}"', "the locked evaluator, run in a clean room")
    if t.file:
        lines += _line("file", f'"{t.file}"', "it holds the metric (and correct.json beside)")
    if t.key:
        lines += _line("key", f'"{t.key}"')
    return lines


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
    prefix = "" if "sandbox" in SECTIONS else "# "
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
- {_keep(t)}
- One idea per experiment, described in one line.

Ideas worth trying: (write yours here)
"""


def _keep(t: Triplet) -> str:
    if t.evaluate:
        judge = t.evaluate.split(":")[0]
        return f"Keep what `{judge}` calls working: it scores the file and returns `{t.metric}`."
    if t.file:
        return f"Keep what the evaluator runs working: it writes `{t.metric}` to {t.file}."
    return f"Keep the output's final `{t.metric}: <number>` line."
