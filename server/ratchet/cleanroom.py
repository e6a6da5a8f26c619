"""The evaluator's clean room: a fresh folder holding the experiment commit's files (its
locked files are the loop's, checked before the evaluator runs) plus only the artefacts the
command declared (`[metric] artefacts`). Nothing else the command left behind, a module that
would shadow an import, a rewritten file, a process, reaches the score.

The artefacts are the run's, so they are copied like anything a run leaves (`safe_files`):
regular files and folders only, no link followed on the way or inside, holes kept, and all of
one run's artefacts together under ARTEFACT_LIMIT bytes and ARTEFACT_ENTRIES entries. What is
refused stays behind with a note; the evaluator then runs without it."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from .guard import export_commit
from .runners.safe_files import FOLDER, UnsafeFile, copy_regular, kind_of, open_parent
from .workspace import Workspace

# Sizes as the files claim them (a sparse file's holes count): a checkpoint fits, a run that
# would fill the disk with a second copy of its folder does not.
ARTEFACT_LIMIT = 4 << 30
ARTEFACT_ENTRIES = 100_000  # files and folders, all artefacts together
ARTEFACT_DEPTH = 64  # folders inside folders: deeper ones stay behind


@dataclass
class _Allowance:
    """What is left to copy of one run's artefacts."""

    bytes: int
    entries: int

    def entry(self) -> None:
        self.entries -= 1
        if self.entries < 0:
            raise UnsafeFile(f"more than {ARTEFACT_ENTRIES:,} files and folders in all")


def build_clean_room(
    workspace: Workspace, commit: str, folder: Path, run_dir: Path, artefacts: tuple[str, ...]
) -> tuple[Path, list[str]]:
    """Returns the project folder inside `folder` and notes on artefacts not carried over."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    project = export_commit(workspace, commit, folder)
    notes: list[str] = []
    allowance = _Allowance(ARTEFACT_LIMIT, ARTEFACT_ENTRIES)
    for relative in artefacts:
        try:
            notes += _carry(run_dir, relative, project / relative, allowance)
        except (UnsafeFile, OSError) as refused:
            notes.append(f"artefact {relative} not carried to the evaluator: {refused}")
    return project, notes


def _carry(run_dir: Path, relative: str, target: Path, allowance: _Allowance) -> list[str]:
    parent, name = open_parent(run_dir, relative)
    try:
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return [f"artefact {relative} was not made by the command"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISDIR(mode):
            shutil.rmtree(target, ignore_errors=True)
            return _copy_folder(parent, name, target, relative, allowance, 0)
        allowance.entry()
        _copy_file(parent, name, target, relative, mode, allowance)
        return []
    finally:
        os.close(parent)


def _copy_file(
    folder: int, name: str, target: Path, shown: str, mode: int, allowance: _Allowance
) -> None:
    """A regular file, copied under what is left of the allowance; anything else refused
    unopened (a link, a FIFO, a socket, a device)."""
    if not stat.S_ISREG(mode):
        raise UnsafeFile(f"{shown} is {kind_of(mode)}, not a regular file")
    allowance.bytes -= copy_regular(name, target, allowance.bytes, dir_fd=folder)


def _copy_folder(
    parent: int, name: str, target: Path, shown: str, allowance: _Allowance, depth: int
) -> list[str]:
    """A folder entry by entry, each the way a single artefact is; refused entries noted."""
    if depth >= ARTEFACT_DEPTH:
        return [f"artefact {shown} not carried: folders nested more than {ARTEFACT_DEPTH} deep"]
    allowance.entry()
    notes: list[str] = []
    folder = os.open(name, FOLDER, dir_fd=parent)
    try:
        target.mkdir(exist_ok=True)
        with os.scandir(folder) as entries:
            listing = [(entry.name, entry.stat(follow_symlinks=False).st_mode) for entry in entries]
        for entry, mode in sorted(listing):
            inner, into = f"{shown}/{entry}", target / entry
            if stat.S_ISDIR(mode):
                notes += _copy_folder(folder, entry, into, inner, allowance, depth + 1)
                continue
            allowance.entry()
            try:
                _copy_file(folder, entry, into, inner, mode, allowance)
            except UnsafeFile as refused:
                notes.append(f"artefact {inner} not carried to the evaluator: {refused}")
    finally:
        os.close(folder)
    return notes


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
