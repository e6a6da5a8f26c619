"""Git for the loop: the loop's branch, one commit per experiment, worktrees to run them in.

The user's working tree, index and current branch are never touched: commits are built with
a private index file, and experiments run in worktrees under `.ratchet/worktrees/`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import git

from .errors import WorkspaceError
from .merge import merge3

RATCHET_DIR = ".ratchet"
# The loop's own git commands in a slot never run the user's hooks (post-checkout and the
# like), nor a file-system monitor, nor recurse into submodules. Attributes and filters stay
# the user's (git archive applies them too, and the locked hashes come from it): what a run
# could plant lives in the working tree, which is cleaned before every checkout.
_NEUTRAL = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "submodule.recurse=false",
)  # fmt: skip
# Variables that would point git at another repository, index or object store.
_GIT_REDIRECTS = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_ATTR_SOURCE",
)  # fmt: skip
_SLOT_GIT_TIMEOUT_S = 300.0
_SETTLE_S = 2.0  # a lock on a loop's ref older than this has no live git behind it
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Ratchet",
    "GIT_AUTHOR_EMAIL": "ratchet@localhost",
    "GIT_COMMITTER_NAME": "Ratchet",
    "GIT_COMMITTER_EMAIL": "ratchet@localhost",
}


@dataclass(frozen=True)
class Trailers:
    experiment: int
    status: str
    metric: str = ""

    def render(self) -> str:
        lines = [f"Ratchet-Experiment: {self.experiment}", f"Ratchet-Status: {self.status}"]
        if self.metric:
            lines.append(f"Ratchet-Metric: {self.metric}")
        return "\n".join(lines)


def commit_message(experiment: int, description: str, trailers: Trailers) -> str:
    subject = " ".join(description.split())[:200] or "experiment"
    return f"exp {experiment}: {subject}\n\n{trailers.render()}\n"


def ensure_ratchet_dir(project: Path) -> Path:
    """`.ratchet/` ignores itself, so the user's .gitignore never needs an edit."""
    folder = project / RATCHET_DIR
    folder.mkdir(exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return folder


def _remove_nested_git(root: Path) -> None:
    """Every `.git` below the slot's own link: git never lists nor cleans a path named `.git`
    (a repository a run planted in a tracked folder survives `git clean -ffdx`)."""
    for folder, dirs, files in os.walk(root):
        if ".git" in dirs:
            dirs.remove(".git")
        elif ".git" not in files or folder == str(root):
            continue
        target = os.path.join(folder, ".git")
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


class Workspace:
    """The repository that holds a project (ratchet.toml's folder may be a subfolder)."""

    def __init__(self, project: Path, tag: str) -> None:
        self.project = project.resolve()
        self.tag = tag
        try:
            self.repo = git.Repo(self.project, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise WorkspaceError(
                f"{self.project} is not inside a git repository; Ratchet keeps every experiment "
                "as a commit. Run `git init && git add -A && git commit -m init` there first."
            ) from None
        if self.repo.working_tree_dir is None:
            raise WorkspaceError(f"{self.project} is a bare repository; use a normal clone")
        self.top = Path(self.repo.working_tree_dir).resolve()
        prefix = self.project.relative_to(self.top).as_posix()
        self.prefix = "" if prefix == "." else prefix + "/"
        self.git = self.repo.git
        self._lock = threading.Lock()
        self._env = self._identity_env()
        self._slot_env = {k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS}
        self.worktrees = ensure_ratchet_dir(self.project) / "worktrees"

    @property
    def branch(self) -> str:
        return f"ratchet/{self.tag}"

    @property
    def branch_ref(self) -> str:
        return f"refs/heads/{self.branch}"

    def experiment_ref(self, experiment: int) -> str:
        return f"refs/ratchet/{self.tag}/exp/{experiment}"

    def repo_path(self, relative: str) -> str:
        """A project-relative path as git names it from the top of the repository."""
        return self.prefix + relative

    # --- checks -----------------------------------------------------------------------------

    def check_ready(self, tracked: list[str]) -> None:
        """Refuses a repository the loop cannot start from, saying what to do."""
        if not self.repo.head.is_valid():
            raise WorkspaceError(
                "the repository has no commit yet; commit your files first "
                "(`git add -A && git commit -m init`)"
            )
        if not self.repo.head.is_detached and self.repo.active_branch.name == self.branch:
            raise WorkspaceError(
                f"you have the loop's branch {self.branch} checked out; Ratchet moves it as "
                "experiments are kept. Switch to another branch (`git switch -`) and run again."
            )
        if not tracked:
            return
        paths = [self.repo_path(p) for p in tracked]
        status = self.git.status("--porcelain", "--untracked-files=all", "--", *paths)
        if status.strip():
            changed = sorted({line[3:].strip() for line in status.splitlines()})
            raise WorkspaceError(
                "uncommitted changes to " + ", ".join(changed) + ": the loop starts from "
                "committed files. Commit them (`git commit -am ...`) or stash them "
                "(`git stash`), then run again."
            )

    # --- branch and refs -----------------------------------------------------------------

    def branch_tip(self) -> str | None:
        try:
            return self.git.rev_parse("--verify", "--quiet", self.branch_ref + "^{commit}")
        except git.GitCommandError:
            return None

    def create_branch(self) -> str:
        head = self.repo.head.commit.hexsha
        self.git.update_ref(self.branch_ref, head, "")
        return head

    def move_branch(self, new: str, expected_old: str) -> None:
        with self._lock:
            self.git.update_ref(
                "-m", "ratchet: keep", self.branch_ref, new, expected_old, env=self._env
            )

    def set_branch(self, commit: str) -> None:
        """Puts the branch where the ledger says it belongs (recovery after a crash)."""
        with self._lock:
            self.git.update_ref("-m", "ratchet: recover", self.branch_ref, commit)

    def set_experiment_ref(self, experiment: int, commit: str) -> None:
        self.git.update_ref(self.experiment_ref(experiment), commit)

    def sync_experiment_refs(self, expected: dict[int, str]) -> int:
        """Puts every experiment ref where the ledger says, with one read of the refs and one
        transaction for the differences; returns how many were written."""
        present = self.experiment_refs()
        changes = [
            f"update {self.experiment_ref(n)} {sha}\n"
            for n, sha in expected.items()
            if present.get(n) != sha
        ]
        self._update_refs(changes)
        return len(changes)

    def delete_loop_refs(self) -> None:
        """The loop's branch and experiment refs, deleted in one transaction."""
        refs = [self.branch_ref] if self.branch_exists() else []
        refs += [self.experiment_ref(n) for n in self.experiment_refs()]
        self._update_refs([f"delete {ref}\n" for ref in refs])

    def _update_refs(self, commands: list[str]) -> None:
        """One `git update-ref` transaction; git's own words when it fails (a lock file
        another git holds, or left behind, is named there)."""
        if not commands:
            return
        done = subprocess.run(
            ["git", "update-ref", "--stdin"],
            input="".join(commands).encode(),
            cwd=self.top,
            check=False,
            capture_output=True,
        )
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise WorkspaceError(f"git could not write the loop's refs: {message}")

    def clear_stale_locks(self, held_since: float) -> list[str]:
        """Lock files that a git process killed with a loop left on the loop's own refs (its
        branch, its experiment refs): each would refuse every later write of its ref.

        Only this loop's refs are looked at, never the user's index, HEAD or other refs. A
        lock goes only if it predates `held_since`, when this process took the loop lock (no
        loop has written the loop's refs since), and has stood _SETTLE_S: git holds a ref's
        lock for milliseconds, so one whose loop was killed alone has finished by then.
        Returns the removed locks, named from the git folder."""
        common = Path(self.repo.common_dir)
        candidates = [common / f"{self.branch_ref}.lock"]
        candidates += (common / "refs" / "ratchet" / self.tag).rglob("*.lock")
        found = {p: t for p in candidates if (t := _mtime(p)) is not None and t <= held_since}
        wait = max(found.values(), default=0.0) + _SETTLE_S - time.time()
        if found and wait > 0:
            time.sleep(min(wait, _SETTLE_S))
        removed = []
        for path in found:
            with contextlib.suppress(FileNotFoundError):  # its git finished meanwhile
                path.unlink()
                removed.append(path.relative_to(common).as_posix())
        return removed

    def experiment_refs(self) -> dict[int, str]:
        output = self.git.for_each_ref(
            "--format=%(refname) %(objectname)", f"refs/ratchet/{self.tag}/exp/"
        )
        refs = {}
        for line in output.splitlines():
            name, sha = line.split()
            refs[int(name.rsplit("/", 1)[1])] = sha
        return refs

    def branch_exists(self) -> bool:
        return self.branch_tip() is not None

    # --- reading -----------------------------------------------------------------------------

    def read(self, commit: str, relative: str) -> str:
        return self.git.cat_file(
            "blob", f"{commit}:{self.repo_path(relative)}", strip_newline_in_stdout=False
        )

    def blob(self, commit: str, relative: str) -> str | None:
        """The id of a file's content at a commit (None if it has no such file)."""
        try:
            return self.git.rev_parse("--verify", "--quiet", f"{commit}:{self.repo_path(relative)}")
        except git.GitCommandError:
            return None

    def head(self) -> str | None:
        """The user's current commit."""
        return self.repo.head.commit.hexsha if self.repo.head.is_valid() else None

    def parent(self, commit: str) -> str:
        return self.git.rev_parse(f"{commit}^")

    def tree(self, commit: str) -> str:
        return self.git.rev_parse(f"{commit}^{{tree}}")

    # --- writing commits ---------------------------------------------------------------------

    def commit_edits(self, base: str, edits: dict[str, str], message: str) -> str:
        """A commit on top of `base` with these files replaced; nothing checked out changes."""
        if not edits:
            return self.commit_tree(self.tree(base), base, message)
        with tempfile.TemporaryDirectory(prefix="ratchet-index-") as scratch:
            env = {**self._env, "GIT_INDEX_FILE": os.path.join(scratch, "index")}
            self.git.read_tree(base, env=env)
            for number, (relative, text) in enumerate(edits.items()):
                path = self.repo_path(relative)
                source = Path(scratch) / f"blob{number}"
                source.write_bytes(text.encode("utf-8"))
                blob = self.git.hash_object("-w", "--", str(source))
                mode = self._mode(base, path)
                self.git.update_index("--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)
            tree = self.git.write_tree(env=env)
        return self.commit_tree(tree, base, message)

    def commit_tree(self, tree: str, parent: str, message: str) -> str:
        return self.git.commit_tree(tree, "-p", parent, "-m", message, env=self._env)

    def recommit(self, commit: str, message: str) -> str:
        """The same change with a new message (the final status and metric as trailers)."""
        return self.commit_tree(self.tree(commit), self.parent(commit), message)

    def _mode(self, base: str, path: str) -> str:
        listing = self.git.ls_tree(base, "--", path)
        return listing.split()[0] if listing else "100644"

    def _identity_env(self) -> dict[str, str]:
        """The user's own identity when git has one; Ratchet's otherwise (fresh machines)."""
        reader = self.repo.config_reader()
        has_identity = reader.has_option("user", "email") and reader.has_option("user", "name")
        if has_identity or os.environ.get("GIT_AUTHOR_EMAIL"):
            return {}
        return dict(_IDENTITY)

    # --- worktrees ---------------------------------------------------------------------------

    def checkout(self, slot: str, commit: str) -> Path:
        """The slot's worktree, clean, at `commit`; returns the project folder inside it.

        Nothing the last run left there shapes this checkout: what git does not track goes
        first (ignore rules, attributes, nested repositories with it), git is pointed at the
        slot's own admin folder (never found by searching up from a folder the run wrote),
        and a tree that still differs from `commit` afterwards is rebuilt from scratch."""
        path = self.worktrees / slot
        with self._lock:
            gitdir = self._slot_gitdir(path)
            if gitdir is not None:
                try:
                    self._reset_slot(path, gitdir, commit)
                    return path / self.prefix
                except (subprocess.SubprocessError, OSError, WorkspaceError):
                    pass  # rebuilt below
            self._rebuild_slot(path, commit)
        return path / self.prefix

    def _slot_gitdir(self, path: Path) -> Path | None:
        """The slot's admin folder (`<repo>/.git/worktrees/<name>`) as its `.git` link names
        it; None when the link is missing, not a plain file, or points anywhere else."""
        link = path / ".git"
        if link.is_symlink() or not link.is_file():
            return None
        try:
            text = link.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not text.startswith("gitdir:"):
            return None
        target = (path / text.removeprefix("gitdir:").strip()).resolve()
        admin = (Path(self.repo.common_dir) / "worktrees").resolve()
        return target if target.parent == admin and target.is_dir() else None

    def _slot_git(self, path: Path, gitdir: Path, *args: str, cwd: Path | None = None) -> bytes:
        """git on one slot, named explicitly: `--git-dir` and `--work-tree`, never searched."""
        where = (f"--git-dir={gitdir}", f"--work-tree={path}")
        return self._run_git([*where, *args], cwd or path, f"git {args[0]} in {path.name}")

    def _run_git(self, args: list[str], cwd: Path, what: str) -> bytes:
        done = subprocess.run(
            ["git", *_NEUTRAL, *args],
            cwd=cwd,
            env=self._slot_env,
            capture_output=True,
            timeout=_SLOT_GIT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise WorkspaceError(f"{what} failed: {message}")
        return done.stdout

    def _reset_slot(self, path: Path, gitdir: Path, commit: str) -> None:
        """Clean, then checkout, then check: nothing untracked, ignored or changed is left."""
        _remove_nested_git(path)
        self._slot_git(path, gitdir, "clean", "-ffdxq")
        self._slot_git(path, gitdir, "checkout", "-q", "--force", "--detach", commit)
        left = self._slot_git(
            path, gitdir, "status", "--porcelain", "-z", "--untracked-files=all", "--ignored"
        )
        if left:
            raise WorkspaceError(f"{path.name} still differs from {commit[:12]} after checkout")

    def _rebuild_slot(self, path: Path, commit: str) -> None:
        """A fresh worktree: whatever was at `path` removed, git's record of it pruned."""
        if path.exists() or path.is_symlink():
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path, ignore_errors=True)
        self.git.worktree("prune")
        self.worktrees.mkdir(parents=True, exist_ok=True)
        add = ["worktree", "add", "-q", "--detach", "--force", str(path), commit]
        self._run_git(add, self.top, f"git worktree add {path.name}")
        if self._slot_gitdir(path) is None:
            raise WorkspaceError(f"the worktree {path} has no link to the repository")

    def restore(self, worktree: Path, commit: str, paths: list[str]) -> None:
        """Puts these project files back as `commit` has them, in a slot's project folder."""
        if not paths:
            return
        root = worktree.parents[len(Path(self.prefix).parts) - 1] if self.prefix else worktree
        with self._lock:
            gitdir = self._slot_gitdir(root)
            if gitdir is None:
                raise WorkspaceError(f"{root} is not one of the loop's worktrees")
            self._slot_git(root, gitdir, "checkout", commit, "--", *paths, cwd=worktree)

    def remove_worktrees(self) -> None:
        """Stale worktrees of a killed loop: removed, then pruned from git's list."""
        with self._lock:
            if self.worktrees.exists():
                for child in self.worktrees.iterdir():
                    try:
                        # Twice forced: a `worktree add` killed midway leaves it locked.
                        self.git.worktree("remove", "--force", "--force", str(child))
                    except git.GitCommandError:
                        shutil.rmtree(child, ignore_errors=True)
            self.git.worktree("prune")

    def carry(
        self, base_text: str, changed: str, onto: str, relative: str
    ) -> tuple[str, str] | None:
        """A change (base_text → changed) carried onto commit `onto`: (merged, onto's text), or
        None when it no longer applies there (a conflict) or is already in."""
        current = self.read(onto, relative)
        merged = self.merge_file(base_text, current, changed)
        if merged is None or merged == current:
            return None
        return merged, current

    @staticmethod
    def merge_file(base_text: str, ours: str, theirs: str) -> str | None:
        """Three-way merge of one file's texts; None when the changes conflict."""
        return merge3(base_text, ours, theirs)
