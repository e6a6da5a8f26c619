"""Per-case evidence: an evaluator that scores N cases may report each one, and Ratchet judges a
candidate against the best case by case.

The format (README, "Per-case evidence"): one JSON object per line,
`{"case": "<id>", "score": <0..1>, "trace": "<text>"}`, a higher score better (1: solved);
`trace` is optional. The lines are read from the output the metric is read from (lines that
start with `{"case"`), or, with `[metric] cases = "path"`, only from that file in the folder the
evaluator ran in (read like every file a run leaves: no link followed, size bounded; a run that
lies about it is voided). Without a metric line the metric is the cases' mean.

Stored compactly (ledger.py, case_packing.py): a run's scores are one packed blob keyed by a
per-loop dictionary of case ids, so recording a run costs one row whatever the number of
cases, and nothing per case is read on an experiment's path but the two experiments compared.

The paired judge (`paired`): each run of the candidate is paired with a run of the best that
had the same seed (the control run beside it first: a control is seeded as the candidate's
run, so an evaluator that seeds its randomness from RATCHET_SEED draws the same luck for both,
and it cancels); the differences over the cases both scored are the evidence. With same-round
controls (`same_round`) only the controls beside the candidate pair: a run of the best from
hours ago would count the machine's drift (a flaky service that passes more cases today) as
cases fixed. The statistic is their mean over its standard error, every (case, pair)
difference a unit: repeated runs add units, so evidence grows with runs. Alone it is too
lenient where few units changed (then it is discrete and heavy-tailed: four flips that happen
to agree read as 2 standard errors), so a keep also needs the exact sign test over the units
that changed (one-sided p <= PAIRED_ALPHA), which is exact under "no change" however few
changed. A sign test over the cases alone was the other choice; it cannot keep fewer than five
fixed cases at 5% however many runs are made, so a 3-of-40 fix would never be told from noise
by it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .runners.safe_files import UnsafeFile, read_head

if TYPE_CHECKING:
    from .experiment import Experiment

CASE_PREFIX = '{"case"'
MAX_CASES = 100_000  # cases one run may report
MAX_ID = 200  # characters of a case id
MAX_TRACE = 4000  # characters of a trace kept in memory per case
MAX_CASES_FILE = 64 << 20  # bytes of a `[metric] cases` file
FAILING_KEPT = 100  # failing traces of a run kept in its log folder
FAILING_TRACE = 2000  # characters of each
PAIRED_KEEP = 2.0  # standard errors of paired gain that keep a candidate the mean rule reruns
PAIRED_ALPHA = 0.02  # ... and the exact sign test's one-sided p over the units that changed
NAMED = 10  # case ids a reason or `show` names, each way
FAILURE_GROUPS = 8  # distinct failures (by a trace's first line) shown to the proposer
FAILURE_SAMPLE = 1200  # characters of the one trace shown for each


class CaseError(ValueError):
    """A case line that is not in the format; the run has no metric to trust."""


@dataclass
class Cases:
    """One run's cases: id → score, and id → trace (failing cases' traces are kept)."""

    scores: dict[str, float]
    traces: dict[str, str]

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores)


class CaseReader:
    """Fed lines; keeps the case lines (a later report of a case replaces an earlier one)."""

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self.traces: dict[str, str] = {}
        self.problem: str | None = None

    def feed(self, line: str) -> None:
        if not line.startswith(CASE_PREFIX) or self.problem:
            return
        try:
            case, score, trace = parse_case(line)
        except CaseError as error:
            self.problem = str(error)
            return
        if len(self.scores) >= MAX_CASES and case not in self.scores:
            self.problem = f"more than {MAX_CASES:,} cases"
            return
        self.scores[case] = score
        if trace:
            self.traces[case] = trace
        else:
            self.traces.pop(case, None)

    def result(self) -> Cases | None:
        return Cases(self.scores, self.traces) if self.scores else None


def parse_case(line: str) -> tuple[str, float, str]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # nested past the parser's depth: not a case either
        raise CaseError(f"a case line is not JSON: {line[:80]}") from None
    if not isinstance(value, dict):
        raise CaseError(f"a case line is not a JSON object: {line[:80]}")
    case, score, trace = value.get("case"), value.get("score"), value.get("trace", "")
    if not isinstance(case, str) or not case or len(case) > MAX_ID:
        raise CaseError(f"a case id must be a string of 1 to {MAX_ID} characters: {line[:80]}")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise CaseError(f"case {case}: score must be a number from 0 to 1")
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise CaseError(f"case {case}: score {score} is not from 0 to 1")
    if not isinstance(trace, str):
        trace = json.dumps(trace)
    return case, float(score), trace[:MAX_TRACE]


def read_cases_file(folder: Path, relative: str) -> CaseReader:
    """`[metric] cases` in `folder` (where the evaluator ran). A link, a FIFO or anything but
    a regular file raises UnsafeFile (the run is voided); a missing file reads as no cases."""
    reader = CaseReader()
    try:
        data, more = read_head(relative, MAX_CASES_FILE, root=folder)
    except (FileNotFoundError, NotADirectoryError):
        return reader
    if more:
        reader.problem = f"`{relative}` is over {MAX_CASES_FILE:,} bytes"
        return reader
    for line in data.decode("utf-8", errors="replace").splitlines():
        reader.feed(line.strip())
    return reader


def keep_failing(path: Path, cases: Cases, redact: Callable[[str], str]) -> None:
    """The run's failing cases (score below 1) with their traces, bounded, in its log folder
    (the last run's replaces the one before); traces are never stored in the ledger."""
    failing = [(case, score) for case, score in cases.scores.items() if score < 1.0]
    lines = [
        json.dumps(
            {
                "case": case,
                "score": score,
                "trace": redact(cases.traces.get(case, "")[:FAILING_TRACE]),
            }
        )
        for case, score in failing[:FAILING_KEPT]
    ]
    scratch = path.with_suffix(".tmp")
    scratch.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    scratch.replace(path)


# --- the paired judge -----------------------------------------------------------------------


@dataclass(frozen=True)
class CaseRun:
    """One stored run's case scores: its seed, the candidate it was a control beside (if any)."""

    seed: int
    beside: int | None
    control: bool
    scores: dict[int, float]


@dataclass(frozen=True)
class Paired:
    """The candidate against the best, case by case, over pairs of runs with the same seed."""

    fixed: tuple[int, ...]  # case numbers whose mean score rose
    broken: tuple[int, ...]  # ... and fell
    common: int  # cases both were scored on
    pairs: int
    z: float  # the mean paired difference over its standard error (0: no spread to read)
    p: float  # the exact sign test over the (case, pair) units that changed, one-sided

    @property
    def convincing(self) -> bool:
        return self.z >= PAIRED_KEEP and self.p <= PAIRED_ALPHA

    def words(self, names: dict[int, str]) -> str:
        return (
            f"case by case over {self.pairs} pair{'s' if self.pairs != 1 else ''} of runs: "
            f"fixed {len(self.fixed)}, broke {len(self.broken)} of {self.common} cases"
            + (f" (broke {name_list(self.broken, names)})" if self.broken else "")
            + f", paired gain {self.z:.1f} standard errors (sign test p {self.p:.2g})"
        )


def name_list(numbers: tuple[int, ...], names: dict[int, str]) -> str:
    return _named(len(numbers), [names.get(n, f"#{n}") for n in numbers[:NAMED]])


def _named(count: int, shown: Iterable[str]) -> str:
    """ "a, b, c and 7 more": the first ids of `count`."""
    shown = list(shown)
    more = count - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


Scores = dict[int, float]


def pairs_of(
    candidate: int, own: list[CaseRun], best: list[CaseRun], same_round: bool = False
) -> list[tuple[Scores, Scores]]:
    """Each of the candidate's runs with a run of the best of the same seed: the control run
    beside this candidate first, else (unless `same_round`) the best's latest own run with
    that seed."""
    found = []
    for run in own:
        same = [b for b in best if b.seed == run.seed and b.beside == candidate]
        if not same_round:
            same = same or [b for b in best if b.seed == run.seed and not b.control]
        if same:
            found.append((run.scores, same[-1].scores))
    return found


def paired(
    candidate: int, own: list[CaseRun], best: list[CaseRun], same_round: bool = False
) -> Paired | None:
    """The paired evidence, or None where no run pairs share a case (`same_round`: pairs with
    the controls beside the candidate only)."""
    pairs = pairs_of(candidate, own, best, same_round)
    differences: list[float] = []
    per_case: dict[int, float] = {}
    used = 0
    common: set[int] = set()
    for mine, theirs in pairs:
        shared = mine.keys() & theirs.keys()
        if not shared:
            continue
        used += 1
        common |= shared
        for case in shared:
            d = mine[case] - theirs[case]
            differences.append(d)
            per_case[case] = per_case.get(case, 0.0) + d
    if not differences:
        return None
    n = len(differences)
    centre = sum(differences) / n
    spread = sum((d - centre) ** 2 for d in differences) / max(1, n - 1)
    # No spread: every case moved alike (a shift of the whole run, not cases fixed): no claim.
    z = centre / math.sqrt(spread / n) if spread > 1e-12 else 0.0
    fixed = tuple(sorted(c for c, d in per_case.items() if d > 1e-6))
    broken = tuple(sorted(c for c, d in per_case.items() if d < -1e-6))
    up = sum(1 for d in differences if d > 1e-6)
    down = sum(1 for d in differences if d < -1e-6)
    return Paired(fixed, broken, len(common), used, z, sign_test(up, down))


def sign_test(up: int, down: int) -> float:
    """P(at least `up` of up + down fair coins land up): exact, whatever the count."""
    n = up + down
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(up, n + 1)) / 2**n


