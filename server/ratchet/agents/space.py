"""The search space of the editable file: its module-level constants, each with a range.

A range is inferred from the constant's value and name (log scale for positive rates, an
integer range around an integer, [0, 1] for a fraction, both values of a boolean), and can be
set per name in ratchet.toml under `[agent.space.NAME]`. The classical agents (optuna, the
portfolio) read and rewrite the file through this module only, so they agree on what a
constant is and how its new value is written.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

from ..config import SpaceOverride

Value = int | float | bool | str

SKIPPED = ("SEED", "RANDOM_STATE", "VERSION")  # never tuned, whatever their value
# Names that say "a rate or a scale": searched on a log scale around their value.
_RATE_WORDS = ("LR", "RATE", "DECAY", "EPS", "WD", "LAMBDA", "ALPHA", "TEMP", "STD", "INIT")


@dataclass(frozen=True)
class Literal:
    """A module-level `NAME = literal` assignment and where its literal is written."""

    name: str
    value: Value
    line: int  # 1-based
    col: int  # 0-based start of the literal (with its sign)
    end_col: int


@dataclass(frozen=True)
class Dimension:
    """One constant's range: numbers between low and high, or a list of choices."""

    name: str
    kind: str  # "int" | "float" | "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Value, ...] = ()

    def contains(self, value: Value) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool | str):
            return False
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name} in {list(self.choices)}"
        scale = ", log" if self.log else ""
        step = f", step {self.step:g}" if self.step else ""
        return f"{self.name} in [{self.low:g}, {self.high:g}]{scale}{step}"


def assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    """The name and value of a module-level `NAME = value` (or annotated) assignment: one
    reading of it for every offline agent."""
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    ):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return node.target.id, node.value
    return None, None


def find_literals(source: str) -> list[Literal]:
    """Module-level assignments of a number, a boolean or a string, on one line each."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in tree.body:
        target, value = assignment(node)
        if target is None or value is None or value.end_col_offset is None:
            continue
        literal = _literal(value)
        if literal is None or value.lineno != value.end_lineno:
            continue
        found.append(Literal(target, literal, value.lineno, value.col_offset, value.end_col_offset))
    return found


def _literal(node: ast.expr) -> Value | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _literal(node.operand)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner
        return None
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool, str):
        value: Value = node.value  # type: ignore[assignment]  # narrowed by the type check
        return value
    return None


def infer(literal: Literal) -> Dimension | None:
    """The range searched for a constant nobody configured; None for what is not tunable."""
    name, value = literal.name, literal.value
    if isinstance(value, bool):
        return Dimension(name, "choice", choices=(True, False))
    if isinstance(value, str):
        return None  # a string is tuned only with declared choices
    if isinstance(value, int):
        if value > 0:
            low, high = max(1, value // 4), max(value * 4, 8)
            return Dimension(name, "int", low, high, log=high / low >= 16)
        if value == 0:
            return Dimension(name, "int", 0, 8)
        return Dimension(name, "int", value * 4, min(-1, value // 4))
    if value > 0 and (_is_rate(name) or value < 0.05):
        return Dimension(name, "float", value / 30, value * 30, log=True)
    if 0 <= value < 1:
        return Dimension(name, "float", 0.0, 1.0)
    if value >= 1:
        return Dimension(name, "float", value / 4, value * 4, log=True)
    return Dimension(name, "float", value * 4, value / 4)


def _is_rate(name: str) -> bool:
    words = name.upper().replace("-", "_").split("_")
    return any(word in _RATE_WORDS or word.endswith("LR") for word in words)


def _declared(name: str, value: Value, override: SpaceOverride) -> Dimension:
    """A range from `[agent.space.NAME]`, filling what it leaves out from the inferred one."""
    if override.choices:
        return Dimension(name, "choice", choices=override.choices)
    base = infer(Literal(name, value, 0, 0, 0))
    kind = "int" if isinstance(value, int) and not isinstance(value, bool) else "float"
    low = override.low if override.low is not None else (base.low if base else 0.0)
    high = override.high if override.high is not None else (base.high if base else 1.0)
    log = override.log if override.log is not None else bool(base and base.log and low > 0)
    if override.step is not None:
        log = False  # a stepped range is linear
    return Dimension(name, kind, low, high, log=log, step=override.step)


@dataclass(frozen=True)
class Space:
    literals: tuple[Literal, ...]
    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def values(self) -> dict[str, Value]:
        by_name = {lit.name: lit.value for lit in self.literals}
        return {d.name: by_name[d.name] for d in self.dimensions}

    def rewrite(self, source: str, values: dict[str, Value]) -> tuple[str, str]:
        """The file with these values, and a description of what changed
        (`LR 0.02 → 0.031, WIDTH 64 → 96`); an empty description if nothing did."""
        changes = [
            (lit, values[lit.name])
            for lit in self.literals
            if lit.name in values and render(values[lit.name]) != render(lit.value)
        ]
        text = write_literals(source, [(lit, render(value)) for lit, value in changes])
        described = ", ".join(f"{lit.name} {render(lit.value)} → {render(v)}" for lit, v in changes)
        return text, described


def write_literals(source: str, changes: list[tuple[Literal, str]]) -> str:
    """The file with each literal's text replaced by the given text."""
    lines = source.splitlines(keepends=True)
    # Right to left on each line so earlier offsets stay valid.
    for lit, text in sorted(changes, key=lambda c: (c[0].line, c[0].col), reverse=True):
        raw = lines[lit.line - 1].encode("utf-8")
        lines[lit.line - 1] = (raw[: lit.col] + text.encode() + raw[lit.end_col :]).decode()
    return "".join(lines)


