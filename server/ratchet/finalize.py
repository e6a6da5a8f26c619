"""`ratchet finalize`: the loop's keeps as one review branch on top of the user's branch.

Each keep (never the baseline) is carried over in order with a three-way cherry-pick, in a
temporary worktree of its own, so the user's working tree, index and branch never move. A
keep that no longer applies stops it with its number and files, and nothing is written.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import git

from .errors import RatchetError, WorkspaceError
from .ledger import Ledger
from .report import Keep, Summary, format_value, summarise
from .runners.processes import alive
from .workspace import _IDENTITY


@dataclass(frozen=True)
class Finalized:
    base: str  # the user's commit the keeps were carried onto
    base_name: str  # its branch (or "HEAD" when detached)
    carried: list[int]
    skipped: list[int]  # keeps whose change was already on the user's branch
    branch: str | None = None
    tip: str | None = None
    patches: list[Path] = field(default_factory=list)
    holdout: str = ""  # the review branch's holdout, in words ("" without `[metric] holdout`)


class KeepDoesNotApply(RatchetError):
    pass


def parse_exclude(text: str | None) -> set[int]:
    if not text:
        return set()
    numbers = set()
    for part in text.replace(" ", "").split(","):
        if not part.isdigit():
            raise RatchetError(
                f"--exclude takes experiment numbers separated by commas (e.g. 3,7), not {part!r}"
            )
        numbers.add(int(part))
    return numbers


def finalize(
    project: Path,
    ledger: Ledger,
    tag: str,
    squash: bool = False,
    exclude: set[int] | None = None,
    patch_dir: Path | None = None,
) -> Finalized:
    repo = _repository(project)
    summary = summarise(ledger, tag, near_misses=0)
    chosen = _chosen(summary, exclude or set())
    base = repo.head.commit.hexsha
    base_name = "HEAD" if repo.head.is_detached else repo.active_branch.name
    env = _identity(repo)
    with _scratch_worktree(repo, base) as scratch:
        carried, skipped = _carry(scratch, summary, chosen, squash, env)
        if squash and carried:
            message = squash_message(summary, [k for k in chosen if k.experiment.id in carried])
            scratch.commit("-q", "-m", message, env=env)
        tip = scratch.rev_parse("HEAD")
        if patch_dir is not None:
            patch_dir.mkdir(parents=True, exist_ok=True)
            names = scratch.format_patch("-o", str(patch_dir.resolve()), f"{base}..{tip}")
            patches = [Path(line) for line in names.splitlines() if line.strip()]
            return Finalized(base, base_name, carried, skipped, patches=patches)
    if tip == base:
        raise RatchetError(
            f"nothing to carry over: every chosen keep of loop {tag} is already on {base_name}"
        )
    branch = _unique_branch(repo, f"ratchet/{tag}-review")
    repo.git.branch(branch, tip)
    holdout = holdout_line(summary, chosen, exclude or set(), tag)
    return Finalized(base, base_name, carried, skipped, branch=branch, tip=tip, holdout=holdout)


def holdout_line(summary: Summary, chosen: list[Keep], exclude: set[int], tag: str) -> str:
    """The review branch's holdout beside the baseline's: the last keep's, measured when it
    became the best, since with every keep carried the branch holds exactly its change and
    those before it. With keeps left out the combination never ran: said, with how to
    measure it (a loop on the review branch measures its baseline's holdout)."""
    if not summary.has_holdout:
        return ""
    base = summary.baseline.holdout if summary.baseline else None
    last = chosen[-1].experiment
    if exclude:
        return (
            f"holdout: not measured for this branch (exp {', '.join(map(str, sorted(exclude)))} "
            f"left out: this combination never ran); baseline {format_value(base)}. "
            "`ratchet finalize --measure` measures the branch it makes (command, evaluator, "
            "holdout, once)"
        )
    words = f"holdout: {format_value(base)} (baseline) → {format_value(last.holdout)}"
    if base is not None and last.holdout is not None:
        change = summary.better_by(last.holdout, base)
        words += f" ({change:+.4g}; {summary.in_noise(change)})"
    words += f", as measured on exp {last.id}, whose change the branch ends with"
    fell = [k.experiment.id for k in chosen if summary.holdout_fell(k)]
    if fell:
        words += f"; it fell while dev rose at exp {', '.join(map(str, fell))}"
    return words + (
        " (never shown to the agent; it selected nothing; `--measure` runs it on the branch)"
    )


def outcome_lines(done: Finalized, tag: str, squash: bool, patch_dir: Path | None) -> list[str]:
    """What was made, in words, and how to measure it again (the CLI's and the editor's)."""
    kept = ", ".join(map(str, done.carried))
    skipped = ", ".join(map(str, done.skipped))
    lines = [f"already on {done.base_name}: exp {skipped}"] if done.skipped else []
    if done.patches:
        return [
            *lines,
            f"wrote {len(done.patches)} patches to {patch_dir} (keeps {kept})",
            f"apply them with `git am {patch_dir}/*.patch`",
        ]
    return [
        *lines,
        f"branch {done.branch}: keeps {kept} on top of {done.base_name} ({done.base[:10]})"
        f"{', squashed' if squash else ''}; {done.base_name} did not move",
        *([done.holdout] if done.holdout else []),
        f"to measure it again: `git switch {done.branch} && ratchet run --tag {tag}-check "
        "--max-experiments 1` (its baseline is the review branch)",
    ]


def _repository(project: Path) -> git.Repo:
    try:
        repo = git.Repo(project, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise WorkspaceError(f"{project} is not inside a git repository") from None
    if not repo.head.is_valid():
        raise WorkspaceError("the repository has no commit yet: nothing to build a branch on")
    return repo


def _chosen(summary: Summary, exclude: set[int]) -> list[Keep]:
    ids = [keep.experiment.id for keep in summary.keeps]
    unknown = sorted(exclude - set(ids))
    if unknown:
        raise RatchetError(
            f"--exclude {', '.join(map(str, unknown))}: not a keep of loop {summary.tag}; "
            f"its keeps are {', '.join(map(str, ids)) or 'none'}"
        )
    chosen = [keep for keep in summary.keeps if keep.experiment.id not in exclude]
    if not chosen:
        raise RatchetError(
            f"loop {summary.tag} has no keep to carry over"
            + (" once those are left out" if exclude else " yet (only the baseline)")
        )
    missing = [keep.experiment.id for keep in chosen if not keep.experiment.commit]
    if missing:
        raise RatchetError(f"keeps {missing} have no commit in the ledger; cannot carry them")
    return chosen


def _carry(
    scratch: git.Git, summary: Summary, chosen: list[Keep], squash: bool, env: dict[str, str]
) -> tuple[list[int], list[int]]:
    carried: list[int] = []
    skipped: list[int] = []
    for keep in chosen:
        exp = keep.experiment
        try:
            scratch.cherry_pick("--no-commit", exp.commit)
        except git.GitCommandError:
            conflicted = scratch.diff("--name-only", "--diff-filter=U").split()
            raise KeepDoesNotApply(
                f"exp {exp.id} ({exp.description}) no longer applies on top of "
                f"{'the keeps before it' if carried else 'your branch'}: it conflicts in "
                f"{', '.join(conflicted) or 'its files'}. Nothing was written. Leave it out "
                f"with --exclude {exp.id}"
                + (f" (carried before it: {', '.join(map(str, carried))})" if carried else "")
            ) from None
        if not scratch.diff("--cached", "--name-only").strip():
            skipped.append(exp.id)  # its change is already there
            continue
        carried.append(exp.id)
        if not squash:
            scratch.commit("-q", "-m", keep_message(summary, keep), env=env)
    return carried, skipped


def keep_message(summary: Summary, keep: Keep) -> str:
    exp = keep.experiment
    subject = " ".join(exp.description.split())[:200] or f"experiment {exp.id}"
    runs = ", ".join(format_value(run["metric"]) for run in keep.runs) or "—"
    gain = f"{keep.gain:+.4g}" if keep.gain is not None else "—"
    return (
        f"{subject}\n\n"
        f"Ratchet loop {summary.tag}, experiment {exp.id}: {summary.metric} "
        f"{format_value(keep.before)} → {format_value(exp.metric)} ({gain}; "
        f"{summary.in_noise(keep.gain)}); runs: {runs}.\n"
        f"Judged: {exp.reason}\n\n"
        f"Ratchet-Loop: {summary.tag}\nRatchet-Experiment: {exp.id}\n"
        f"Ratchet-Metric: {format_value(exp.metric)}\n"
    )


def squash_message(summary: Summary, keeps: list[Keep]) -> str:
    first, last = keeps[0], keeps[-1]
    lines = [
        f"Ratchet loop {summary.tag}: {summary.metric} {format_value(first.before)} → "
        f"{format_value(last.experiment.metric)} ({len(keeps)} keeps)",
        "",
    ]
    for keep in keeps:
        gain = f"{keep.gain:+.4g}" if keep.gain is not None else "—"
        lines.append(
            f"- exp {keep.experiment.id}: {' '.join(keep.experiment.description.split())} "
            f"({summary.metric} {format_value(keep.experiment.metric)}, {gain}; "
            f"{summary.in_noise(keep.gain)})"
        )
    lines += ["", f"Ratchet-Loop: {summary.tag}"]
    lines += [f"Ratchet-Experiment: {keep.experiment.id}" for keep in keeps]
    return "\n".join(lines) + "\n"


def _unique_branch(repo: git.Repo, name: str) -> str:
    existing = {head.name for head in repo.heads}
    if name not in existing:
        return name
    number = 2
    while f"{name}-{number}" in existing:
        number += 1
    return f"{name}-{number}"


def _identity(repo: git.Repo) -> dict[str, str]:
    """The user's git identity when they have one, Ratchet's otherwise (fresh machines)."""
    reader = repo.config_reader()
    if (reader.has_option("user", "email") and reader.has_option("user", "name")) or (
        os.environ.get("GIT_AUTHOR_EMAIL")
    ):
        return {}
    return dict(_IDENTITY)


_SCRATCH = re.compile(r"/ratchet-finalize-(\d+)-[^/]*/tree$")


def _remove_stale_scratch(repo: git.Repo) -> None:
    """The scratch worktrees of a finalize that was killed (its PID, in the folder's name,
    is gone): unregistered and deleted, so none stays in the user's `git worktree list`."""
    listing = repo.git.worktree("list", "--porcelain")
    for line in listing.splitlines():
        path = line.removeprefix("worktree ")
        found = _SCRATCH.search(path) if line.startswith("worktree ") else None
        if found is None or alive(int(found.group(1))):
            continue
        with suppress(git.GitCommandError):
            repo.git.worktree("remove", "--force", path)
        shutil.rmtree(Path(path).parent, ignore_errors=True)
    repo.git.worktree("prune")


@contextmanager
def _scratch_worktree(repo: git.Repo, commit: str) -> Iterator[git.Git]:
    """A detached worktree at `commit`, outside the project, removed afterwards (or, when
    this process is killed, by the next finalize)."""
    _remove_stale_scratch(repo)
    folder = Path(tempfile.mkdtemp(prefix=f"ratchet-finalize-{os.getpid()}-"))
    path = folder / "tree"
    repo.git.worktree("add", "--detach", "--quiet", str(path), commit)
    try:
        yield git.Git(path)
    finally:
        with suppress(git.GitCommandError):
            repo.git.worktree("remove", "--force", str(path))
        shutil.rmtree(folder, ignore_errors=True)
        repo.git.worktree("prune")