def protected(broken: tuple[int, ...], names: dict[int, str], rules: tuple[str, ...]) -> list[str]:
    """The broken cases that `[metric] protect` names (an id or a pattern)."""
    found = []
    for case in broken:
        name = names.get(case, "")
        if any(name == rule or fnmatchcase(name, rule) for rule in rules):
            found.append(name)
    return sorted(found)


def _means(runs: list[CaseRun]) -> dict[int, float]:
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for run in runs:
        for case, score in run.scores.items():
            sums[case] = sums.get(case, 0.0) + score
            counts[case] = counts.get(case, 0) + 1
    return {case: sums[case] / counts[case] for case in sums}


class Delta(NamedTuple):
    fixed: tuple[int, ...]  # case numbers
    broken: tuple[int, ...]
    common: int  # cases both were scored on


def changed(candidate: int, own: list[CaseRun], best: list[CaseRun]) -> Delta:
    """The cases the candidate fixed and broke: paired by seed where its runs and the best's
    share seeds, else its mean score per case against the best's."""
    evidence = paired(candidate, own, best)
    if evidence is not None:
        return Delta(evidence.fixed, evidence.broken, evidence.common)
    mine, theirs = _means(own), _means(best)
    shared = sorted(mine.keys() & theirs.keys())
    return Delta(
        tuple(c for c in shared if mine[c] > theirs[c] + 1e-6),
        tuple(c for c in shared if mine[c] < theirs[c] - 1e-6),
        len(shared),
    )