def build_space(source: str, overrides: dict[str, SpaceOverride]) -> Space:
    """The tunable constants of `source`. UPPER_CASE names if there are any (the usual way to
    write hyperparameters), else every constant; a declared name is always included."""
    literals = [lit for lit in find_literals(source) if lit.name not in _shadowed(source)]
    upper = [lit for lit in literals if lit.name.isupper()]
    pool = upper or literals
    dimensions = []
    for lit in literals:
        override = overrides.get(lit.name)
        if override is not None and override.freeze:
            continue
        if override is not None:
            dimensions.append(_declared(lit.name, lit.value, override))
        elif lit in pool and not lit.name.upper().endswith(SKIPPED):
            dimension = infer(lit)
            if dimension is not None:
                dimensions.append(dimension)
    return Space(tuple(literals), tuple(dimensions))


def _shadowed(source: str) -> set[str]:
    """Names assigned more than once at module level: the literal is not the value used."""
    seen: dict[str, int] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    for node in tree.body:
        for target in getattr(node, "targets", [getattr(node, "target", None)]):
            if isinstance(target, ast.Name):
                seen[target.id] = seen.get(target.id, 0) + 1
    return {name for name, count in seen.items() if count > 1}


def render(value: Value) -> str:
    if isinstance(value, bool | str):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value):
        value = float(f"{value:.4g}")  # four significant digits: readable, and enough
    text = repr(value)
    return text if ("e" in text or "." in text or "inf" in text or "nan" in text) else text + ".0"


_CHANGE = re.compile(r"(?:^|, )(\w+) (\S+) → ([^,\s]+)")


def parse_changes(description: str) -> dict[str, tuple[Value, Value]]:
    """`LR 0.02 → 0.031, WIDTH 64 → 96 (local)` → {"LR": (0.02, 0.031), "WIDTH": (64, 96)}:
    what Space.rewrite wrote, read back from an experiment's description."""
    found = {}
    for name, old, new in _CHANGE.findall(description.split(" (", 1)[0]):
        try:
            found[name] = (ast.literal_eval(old), ast.literal_eval(new))
        except (ValueError, SyntaxError):
            continue
    return found


_OUTPUT_CALLS = {"print", "info", "debug", "warning", "log", "write"}


def print_only(source: str) -> set[str]:
    """Module-level constants read only inside print/log calls: changing them cannot move
    the metric, so the offline agents leave them alone."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = {lit.name for lit in find_literals(source)}
    used: set[str] = set()
    inside: set[str] = set()

    def visit(node: ast.AST, in_output: bool) -> None:
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            in_output = in_output or called in _OUTPUT_CALLS
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
            (inside if in_output else used).add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child, in_output)

    visit(tree, False)
    # A name read through globals()/getattr cannot be followed: then nothing is declared dead.
    if any(isinstance(n, ast.Name) and n.id in ("globals", "vars") for n in ast.walk(tree)):
        return set()
    # Read only in output. A name never read here may be imported by another file: kept.
    return inside - used
