"""A loop's record as its readers see it: the editor, the morning report, finalize.

Opened with no agent, no runner, no lock and no write: a loop started from a terminal with
an API key, read by an editor started without one, shows what it did. Only a note (a person's
word to the agent) writes, and only when one is given.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import git

from .cases import CaseChanges, changes_from_base
from .config import Config
from .errors import RatchetError, WorkspaceError
from .experiment import Experiment
from .ledger import Ledger
from .ledger_schema import LEDGER_NAME
from .workspace import RATCHET_DIR


def default_tag(today: datetime.date | None = None) -> str:
    """A new loop's name when none is given: the month and day (`dec06`)."""
    return (today or datetime.date.today()).strftime("%b%d").lower()


class LoopRecord:
    """One loop's experiments, commits and notes, read-only. `tag`: the loop to read (None:
    the newest; a project with no loop yet reads as empty, under the tag a loop would get)."""

    def __init__(self, config: Config, tag: str | None = None) -> None:
        self.config = config
        self.folder = config.root / RATCHET_DIR
        self._ledger: Ledger | None = None
        tags = self.ledger.tags() if self.ledger else []
        self.tag = tag or (tags[-1] if tags else default_tag())
        try:
            self._repo = git.Repo(config.root, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise WorkspaceError(f"{config.root} is not inside a git repository") from None
        top = Path(self._repo.working_tree_dir or config.root).resolve()
        prefix = config.root.resolve().relative_to(top).as_posix()
        self._prefix = "" if prefix == "." else prefix + "/"

    @property
    def ledger(self) -> Ledger | None:
        """The record, opened when there is one (a loop started since may have made it)."""
        if self._ledger is None and (self.folder / LEDGER_NAME).exists():
            self._ledger = Ledger(self.folder, read_only=True)
        return self._ledger

    def require_loop(self) -> Ledger:
        """The ledger of a loop that has run, or a plain error saying how to start one."""
        ledger = self.ledger
        if ledger is None or ledger.loop(self.tag) is None:
            raise RatchetError("no loop has run here yet: start one first (Ratchet: Start Loop)")
        return ledger

    def experiments(self) -> list[Experiment]:
        """The loop's experiments, light (no diff, log tail or trace tail)."""
        ledger = self.ledger
        return ledger.experiments(self.tag, light=True) if ledger else []

    def experiment(self, experiment: int) -> Experiment | None:
        """One experiment with every field."""
        ledger = self.ledger
        return ledger.get(self.tag, experiment) if ledger else None

    def case_changes(self, exp: Experiment) -> CaseChanges | None:
        """What `exp` fixed and broke against the best it was made from, as `show` says it."""
        ledger = self.ledger
        return changes_from_base(ledger, self.tag, exp) if ledger else None

    def text_of(self, experiment: int | str) -> str:
        """The editable file as experiment N left it, or as the best has it (`best`)."""
        if experiment == "best":
            return self._read(f"refs/heads/ratchet/{self.tag}", "the loop's branch")
        exp = self.experiment(int(experiment))
        if exp is None or exp.commit is None:
            raise RatchetError(
                f"experiment {experiment} has no code to show (unknown, or refused "
                "before it was committed)"
            )
        return self._read(exp.commit, f"experiment {experiment}'s commit")

    def _read(self, commit: str, what: str) -> str:
        path = f"{commit}:{self._prefix}{self.config.loop.editable}"
        try:
            return str(self._repo.git.cat_file("blob", path, strip_newline_in_stdout=False))
        except git.GitCommandError:
            raise RatchetError(f"{what} holds no {self.config.loop.editable}") from None

    def add_note(self, text: str) -> None:
        """A person's note for the agent: the one write a reader makes, when asked to."""
        writer = Ledger(self.folder)
        try:
            writer.add_note(self.tag, text)
        finally:
            writer.close()