def failures_for_agent(path: Path, broken: list[str]) -> str:
    """The last candidate's failing cases for the proposing agent, from its log folder's
    `<n>.failing.jsonl` (its last run; never the holdout's, which reports no cases): grouped by
    their trace's first line (one error, many cases), the largest groups first, one trace shown
    per group, bounded; then the cases it broke. "" when there is nothing to show."""
    try:
        data, _ = read_head(path, FAILING_KEPT * (FAILING_TRACE + 400))
    except (OSError, ValueError, UnsafeFile):
        return ""
    groups: dict[str, list[tuple[str, str]]] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the last line, cut by the bound
        if not isinstance(row, dict):
            continue
        trace = str(row.get("trace", "")).strip()
        head = trace.splitlines()[0][:200] if trace else "(no trace)"
        groups.setdefault(head, []).append((str(row.get("case", "")), trace))
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    blocks = []
    for head, members in ordered[:FAILURE_GROUPS]:
        ids = ", ".join(case for case, _ in members[:NAMED])
        more = f" and {len(members) - NAMED} more" if len(members) > NAMED else ""
        blocks.append(
            f"{len(members)} case{'s' if len(members) != 1 else ''} ({ids}{more}): {head}\n"
            f"{members[0][1][:FAILURE_SAMPLE]}"
        )
    if len(ordered) > FAILURE_GROUPS:
        rest = sum(len(members) for _, members in ordered[FAILURE_GROUPS:])
        blocks.append(f"... {len(ordered) - FAILURE_GROUPS} other failures ({rest} cases)")
    if broken:
        shown = ", ".join(broken[:NAMED]) + (
            f" and {len(broken) - NAMED} more" if len(broken) > NAMED else ""
        )
        blocks.append(f"It broke (passed on the best, fail now): {shown}")
    return "\n\n".join(blocks)


