"""How close each offline agent gets to the optimum of known objectives, through the real loop.

    python bench/bench_search.py [--quick] [--experiments 50] [--seeds 5] [--jobs 2]
                                 [--agents mutate,tpe,cmaes,random,portfolio] [--only NAME]
                                 [--example-experiments 50] [--example-seeds 5]
                                 [--example-agents mutate,tpe,cmaes,random,portfolio]
                                 [--example-jobs 1]

Each synthetic objective is a tiny train.py whose module-level constants start away from the
optimum and which prints `score: f(constants)` (plus Gaussian noise for `noisy`). Every run
goes through the real Engine with the local runner: real git commits, real processes, the
real judge. Since f is known, the regret of the final best is exact: f(best's constants) - f*.

Two objectives are the bundled examples, at a short budget: fastsort (the runtime of a pure
Python sort, one knob, timing noise) and tinygpt (val_bpb of a GPT trained for 6 s on the
CPU, six knobs). Their truth is not known: once every loop has ended, each final best (and
the file as shipped) is measured again three times, in turns, outside the loop; its regret
is that mean less the best such mean any loop of the run reached. They cost minutes per
loop (a tinygpt loop of 50 experiments about 4.5 minutes), so they have their own experiment
and seed counts and agents for shorter runs (--example-experiments, --example-seeds,
--example-agents). Their metrics are a time and a time-budgeted training, so their loops run
one at a time after the others (--example-jobs 1); at the defaults they take hours.
Reported per objective: the median regret over seeds for each agent, and the run time spent.
The last lines compare the portfolio agent with mutate: regret ratio per objective, and the
median ratio over the suite (the goal: <= 0.5, and no objective above 1.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ratchet.agents.space import find_literals
from ratchet.config import load_config
from ratchet.engine import Engine


@dataclass(frozen=True)
class Objective:
    start: dict[str, float | int]
    formula: str  # a Python expression over the constants (math is imported)
    noise: float = 0.0
    guard: str = ""  # a line that crashes the run for some values (an assert)
    extra: str = ""  # lines that read constants without affecting the score


OBJECTIVES = {
    # A smooth bowl whose rate is two decades off, on a log scale.
    "bowl_log": Objective(
        {"LR": 0.002, "WIDTH": 64, "DROPOUT": 0.3},
        "(math.log10(LR) + 1.5) ** 2 + ((WIDTH - 100) / 40) ** 2 + 4 * (DROPOUT - 0.1) ** 2",
    ),
    # Ill-conditioned: the valley of A - B is 30x steeper than that of A + B.
    "ill_conditioned": Objective(
        {"LR": 0.01, "A": 1.5, "B": 2.0},
        "(math.log10(LR) + 2.5) ** 2 + (A + B - 3) ** 2 + 30 * (A - B + 0.5) ** 2",
    ),
    # Integer widths, depths and heads.
    "integers": Objective(
        {"WIDTH": 32, "DEPTH": 2, "HEADS": 4},
        "(math.log2(WIDTH) - 6.8) ** 2 + (DEPTH - 6) ** 2 / 4 + (math.log2(HEADS) - 3) ** 2",
    ),
    # Started on a ridge: the best LR grows with sqrt(BATCH), so both must move together.
    "interactions": Objective(
        {"LR": 0.01, "BATCH": 64, "WD": 0.1},
        "(math.log2(LR) - 0.5 * math.log2(BATCH) + 9.644) ** 2"
        " + 0.05 * (math.log2(BATCH) - 8) ** 2 + (math.log10(WD) + 1.3) ** 2",
    ),
    # The bowl again, measured with noise (sigma 0.05): the judge's re-runs matter.
    "noisy": Objective(
        {"LR": 0.002, "WIDTH": 64, "DROPOUT": 0.3},
        "(math.log10(LR) + 1.5) ** 2 + ((WIDTH - 100) / 40) ** 2 + 4 * (DROPOUT - 0.1) ** 2",
        noise=0.05,
    ),
    # Rastrigin-like: a local minimum at every integer offset from the global one.
    "multimodal": Objective(
        {"X": 2.5, "Y": -1.5},
        "(X - 1) ** 2 + (Y + 1) ** 2"
        " + 3 * (2 - math.cos(2 * math.pi * (X - 1)) - math.cos(2 * math.pi * (Y + 1)))",
    ),
    # autoresearch-like: a batch size that crashes above 160 (out of memory), and a peak
    # FLOPS figure that only feeds a printed utilisation.
    "crash_and_dead": Objective(
        {"LR": 0.04, "BATCH": 64, "WARMUP": 0.1, "PEAK_FLOPS": 989.5e12},
        "(math.log10(LR) + 2) ** 2 + (math.log2(BATCH) - 7.3) ** 2 + 3 * (WARMUP - 0.3) ** 2",
        guard='assert BATCH <= 160, "CUDA out of memory"',
        extra='mfu = 1e14 / PEAK_FLOPS\nprint(f"mfu: {mfu:.4f}")',
    ),
}


@dataclass(frozen=True)
class Example:
    """A bundled example run at a short budget; its truth is measured by fresh runs."""

    folder: str  # under examples/
    editable: str
    locked: str
    command: str  # run in the copy, with this interpreter
    metric: str
    budget: float  # seconds
    runs: int  # baseline_runs and max_runs: timing noise needs repeats


EXAMPLES = {
    "fastsort": Example(
        "fastsort", "sorting.py", "evaluate.py", "evaluate.py", "runtime_ms", 4.0, 2
    ),
    "tinygpt": Example("tinygpt", "train.py", "prepare.py", "train.py", "val_bpb", 6.0, 2),
}
EXAMPLES_ROOT = Path(__file__).resolve().parent.parent / "examples"
TRUTH_RUNS = 3

AGENTS = {
    "mutate": 'kind = "mutate"',
    "tpe": 'kind = "optuna"\nsampler = "tpe"',
    "cmaes": 'kind = "optuna"\nsampler = "cmaes"',
    "random": 'kind = "optuna"\nsampler = "random"',
    "portfolio": 'kind = "portfolio"',
}


def train_py(objective: Objective) -> str:
    lines = ["import math, os, random"]
    lines += [f"{name} = {value!r}" for name, value in objective.start.items()]
    if objective.guard:
        lines.append(objective.guard)
    score = f"score = {objective.formula}"
    if objective.noise:
        score += f" + random.Random(os.urandom(8)).gauss(0, {objective.noise})"
    lines += [score, objective.extra, 'print(f"score: {score:.9f}")']
    return "\n".join(lines) + "\n"


def ratchet_toml(objective: Objective, agent: str, seed: int) -> str:
    runs = 3 if objective.noise else 1
    return (
        textwrap.dedent(
            f"""\
        [loop]
        editable = "train.py"
        command = "{sys.executable} train.py"
        budget = "20s"
        pipeline = false

        [metric]
        name = "score"
        goal = "minimize"

        [judge]
        baseline_runs = {runs}

        [agent]
        seed = {seed}
        """
        )
        + AGENTS[agent]
        + "\n"
    )


def example_toml(example: Example, agent: str, seed: int) -> str:
    return (
        textwrap.dedent(
            f"""\
        [loop]
        editable = "{example.editable}"
        locked = ["{example.locked}"]
        command = "{sys.executable} {example.command}"
        budget = "{example.budget:g}s"
        pipeline = false

        [metric]
        name = "{example.metric}"
        goal = "minimize"

        [judge]
        baseline_runs = {example.runs}
        max_runs = {example.runs}

        [agent]
        seed = {seed}
        """
        )
        + AGENTS[agent]
        + "\n"
    )


def run_once(example: Example, root: Path, text: str) -> float:
    """One fresh run of `text` in a copy of the example, outside the loop."""
    (root / example.editable).write_text(text)
    environment = {**os.environ, "RATCHET_TIME_BUDGET": f"{example.budget:g}"}
    done = subprocess.run(
        [sys.executable, example.command],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=example.budget * 4 + 60,
    )
    found = re.findall(rf"^{example.metric}:\s*([-+0-9.eE]+)\s*$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"a final best of {example.folder} failed: {done.stderr[-500:]}")
    return float(found[-1])


def measure_examples(results: list[dict[str, object]]) -> None:
    """Each example's final bests, and the file as shipped, measured again TRUTH_RUNS times,
    after every loop has ended and in turns (so no agent's best is measured on a busier
    machine than another's); the regret is the mean less the best mean any loop reached."""
    for name, example in EXAMPLES.items():
        mine = [r for r in results if r["objective"] == name]
        if not mine:
            continue
        shipped = (EXAMPLES_ROOT / example.folder / example.editable).read_text()
        texts = [str(r.pop("best_text")) for r in mine] + [shipped]
        values: list[list[float]] = [[] for _ in texts]
        with tempfile.TemporaryDirectory(prefix="bench-search-truth-") as folder:
            root = Path(folder)
            shutil.copytree(EXAMPLES_ROOT / example.folder, root, dirs_exist_ok=True)
            for _ in range(TRUTH_RUNS):
                for runs, text in zip(values, texts, strict=True):
                    runs.append(run_once(example, root, text))
        means = [statistics.mean(v) for v in values]
        floor = min(means[:-1])
        for r, value in zip(mine, means, strict=False):
            r["truth"], r["regret"] = value, value - floor
        print(f"{name}: the shipped {example.editable} measures {means[-1]:.4g} {example.metric}")


def truth(objective: Objective, text: str) -> float:
    values = {lit.name: lit.value for lit in find_literals(text)}
    return float(eval(objective.formula, {"math": math}, values))


def optimum(objective: Objective) -> float:
    return 0.0  # every formula above is a sum of squares with its zero inside the ranges


def one_loop(name: str, agent: str, seed: int, experiments: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-search-") as folder:
        root = Path(folder)
        if name in EXAMPLES:
            example = EXAMPLES[name]
            shutil.copytree(EXAMPLES_ROOT / example.folder, root, dirs_exist_ok=True)
            (root / "ratchet.toml").write_text(example_toml(example, agent, seed))
        else:
            (root / "train.py").write_text(train_py(OBJECTIVES[name]))
            (root / "ratchet.toml").write_text(ratchet_toml(OBJECTIVES[name], agent, seed))
            (root / "program.md").write_text("Lower the score.\n")
        (root / ".gitignore").write_text(".ratchet/\n__pycache__/\n")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
            subprocess.run(
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args],
                cwd=root,
                check=True,
                capture_output=True,
            )
        engine = Engine(load_config(root), tag="bench")

        async def go() -> None:
            try:
                await engine.run(max_experiments=experiments)
            finally:
                await engine.close()

        asyncio.run(go())
        rows = engine.experiments()
        best_text = engine.text_of("best")
    if name in EXAMPLES:  # its truth is measured once every loop has ended
        regret, kept_text = math.nan, best_text
    else:
        regret, kept_text = truth(OBJECTIVES[name], best_text) - optimum(OBJECTIVES[name]), ""
    return {
        "objective": name,
        "agent": agent,
        "seed": seed,
        "regret": regret,
        "best_text": kept_text,
        "run_s": sum(e.run_s for e in rows),
        "crashed": sum(1 for e in rows if str(e.status) in ("crashed", "timeout", "invalid")),
        "kept": sum(1 for e in rows if str(e.status) == "kept"),
    }


def report(results: list[dict[str, object]], agents: list[str]) -> None:
    order = [*OBJECTIVES, *EXAMPLES]
    names = sorted({str(r["objective"]) for r in results}, key=order.index)
    print(f"{'median regret':>16} " + " ".join(f"{a:>11}" for a in agents))
    ratios = []
    for name in names:
        medians = {}
        for agent in agents:
            regrets = [float(str(r["regret"])) for r in results if r["objective"] == name
                       and r["agent"] == agent]  # fmt: skip
            medians[agent] = statistics.median(regrets) if regrets else math.nan
        print(f"{name:>16} " + " ".join(f"{medians[a]:11.4g}" for a in agents))
        if "portfolio" in medians and "mutate" in medians and medians["mutate"] > 0:
            ratios.append((name, medians["portfolio"] / medians["mutate"]))
    for name in EXAMPLES:
        truths = {
            a: [
                float(str(r["truth"]))
                for r in results
                if r["objective"] == name and r["agent"] == a
            ]
            for a in agents
        }
        if any(truths.values()):
            metric = EXAMPLES[name].metric
            print(
                f"{name + ' ' + metric:>16} "
                + " ".join(
                    f"{statistics.median(t):11.4g}" if t else f"{'-':>11}" for t in truths.values()
                )
                + "   (the final best's median, measured again)"
            )
    seconds = {a: sum(float(str(r["run_s"])) for r in results if r["agent"] == a) for a in agents}
    print(f"{'run time (s)':>16} " + " ".join(f"{seconds[a]:11.0f}" for a in agents))
    if ratios:
        print("portfolio / mutate median regret: " + ", ".join(f"{n} {x:.2f}" for n, x in ratios))
        print(
            f"suite: median ratio {statistics.median(x for _, x in ratios):.2f} (goal <= 0.5), "
            f"worst {max(x for _, x in ratios):.2f} (goal <= 1.1)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="30 experiments x 2 seeds; examples 10 x 1"
    )
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--agents", default=",".join(AGENTS))
    parser.add_argument("--only", default="", help="comma-separated objectives")
    parser.add_argument("--example-experiments", type=int, default=50)
    parser.add_argument("--example-seeds", type=int, default=5)
    parser.add_argument("--example-agents", default=",".join(AGENTS))
    parser.add_argument("--example-jobs", type=int, default=1)
    parser.add_argument("--out", default="", help="write every loop's result to this JSON")
    args = parser.parse_args()
    experiments, seeds = (30, 2) if args.quick else (args.experiments, args.seeds)
    if args.quick:
        args.example_experiments, args.example_seeds = 10, 1
    agents = args.agents.split(",")
    names = args.only.split(",") if args.only else [*OBJECTIVES, *EXAMPLES]
    jobs = [
        (n, a, s, experiments)
        for n in names
        if n in OBJECTIVES
        for a in agents
        for s in range(seeds)
    ]
    example_jobs = [
        (n, a, s, args.example_experiments)
        for n in names
        if n in EXAMPLES
        for a in args.example_agents.split(",")
        for s in range(args.example_seeds)
    ]
    print(
        f"{len(jobs) + len(example_jobs)} loops: {experiments} experiments x {seeds} seeds per "
        f"synthetic objective, {args.example_experiments} x {args.example_seeds} per example",
        flush=True,
    )
    results = []
    # The examples' metrics are a time and a time-budgeted training: loops beside them would
    # slow them, so they have their own (by default one at a time), after the others.
    for batch, width in ((jobs, args.jobs), (example_jobs, args.example_jobs)):
        if batch:
            with ProcessPoolExecutor(max_workers=width) as pool:
                results += list(pool.map(one_loop, *zip(*batch, strict=True)))
    measure_examples(results)
    for r in results:
        r.pop("best_text", None)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    report(results, agents)


if __name__ == "__main__":
    main()
