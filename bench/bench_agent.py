"""What one proposal of the offline agents costs as the record grows: 1,000, 10,000 and
100,000 earlier trials.

    python bench/bench_agent.py [--sizes 1000,10000,100000] [--proposals 10] [--sqlite-max 10000]

For each size, a study of that many finished trials over three constants (a log-scale rate,
an integer width, a fraction; random values and metrics), then each agent (optuna's TPE, and
the portfolio) makes `--proposals` proposals in a row, each told a result before the next, as
the engine does. Reported: the first proposal (it opens the study: once per loop start; with
a memory storage nothing is opened, so none is shown) and the median of the others (the
steady state: one experiment's agent cost). Last, the summary
of the whole history that LLM agents are shown (summary.py), rebuilt once per finished
experiment, at each size.

Sizes up to --sqlite-max use the agents' real storage (`.ratchet/optuna.db`). Above it the
study is in Optuna's in-memory storage: filling SQLite through Optuna's API costs about 13 ms
a trial (22 minutes for 100,000). A kept-open SQLite study reads only what changed, but
still sorts its cached trials at each read, so memory is a lower bound there (compare one
size both ways with --sqlite-max 0).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from ratchet.agents.optuna import OptunaAgent, distribution, study_storage
from ratchet.agents.portfolio import PortfolioAgent
from ratchet.agents.space import build_space
from ratchet.experiment import Experiment, HistoryEntry, ProposalContext, Status
from ratchet.novelty import digest
from ratchet.summary import summarise

TEXT = "LR = 0.002\nWIDTH = 64\nDROPOUT = 0.3\nprint('score:', LR * WIDTH * DROPOUT)\n"
AGENTS = {"optuna": OptunaAgent, "portfolio": PortfolioAgent}


def filled_storage(folder: Path, size: int, sqlite: bool) -> optuna.storages.BaseStorage:
    """A storage holding the loop's study with `size` finished trials."""
    storage: optuna.storages.BaseStorage = (
        optuna.storages.RDBStorage(study_storage(folder))
        if sqlite
        else optuna.storages.InMemoryStorage()
    )
    study = optuna.create_study(storage=storage, study_name="ratchet-bench")
    dimensions = build_space(TEXT, {}).dimensions
    distributions = {d.name: distribution(d) for d in dimensions}
    rng = random.Random(0)
    trials = []
    for number in range(size):
        params = {
            name: rng.randint(d.low, d.high)
            if isinstance(d, optuna.distributions.IntDistribution)
            else d.to_external_repr(rng.uniform(d.low, d.high))
            for name, d in distributions.items()
        }
        changed = [rng.choice(list(distributions))]
        attrs = {"digest": f"old{number}", "experiment": number, "changed": changed}
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=1.0 + rng.random(),
                user_attrs=attrs | {"base_metric": 1.0, "arm": "tpe", "description": "old"},
            )
        )
    study.add_trials(trials)
    return storage


async def proposals(agent: OptunaAgent, size: int, count: int) -> list[float]:
    """Seconds per proposal; each proposal's experiment is told a result before the next.
    One event loop for all, as in a loop: its worker threads (and their connections) stay."""
    history: list[HistoryEntry] = []
    rng = random.Random(1)
    seconds = []
    for n in range(count):
        context = ProposalContext(
            experiment=size + n + 1,
            editable_path="train.py",
            editable_text=TEXT,
            program="",
            metric_name="score",
            goal="minimize",
            best_metric=1.0,
            history=tuple(history[-60:]),
            proposal=n,
            tag="bench",
        )
        proposal = await agent.propose(context)
        seconds.append(proposal.agent_seconds)  # the agent's own clock, as the ledger records it
        assert proposal.failure is None and proposal.edits, proposal.failure  # timed real work
        text = proposal.edits["train.py"]
        history.append(
            HistoryEntry(
                context.experiment,
                "discarded",
                1.0 + rng.random(),
                None,
                proposal.description,
                digest=digest(text),
            )
        )
    return seconds


def summary_seconds(size: int) -> float:
    """One rebuild of the LLM's history summary over `size` experiments: half constant
    changes, half structural ideas (the words it groups by)."""
    rng = random.Random(2)
    ideas = ("swiglu", "rmsnorm", "rotary", "alibi", "warmup", "cosine", "gelu", "flash")
    experiments = [
        Experiment(
            n,
            "bench",
            Status.KEPT if n % 7 == 0 else Status.DISCARDED,
            f"LR 0.0{n % 9 + 1} → 0.0{(n + 3) % 9 + 1}"
            if n % 2
            else f"replace relu with {rng.choice(ideas)} in block {n % 12}",
            "bench",
            f"c{n - 1}",
            commit=f"c{n}",
            metric=rng.random(),
        )
        for n in range(1, size + 1)
    ]
    started = time.perf_counter()
    summarise(experiments)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--proposals", type=int, default=10, help="at least 2")
    parser.add_argument("--sqlite-max", type=int, default=10000)
    args = parser.parse_args()
    if args.proposals < 2:
        parser.error("--proposals must be at least 2: the first opens the study")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'trials':>8} {'storage':>8} {'agent':>10} {'first (s)':>10} {'steady (s)':>11}")
    for size in sizes:
        sqlite = size <= args.sqlite_max
        with tempfile.TemporaryDirectory(prefix="bench-agent-") as folder:
            storage = filled_storage(Path(folder), size, sqlite)
            for name, kind in AGENTS.items():
                # With SQLite the agent opens the file itself, as in a loop (so this runs on
                # earlier versions too); a memory storage is handed over.
                given = {} if sqlite else {"storage": storage}
                agent = kind(Path(folder), seed=3, **given)
                times = asyncio.run(proposals(agent, size, args.proposals))
                first = f"{times[0]:10.3f}" if sqlite else f"{'-':>10}"
                print(
                    f"{size:>8} {'sqlite' if sqlite else 'memory':>8} {name:>10} "
                    f"{first} {statistics.median(times[1:]):11.3f}",
                    flush=True,
                )
    for size in sizes:
        print(f"{size:>8} experiments: the LLM's history summary {summary_seconds(size):.3f} s")


if __name__ == "__main__":
    main()
