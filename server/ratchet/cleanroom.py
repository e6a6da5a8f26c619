"""The evaluator's clean room: a fresh folder holding the experiment commit's files (its
locked files are the loop's, checked before the evaluator runs) plus only the artefacts the
command declared (`[metric] artefacts`). Nothing else the command left behind, a module that
would shadow an import, a rewritten file, a process, reaches the score."""

from __future__ import annotations

import shutil
from pathlib import Path

from .guard import export_commit
from .workspace import Workspace


def build_clean_room(
    workspace: Workspace, commit: str, folder: Path, run_dir: Path, artefacts: tuple[str, ...]
) -> tuple[Path, list[str]]:
    """Returns the project folder inside `folder` and notes on artefacts not carried over."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    project = export_commit(workspace, commit, folder)
    notes = []
    base = run_dir.resolve()
    for relative in artefacts:
        source = run_dir / relative
        target = project / relative
        if source.is_symlink():
            notes.append(f"artefact {relative} is a symbolic link: not carried to the evaluator")
            continue
        if base not in source.resolve().parents:
            notes.append(f"artefact {relative} lies outside the run folder: not carried")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_file():
            shutil.copyfile(source, target)
        elif source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=_links)
        else:
            notes.append(f"artefact {relative} was not made by the command")
    return project, notes


def _links(folder: str, names: list[str]) -> list[str]:
    """Symbolic links inside an artefact folder stay behind (they could point anywhere)."""
    return [name for name in names if Path(folder, name).is_symlink()]


def remove_eval_only(run_dir: Path, eval_only: tuple[str, ...]) -> None:
    """The evaluator's private files (labels) are not in the command's run folder."""
    for relative in eval_only:
        target = run_dir / relative
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