@dataclass(frozen=True)
class CaseChanges:
    """What an experiment fixed and broke against a best, case by case: the counts and the
    first ids each way (NAMED). What `show`, the report and the editor say."""

    against: int  # the best's experiment number
    fixed: int
    broken: int
    common: int  # cases both were scored on
    fixed_ids: tuple[str, ...]
    broken_ids: tuple[str, ...]

    def words(self) -> str:
        """ "fixed 3 (a, b, c), broke 1 (d) of 40 cases", ids bounded."""
        return (
            f"fixed {self.fixed}"
            + (f" ({_named(self.fixed, self.fixed_ids)})" if self.fixed else "")
            + f", broke {self.broken}"
            + (f" ({_named(self.broken, self.broken_ids)})" if self.broken else "")
            + f" of {self.common} case{'s' if self.common != 1 else ''}"
        )


def case_delta(ledger: CaseLedger, tag: str, experiment: int, base: int) -> Delta | None:
    """The case numbers `experiment` fixed and broke against `base` (the best it was made
    from); None where either reported no cases."""
    own = ledger.case_runs(tag, experiment)
    theirs = ledger.case_runs(tag, base, beside=experiment) if own else []
    return changed(experiment, own, theirs) if theirs else None


def case_changes(ledger: CaseLedger, tag: str, experiment: int, base: int) -> CaseChanges | None:
    """What `experiment` fixed and broke against `base`; None where its runs reported no
    cases. Two indexed reads (its case rows; the base's own and those beside it)."""
    delta = case_delta(ledger, tag, experiment, base)
    if delta is None:
        return None
    names = ledger.case_names(tag, [*delta.fixed[:NAMED], *delta.broken[:NAMED]])
    return CaseChanges(
        against=base,
        fixed=len(delta.fixed),
        broken=len(delta.broken),
        common=delta.common,
        fixed_ids=tuple(names.get(n, f"#{n}") for n in delta.fixed[:NAMED]),
        broken_ids=tuple(names.get(n, f"#{n}") for n in delta.broken[:NAMED]),
    )


def changes_from_base(ledger: CaseLedger, tag: str, exp: Experiment) -> CaseChanges | None:
    """What `exp` fixed and broke against the best it was made from (`ratchet show`, the
    editor); None for the baseline, a run without cases, or a base no longer kept."""
    base = ledger.kept_at(tag, exp.base_commit)
    if base is None or base == exp.id:
        return None
    return case_changes(ledger, tag, exp.id, base)


class CaseLedger(Protocol):
    def case_runs(self, tag: str, experiment: int, beside: int | None = None) -> list[CaseRun]: ...

    def case_names(self, tag: str, numbers: Iterable[int]) -> dict[int, str]: ...

    def kept_at(self, tag: str, commit: str) -> int | None: ...
