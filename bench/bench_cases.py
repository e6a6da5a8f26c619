"""Per-case recording against the size of the record: Ratchet's own time per experiment when
every run reports 1,000 cases, in a fresh loop and after 10,000 earlier experiments whose runs
all reported 1,000 cases too (their scores in the ledger, as a long night would leave them).

    python bench/bench_cases.py [--sizes 0,10000] [--cases 1000] [--experiments 25]
    python bench/bench_cases.py --judge 20   # the paired judge against the mean's, in the loop
    python bench/bench_cases.py --paired 4000  # the paired rule alone, simulated: its false keeps

The earlier experiments are written straight into the ledger (bench_history.seed_ledger, then
one packed `cases` row per run and the loop's case-id dictionary), then a real loop runs
`--experiments` more through the real engine, the command printing one case line per case.
Goal: at 10,000 within 1.2x of a fresh loop's own time per experiment. On a shared machine
give the sizes interleaved (--sizes 0,10000,0,10000): each size's figure is then the mean.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_history import loop_figures, seed_ledger
from bench_overhead import make_repo
from ratchet.case_packing import pack
from ratchet.cases import CaseRun, paired
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Proposal, ProposalContext, Status
from ratchet.ledger import Ledger

# The command: the editable file's LR moves a few cases; the rest pass or fail by case and seed.
SCORER = """\
import json, os, random, re
lr = float(re.search(r"LR = ([0-9.]+)", open("train.py").read()).group(1))
rng = random.Random(int(os.environ.get("RATCHET_SEED", "0")))
lines = []
for i in range({cases}):
    score = 1.0 if (i * 7919) % 100 < 60 else 0.0
    if (i * 7919) % 100 >= 95:
        score = float(rng.random() < 0.5)
    if i < 10 and lr < 0.45:
        score = 1.0
    lines.append(json.dumps({{"case": f"task-{{i:05d}}", "score": score,
                             "trace": "" if score else f"task {{i}}: wrong answer"}}))
print("\\n".join(lines))
"""
CONFIG = """\
[loop]
editable = "train.py"
locked = ["score.py"]
command = "python3 score.py"
budget = "10s"

[metric]
name = "score"
goal = "maximize"

