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
from collections.abc import Iterable
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


def nothing_to_tune(kind: str, path: str, source: str, numbers_only: bool = False) -> str:
    """Why an offline agent has nothing to tune in a file, in words, naming that agent: said
    once, as the reason its loop stops."""
    what = "numbers" if numbers_only else "numbers, booleans or declared choices"
    names = [lit.name for lit in find_literals(source)]
    if not names:
        found = f"{path} has no module-level constant written `NAME = value`"
    else:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        found = f"none of {path}'s module-level constants ({shown}) is one it can tune"
    return (
        f"the {kind} agent has nothing to tune in {path}: it changes only module-level "
        f"constants holding {what} (`LR = 0.01` at the top of the file), and {found}; "
        "move the values to tune there (or declare [agent.space.NAME] choices), or use an "
        'agent that edits code: [agent] kind = "anthropic" or "command"'
    )


def edge_warnings(space: Space, declared: Iterable[str], kind: str) -> list[str]:
    """A warning for each constant whose value sits at an edge of the range inferred for it
    (not declared): the agent never tries beyond it, where the best may be (`[0, 1]` for a
    0.0 that should go negative)."""
    values = space.values()
    found = []
    for dim in space.dimensions:
        value = values[dim.name]
        if dim.name in declared or dim.kind == "choice" or dim.high <= dim.low:
            continue
        if isinstance(value, bool | str) or not dim.low <= value <= dim.high:
            continue
        if value not in (dim.low, dim.high):
            continue
        edge, way = ("low", "below") if value == dim.low else ("high", "above")
        found.append(
            f"{dim.name} = {render(value)} is at the {edge} edge of the range the {kind} agent "
            f"inferred for it, [{dim.low:g}, {dim.high:g}]: it tries nothing {way}; if better "
            f"values may lie {way}, declare the range under [agent.space.{dim.name}] "
            f"({edge} = ...) in ratchet.toml"
        )
    return found


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


_OUTPUT_CALLS = {"print", "info", "debug", "warning", "log"}
# Calls that compute a value from their arguments and do nothing else: a constant passed to one
# inside an assignment flows into the assigned name, as through an operator.
_PURE_CALLS = {"round", "int", "float", "abs", "min", "max", "str", "format", "bool", "len"}
_WORD = re.compile(r"[A-Za-z_]\w+")


def print_only(source: str, metric: str = "") -> set[str]:
    """Module-level constants whose value reaches only print/log calls: changing them cannot
    move the metric, so the offline agents leave them alone. Given the metric's name, also
    through names computed from them and themselves only printed (a peak FLOPS that feeds a
    printed MFU); a print that names the metric, or names nothing (`print(value)`,
    `f"{k}: {v}"`), may be how the metric is read, and counts as a real use."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    # A name read through globals()/getattr cannot be followed: then nothing is declared dead.
    if any(isinstance(n, ast.Name) and n.id in ("globals", "vars") for n in ast.walk(tree)):
        return set()
    flows = _Flows(metric)
    flows.visit(tree, None)
    dead = set()
    for name in {lit.name for lit in find_literals(source)}:
        reached, todo = {name}, [name]
        while todo:
            for target in flows.into.get(todo.pop(), ()):
                if target not in reached:
                    reached.add(target)
                    todo.append(target)
        # Read nowhere but in output. A name never read here may be imported by another file
        # (or used through it): kept.
        if all(n in flows.read and n not in flows.used for n in reached):
            dead.add(name)
    return dead


class _Flows:
    """Where each name is read: in output calls, into another name's assignment (`mfu = ... /
    PEAK`: PEAK flows into mfu), or anywhere else (a use that may move the metric). Names are
    not scoped: merging a local with a global only makes more uses, so the answer stays safe."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.read: set[str] = set()
        self.used: set[str] = set()
        self.into: dict[str, set[str]] = {}

    def visit(self, node: ast.AST, flow: tuple[str, ...] | None, output: bool = False) -> None:
        """`flow`: the names being assigned, while inside their value (only followed when the
        metric is known); `output`: inside an output call."""
        targets = _assigned(node) if self.metric else None
        if targets is not None:
            value = getattr(node, "value", None)
            if isinstance(node, ast.AugAssign):
                self._load(targets[0], flow, output)  # `x += v` reads x too
            if value is not None:
                self.visit(value, targets, output)
            return
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if called in _OUTPUT_CALLS and not output:
                output = self._harmless(node)
                flow = None if not output else flow
            elif not (isinstance(func, ast.Name) and called in _PURE_CALLS):
                flow = None  # a call may do anything with what it is given
        elif isinstance(node, ast.stmt | ast.comprehension):
            flow = None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            self._load(node.id, flow, output)
        for child in ast.iter_child_nodes(node):
            self.visit(child, flow, output)

    def _harmless(self, call: ast.Call) -> bool:
        """Whether an output call cannot be the line the metric is read from: without the
        metric's name, any output is; with it, one whose text names something else."""
        if not self.metric:
            return True
        strings = (n.value for n in ast.walk(call) if isinstance(n, ast.Constant))
        text = " ".join(s for s in strings if isinstance(s, str))
        return self.metric not in text and _WORD.search(text) is not None

    def _load(self, name: str, flow: tuple[str, ...] | None, output: bool) -> None:
        self.read.add(name)
        if output:
            return
        if flow is None:
            self.used.add(name)
        else:
            self.into.setdefault(name, set()).update(flow)


def _assigned(node: ast.AST) -> tuple[str, ...] | None:
    """The names an assignment of plain names binds (`a = b = v`, `a, b = v`, `a += v`,
    `(a := v)`); None for any other node, or one that also stores elsewhere (`x.a = v`)."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.NamedExpr):
        targets = [node.target]
    else:
        return None
    names: list[str] = []
    for target in targets:
        parts = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
        if not all(isinstance(part, ast.Name) for part in parts):
            return None
        names += [part.id for part in parts if isinstance(part, ast.Name)]
    return tuple(names)
