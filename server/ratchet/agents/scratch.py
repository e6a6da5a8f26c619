"""The files a command agent's scratch copy starts from: the project as the loop's best commit
has them (or, before the first commit, its tracked and locked files), without Ratchet's own
folder, without files only the evaluator may read (`[metric] eval_only`, holdout data), and
without files too large to be source (data)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import RatchetError

MAX_FILE_BYTES = 5_000_000  # larger tracked files (data) are not copied into the scratch
MAX_COPY_BYTES = 200_000_000
# Ratchet's own git in the scratch copy runs nothing an agent could have configured there.
_GIT_NEUTRAL = (
    "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "core.fsmonitor=false",
)  # fmt: skip


def git_output(cwd: Path, args: Sequence[str], env: Mapping[str, str], failure: str) -> bytes:
    """git's stdout; RatchetError(`failure`: git's message) when it fails."""
    done = subprocess.run(
        ["git", *_GIT_NEUTRAL, *args], cwd=cwd, env=dict(env), capture_output=True, check=False
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise RatchetError(f"{failure}: {message}")
    return done.stdout


class ProjectFiles:
    def __init__(
        self, root: Path, locked: Sequence[str], withheld: Sequence[str], env: Mapping[str, str]
    ) -> None:
        self.root = root
        self.locked = tuple(locked)
        self.withheld = (".ratchet", *withheld)
        self.env = env

    def copy_into(self, project: Path, commit: str, editable: str) -> None:
        """Every file but the editable one (the caller writes it) and the withheld ones."""
        if commit:
            self._export(project, commit, editable)
        else:
            self._copy_working_tree(project, editable)

    def is_withheld(self, relative: str) -> bool:
        """Ratchet's own folder and the evaluator's files (a file, or a folder's contents)."""
        return any(
            relative == hidden or relative.startswith(hidden.rstrip("/") + "/")
            for hidden in self.withheld
        )

    def _tracked(self) -> list[str]:
        try:
            done = subprocess.run(
                ["git", "ls-files", "-z", "--cached"],
                cwd=self.root,
                env=dict(self.env),
                capture_output=True,
                check=False,
            )
        except OSError:
            return []
        if done.returncode != 0:
            return []
        return [p for p in done.stdout.decode("utf-8", "replace").split("\0") if p]

    def _export(self, project: Path, commit: str, editable: str) -> None:
        """The project's files as `commit` has them (a `git archive` of its folder)."""
        tar = git_output(
            self.root,
            ("archive", "--format=tar", f"{commit}:./"),
            self.env,
            "git archive of the loop's best failed",
        )
        budget = MAX_COPY_BYTES
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            for member in archive.getmembers():
                name = member.name
                if not member.isfile() or name == editable or self.is_withheld(name):
                    continue
                if member.size > MAX_FILE_BYTES or member.size > budget:
                    continue
                budget -= member.size
                source = archive.extractfile(member)
                if source is None:
                    continue
                target = project / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read())

    def _copy_working_tree(self, project: Path, editable: str) -> None:
        budget = MAX_COPY_BYTES
        wanted = [*self._tracked(), *self._expand(self.locked)]
        for relative in dict.fromkeys(wanted):
            if relative == editable or self.is_withheld(relative):
                continue
            source = self.root / relative
            if source.is_symlink() or not source.is_file():
                continue
            size = source.stat().st_size
            if size > MAX_FILE_BYTES or size > budget:
                continue
            budget -= size
            target = project / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)

    def _expand(self, paths: Iterable[str]) -> list[str]:
        """Locked entries may be folders: their files, relative to the root."""
        found = []
        for relative in paths:
            target = self.root / relative
            if target.is_dir():
                found += [
                    child.relative_to(self.root).as_posix()
                    for child in sorted(target.rglob("*"))
                    if child.is_file()
                ]
            else:
                found.append(relative)
        return found