[agent]
kind = "mutate"
"""


def make_cases_repo(root: Path, cases: int) -> None:
    make_repo(root)
    (root / "score.py").write_text(SCORER.format(cases=cases))
    (root / "ratchet.toml").write_text(CONFIG)
    for args in (["add", "-A"], ["commit", "-qm", "cases"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=root, check=True
        )


def seed_cases(root: Path, cases: int) -> tuple[int, int]:
    """One packed row per seeded run, and the loop's dictionary; returns rows and bytes."""
    db = sqlite3.connect(root / ".ratchet" / "ledger.sqlite")
    db.executemany(
        "INSERT INTO case_ids (tag, id, name) VALUES ('bench', ?, ?)",
        [(i, f"task-{i:05d}") for i in range(cases)],
    )
    rng = random.Random(0)
    base = [1.0 if (i * 7919) % 100 < 60 else 0.0 for i in range(cases)]
    runs = db.execute("SELECT experiment, run FROM runs WHERE tag='bench'").fetchall()
    rows, size = [], 0
    for experiment, run in runs:
        scores = {i: (float(rng.random() < 0.5) if i % 20 == 0 else s) for i, s in enumerate(base)}
        blob = pack(scores)
        size += len(blob)
        rows.append(("bench", experiment, run, run, None, 0, blob))
    db.executemany("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return len(rows), size


def recording_ms(root: Path, cases: int, size: int, repeats: int = 200) -> float:
    """The recording path alone, in process: one run's 1,000 scores written (ledger.add_run)
    and the verdict's reads (the candidate's case rows, the best's), median ms over repeats
    (the end-to-end median moves by a quarter on a loaded 2-core machine; this does not)."""
    ledger = Ledger(root / ".ratchet")
    scores = {f"task-{i:05d}": float(i % 3 == 0) for i in range(cases)}
    best = 0  # the baseline: its own runs, as a best's
    took = []
    for n in range(repeats):
        experiment = size + 1000 + n
        started = time.perf_counter()
        ledger.add_run("bench", experiment, 0.3, 0.1, "measure", None, scores, 0)
        ledger.case_runs("bench", experiment)
        ledger.case_runs("bench", best, beside=experiment)
        took.append((time.perf_counter() - started) * 1000)
    ledger.close()
    return statistics.median(took)


# --judge: 40 cases, 10 solved, 18 unsolved, 12 flaky (the noise on the mean); the candidate
# fixes 3 (c10-c12) or changes nothing. Flaky cases draw from RATCHET_SEED ("seeded": a run and
# the best's run beside it draw alike) or from fresh randomness ("unseeded").
JUDGE_EVALUATOR = """\
import json, os, random, re
source = open("train.py").read()
fixed = set(re.findall(r"FIX (c\\d+)", source))
seed = int(os.environ.get("RATCHET_SEED", "0"))
rng = random.Random({world} * 1000 + seed) if {seeded} else random.Random()
scores = []
for i in range(40):
    case = f"c{{i:02d}}"
    score = 1.0 if i < 10 else 0.0 if i < 28 else float(rng.random() < 0.5)
    scores.append(1.0 if case in fixed else score)
    if {per_case}:
        print(json.dumps({{"case": case, "score": scores[-1]}}))
if not {per_case}:
    print("score:", sum(scores) / len(scores))
"""
JUDGE_CONFIG = """\
[loop]
editable = "train.py"
locked = ["evaluate.py"]
command = "python3 train.py"
budget = "10s"

[metric]
name = "score"
goal = "maximize"
eval = "python3 evaluate.py"

[agent]
kind = "mutate"
"""


class _OneEdit:
    """Proposes one edit, then harmless distinct ones."""

    kind = "scripted"

    def __init__(self, line: str) -> None:
        self.lines = [line]
        self.n = 0

    async def propose(self, context: ProposalContext) -> Proposal:
        self.n += 1
        line = self.lines.pop() if self.lines else f"IDLE_{self.n} = {self.n}"
        return Proposal({context.editable_path: context.editable_text + line + "\n"}, line)

    async def close(self) -> None:
        return None


async def judge_loop(root: Path, edit: str) -> tuple[bool, int]:
    """Whether the candidate was kept, and its runs (its own and the controls beside it)."""
    engine = Engine(load_config(root), tag="t", agent=_OneEdit(edit))
    try:
        await engine.run(max_experiments=2)
    finally:
        await engine.close()
    candidate = engine.ledger.experiments("t")[1]
    runs = len(engine.ledger.runs("t", 1)) + len(engine.ledger.controls_beside("t", 1))
    return candidate.status is Status.KEPT, runs


def judge_figures(worlds: int) -> None:
    for seeded in (True, False):
        for label, edit in (
            ("fixes 3 of 40", "FIXES = 'FIX c10 FIX c11 FIX c12'"),
            ("changes nothing", "NOTE = 'nothing'"),
        ):
            for per_case in (True, False):
                kept, runs = 0, []
                for world in range(worlds):
                    with tempfile.TemporaryDirectory(prefix="ratchet-judge-") as folder:
                        root = Path(folder)
                        (root / "train.py").write_text("print('a harness')\n")
                        (root / "program.md").write_text("bench\n")
                        (root / "ratchet.toml").write_text(JUDGE_CONFIG)
                        (root / "evaluate.py").write_text(
                            JUDGE_EVALUATOR.format(world=world, seeded=seeded, per_case=per_case)
                        )
                        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
                            subprocess.run(
                                ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args],
                                cwd=root,
                                check=True,
                            )
                        was_kept, count = asyncio.run(judge_loop(root, edit))
                    kept += was_kept
                    runs.append(count)
                print(
                    f"{'seeded' if seeded else 'unseeded'} noise, a candidate that {label}, "
                    f"{'case by case' if per_case else 'mean only'}: kept {kept} of {worlds}, "
                    f"runs {statistics.mean(runs):.2f} (its own and controls)",
                    flush=True,
                )


