"""`ratchet doctor`'s check of the experiment's command: that it can start, with the
experiment's own interpreter (not Ratchet's), and that the modules the editable file
imports are there for that interpreter, and those the project's own modules it imports
import in turn (`import prepare` → `import rustbpe`)."""

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


_GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _import_nodes(tree: ast.AST, in_functions: bool = True) -> list[ast.Import | ast.ImportFrom]:
    """The file's imports, but those under `try:` with an `except ImportError` (an optional
    dependency: the file runs without it); without `in_functions`, only those run when it is
    imported (a module's function that imports what the run never calls is no obstacle)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if not in_functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.Try) and any(_guards(h) for h in node.handlers):
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _guards(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type
    if kinds is None:
        return True
    names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(n, ast.Name) and n.id in _GUARDS for n in names)


def _imports(path: Path) -> list[str]:
    """Top-level modules the file imports (what must exist for the run to start)."""
    return sorted(_external_imports(path)[0])


def _local(base: Path, dotted: str) -> list[Path]:
    """The project's own files a dotted module name is, from `base`: each package's
    `__init__.py` on the way, then the module; [] when it is not a file here."""
    parts = dotted.split(".") if dotted else []
    files: list[Path] = []
    folder = base
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if last and (folder / f"{part}.py").is_file():
            return [*files, folder / f"{part}.py"]
        if (folder / part / "__init__.py").is_file():
            folder = folder / part
            files.append(folder / "__init__.py")
            continue
        if (folder / part).is_dir() and index > 0:  # a namespace package's folder
            folder = folder / part
            continue
        return files if index > 0 else []
    return files


def _external_imports(script: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """Every module outside the project that the script imports, directly or through the
    project's own modules it imports (found next to the script, as Python finds them), each
    with the chain of files that leads to it (the script first); and those own modules."""
    base = script.parent
    chains: dict[Path, list[Path]] = {script: [script]}
    todo = [script]
    external: dict[str, list[Path]] = {}
    while todo:
        path = todo.pop(0)
        tree = _parse(path)
        if tree is None:
            continue
        for node in _import_nodes(tree, in_functions=path == script):
            folder, absolute = base, True
            subs: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                absolute = not node.level
                if not absolute:
                    folder = path.parent
                    for _ in range(node.level - 1):
                        folder = folder.parent
                module = node.module or ""
                modules = [module] if module else []
                subs = [f"{module}.{a.name}" if module else a.name for a in node.names]
            for dotted in modules + subs:
                for file in _local(folder, dotted):
                    if file not in chains:
                        chains[file] = [*chains[path], file]
                        todo.append(file)
            if not absolute:
                continue
            for dotted in modules:
                top = dotted.split(".")[0]
                if not _local(base, top) and not (base / top).is_dir():
                    external.setdefault(top, chains[path])
    return external, [p for p in chains if p != script]


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
    chains, own = _external_imports(root / editable)
    modules = sorted(chains)
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
        said = []
        for module in missing.split():
            chain = [str(p.relative_to(root)) for p in chains[module]]
            said.append(f"{module} (via {' → '.join(chain)})" if len(chain) > 1 else module)
        return Check(
            False,
            f"{editable} imports {', '.join(said)}, which the experiment's interpreter "
            f"{python} (Python {version}) does not have: the experiment cannot start; "
            "install them there",
        )
    also = ""
    if own:
        names = ", ".join(str(p.relative_to(root)) for p in own[:4]) + (
            ", ..." if len(own) > 4 else ""
        )
        also = f" and what its own modules import ({names})"
    return Check(
        True,
        f"the experiment's interpreter {python} (Python {version}) has what {editable} imports"
        f"{also}",
    )
