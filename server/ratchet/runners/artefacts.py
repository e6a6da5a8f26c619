"""Carrying a run's declared artefacts (`[metric] artefacts`) into the evaluator's folder.

The artefacts are the run's, so they are copied like anything a run leaves (`safe_files`):
regular files and folders only, no link followed on the way or inside, holes kept, and all of
one run's artefacts together under ARTEFACT_LIMIT bytes and ARTEFACT_ENTRIES entries. What is
refused stays behind with a note; the evaluator then runs without it.

Standard library only: the remote run wrapper ships this text to ssh hosts (remote_run.py),
so an evaluator there gets the same copy, under the same caps.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .safe_files import FOLDER, UnsafeFile, copy_regular, kind_of, open_parent

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


def carry_artefacts(run_dir: Path, artefacts: Iterable[str], room: Path) -> list[str]:
    """Copies each artefact (a path relative to both folders) from `run_dir` into `room`;
    returns notes on what was not carried over."""
    notes: list[str] = []
    allowance = _Allowance(ARTEFACT_LIMIT, ARTEFACT_ENTRIES)
    for relative in artefacts:
        try:
            notes += _carry(run_dir, relative, room, allowance)
        except (UnsafeFile, OSError) as refused:
            notes.append(f"artefact {relative} not carried to the evaluator: {refused}")
    return notes


def _carry(run_dir: Path, relative: str, room: Path, allowance: _Allowance) -> list[str]:
    parent, name = open_parent(run_dir, relative)
    try:
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return [f"artefact {relative} was not made by the command"]
        target = _place(room, relative)
        if stat.S_ISDIR(mode):
            return _copy_folder(parent, name, target, relative, allowance, 0)
        allowance.entry()
        _copy_file(parent, name, target, relative, mode, allowance)
        return []
    finally:
        os.close(parent)


def _place(room: Path, relative: str) -> Path:
    """Where an artefact goes in `room`: its folders made where missing, what is there already
    (a committed file, a link) removed. A link on the way (one the repository holds) is
    refused: the copy would land where it points."""
    *folders, name = Path(relative).parts
    place = room
    for part in folders:
        place = place / part
        if place.is_symlink():
            raise UnsafeFile(f"{part} is a link in the evaluator's folder")
        place.mkdir(exist_ok=True)
    target = place / name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif os.path.lexists(target):
        target.unlink()
    return target


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
