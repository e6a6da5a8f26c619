"""The evaluator's clean room: a fresh folder holding the experiment commit's files (its
locked files are the loop's, checked before the evaluator runs) plus only the artefacts the
command declared (`[metric] artefacts`, copied by runners/artefacts.py, bounded and without
following a link). Nothing else the command left behind, a module that would shadow an
import, a rewritten file, a process, reaches the score."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .guard import export_commit
from .runners.artefacts import carry_artefacts
from .runners.safe_files import UnsafeFile, open_parent
from .workspace import Workspace


def build_clean_room(
    workspace: Workspace, commit: str, folder: Path, run_dir: Path, artefacts: tuple[str, ...]
) -> tuple[Path, list[str]]:
    """Returns the project folder inside `folder` and notes on artefacts not carried over."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    project = export_commit(workspace, commit, folder)
    return project, carry_artefacts(run_dir, artefacts, project)


def remove_eval_only(run_dir: Path, eval_only: tuple[str, ...]) -> None:
    """The evaluator's private files (labels) are not in the command's run folder. Removed
    through the folder that holds them, reached without following a link: nothing outside
    the run folder is ever removed."""
    for relative in eval_only:
        try:
            parent, name = open_parent(run_dir, relative)
        except (UnsafeFile, FileNotFoundError, NotADirectoryError):
            continue  # not in the run folder by this path
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                shutil.rmtree(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        finally:
            os.close(parent)