def paired_alone(trials: int) -> None:
    """The paired rule alone (no mean rule before it), on the --judge cases: how often it keeps
    a candidate that changes nothing, and a 3-of-40 fix, at each of up to 3 runs, the best
    measured 3 times (the baseline)."""
    rng = random.Random(1)

    def scores(draw: random.Random, fix: bool) -> dict[int, float]:
        found = {
            i: 1.0 if i < 10 else 0.0 if i < 28 else float(draw.random() < 0.5) for i in range(40)
        }
        if fix:
            found.update({10: 1.0, 11: 1.0, 12: 1.0})
        return found

    for seeded in (False, True):
        for fix in (False, True):
            first = [0, 0, 0]
            for trial in range(trials):

                def draw(seed: int, trial: int = trial, seeded: bool = seeded) -> random.Random:
                    return random.Random(trial * 1000 + seed) if seeded else rng

                best = [CaseRun(s, None, False, scores(draw(s), False)) for s in range(3)]
                own: list[CaseRun] = []
                for k in range(3):
                    own.append(CaseRun(k, None, False, scores(draw(k), fix)))
                    evidence = paired(1, own, best)
                    if evidence is not None and evidence.convincing:
                        first[k] += 1
                        break
            print(
                f"{'seeded' if seeded else 'unseeded'} noise, a candidate that "
                f"{'fixes 3 of 40' if fix else 'changes nothing'}: the paired rule alone keeps "
                f"{100 * sum(first) / trials:.1f}% within 3 runs (first at runs 1/2/3: "
                f"{' / '.join(f'{100 * n / trials:.1f}%' for n in first)}; {trials} trials)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0,10000")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--experiments", type=int, default=25)
    parser.add_argument("--judge", type=int, default=0, help="loops per judge figure")
    parser.add_argument("--paired", type=int, default=0, help="simulated trials of the rule")
    args = parser.parse_args()
    if args.paired:
        paired_alone(args.paired)
        return
    if args.judge:
        judge_figures(args.judge)
        return
    results: dict[int, list[dict[str, float]]] = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="ratchet-cases-") as folder:
            root = Path(folder)
            make_cases_repo(root, args.cases)
            started = time.monotonic()
            seed_ledger(root, size)
            rows, size_bytes = seed_cases(root, args.cases) if size else (0, 0)
            seeded = time.monotonic() - started
            figures = asyncio.run(loop_figures(root, args.experiments))
            db = sqlite3.connect(root / ".ratchet" / "ledger.sqlite")
            (recorded,) = db.execute(
                "SELECT COUNT(*) FROM cases WHERE tag='bench' AND experiment >= ?", (size,)
            ).fetchone()
            db.close()
            figures["record_ms"] = recording_ms(root, args.cases, size)
            results.setdefault(size, []).append(figures)
            print(
                f"{size:>6} earlier x {args.cases} cases ({rows} packed rows, "
                f"{size_bytes / max(rows, 1):.0f} bytes each): own time per experiment median "
                f"{figures['overhead_ms']:.1f} ms (wall cross-check "
                f"{figures['wall_per_exp_ms']:.1f} ms), open {figures['open_s']:.2f} s; "
                f"{recorded} runs with cases recorded by the loop (seeded in {seeded:.1f} s); "
                f"the recording path alone (write a run's cases, read both sides' rows) median "
                f"{figures['record_ms']:.2f} ms",
                flush=True,
            )
    if 0 in results:  # a size given more than once (interleaved, 0,10000,0,10000): their mean
        fresh = statistics.mean(f["overhead_ms"] for f in results[0])
        fresh_record = statistics.mean(f["record_ms"] for f in results[0])
        for size, runs in results.items():
            if size:
                own = statistics.mean(f["overhead_ms"] for f in runs) / fresh
                record = statistics.mean(f["record_ms"] for f in runs) / fresh_record
                print(
                    f"at {size}: {own:.2f}x a fresh loop's own time per experiment, every run "
                    f"recording its cases; the recording path alone {record:.2f}x "
                    f"(means over {len(runs)} and {len(results[0])} loops)"
                )


if __name__ == "__main__":
    main()
