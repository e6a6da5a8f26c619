"""How often the judge keeps noise, and how much early abort saves — on synthetic metrics.

    python bench/bench_judge.py [--loops 300] [--experiments 100] [--table-only]
        [--rules fixed,sequential,controls] [--drift none,step +5,step -5,ramp,swing,seeds]
    python bench/bench_judge.py --frontier swing [--loops 300]

Judge: a metric with Gaussian noise (sigma = 1); of the candidates, 9 in 10 change nothing
and 1 in 10 is a real improvement of 2 noise units. The naive rule (autoresearch's: keep
what measures strictly better than the best's one measurement) against Ratchet's Judge (the
same code the engine runs: 3 baseline runs, pooled noise estimate, then either the fixed
rule — screen, re-runs, z — or the sequential rule, whose best kept on few runs is measured
again up to confirm_runs). Per candidate: against a fixed best measured baseline_runs (3)
times, how often a no-effect candidate and a 2-sigma gain are kept, and the runs it costs.
A split candidate: the estimated noise with one candidate whose runs jumped by 40 sigma.

Drift: the same loop on a simulated machine whose clock moves one tick per run (baseline,
candidate, confirmation or control alike) and whose reading moves with it: a step of 5 sigma
(better, or worse) just after the baseline, a steady ramp, a slow swing; and a machine whose
noise is mostly the seed's (run k of every experiment draws the same seed effect). For each
rule and machine, a table: no-effect candidates and 2-sigma gains kept per candidate (a run of
candidates of one kind against a best never replaced), no-effect and real gains kept in the
loop, runs per experiment (controls and confirmations included), and the reported best's
optimism (how much better it reads than its truth where it was measured, in sigma). Rules:
`fixed` and `sequential` as they were before same-round controls (`controls = false`), and
`controls`, the default: the sequential rule against the best's tracked level, with control
runs of the best beside its candidates (judge.py).

Early abort: half the candidates are clearly worse (their loss curve sits 30% above the
best's); the AbortWatch the engine runs stops them; the GPU time saved is reported.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ratchet.config import MetricConfig
from ratchet.judge import Judge
from ratchet.noise import estimate_noise
from ratchet.progress import AbortWatch
from ratchet.track import Timed, Track, mean

SIGMA = 1.0
BASELINE_RUNS = 3
RAMP = 0.5  # sigma per run
SWING, SWING_TICKS = 3.0, 120  # sigma, runs per period
SEED_SHARE = 0.7  # of the noise variance, in the seed scenario


def naive_loop(rng: random.Random, experiments: int) -> dict[str, float]:
    truth = 0.0
    best_measured = truth + rng.gauss(0, SIGMA)
    kept_noop = kept_real = noop = real = 0
    for _ in range(experiments):
        is_real = rng.random() < 0.1
        candidate_truth = truth - 2 * SIGMA if is_real else truth
        measured = candidate_truth + rng.gauss(0, SIGMA)
        real += is_real
        noop += not is_real
        if measured < best_measured:
            kept_real += is_real
            kept_noop += not is_real
            truth, best_measured = candidate_truth, measured
    return {
        "noop": noop,
        "real": real,
        "kept_noop": kept_noop,
        "kept_real": kept_real,
        "bias": truth - best_measured,
        "runs": experiments + 1,
    }


@dataclass(frozen=True)
class Run:
    value: float  # what the run measured
    at: int  # the machine's clock when it ran: every run takes one tick
    seed: int  # RATCHET_SEED: run k of an experiment gets seed k
    level: float  # what it would have read without noise: the truth plus the drift then


@dataclass
class Machine:
    """The simulated machine. Every run takes one tick of its clock and reads the edit's true
    value, plus the machine's drift at that tick, plus noise. In the seed scenario most of the
    noise is the seed's: run k of every experiment draws the same seed effect."""

    drift: Callable[[int], float]
    residual: float = SIGMA
    seed_effects: tuple[float, ...] = ()
    clock: int = 0

    def run(self, rng: random.Random, truth: float, seed: int) -> Run:
        self.clock += 1
        level = truth + self.drift(self.clock)
        effect = self.seed_effects[seed % len(self.seed_effects)] if self.seed_effects else 0.0
        return Run(level + effect + rng.gauss(0, self.residual), self.clock, seed, level)


def _after_baseline(t: int) -> int:
    return max(0, t - BASELINE_RUNS)


# Lower is better: a drift below zero reads as progress. Each scenario makes a fresh machine.
SCENARIOS: dict[str, Callable[[random.Random], Machine]] = {
    "none": lambda rng: Machine(lambda t: 0.0),
    "step +5": lambda rng: Machine(lambda t: -5 * SIGMA if t > BASELINE_RUNS else 0.0),
    "step -5": lambda rng: Machine(lambda t: 5 * SIGMA if t > BASELINE_RUNS else 0.0),
    "ramp": lambda rng: Machine(lambda t: -RAMP * SIGMA * _after_baseline(t)),
    "swing": lambda rng: Machine(
        lambda t: -SWING * SIGMA * math.sin(2 * math.pi * _after_baseline(t) / SWING_TICKS)
    ),
    "seeds": lambda rng: Machine(
        lambda t: 0.0,
        residual=SIGMA * (1 - SEED_SHARE) ** 0.5,
        seed_effects=tuple(rng.gauss(0, SIGMA * SEED_SHARE**0.5) for _ in range(64)),
    ),
}
SCENARIO_NOTES = {
    "none": "no drift",
    "step +5": "the machine reads 5 sigma better from the first run after the baseline",
    "step -5": "the machine reads 5 sigma worse from the first run after the baseline",
    "ramp": f"the machine reads {RAMP:g} sigma better every run after the baseline",
    "swing": f"a slow swing: {SWING:g} sigma up and down over {SWING_TICKS} runs",
    "seeds": f"{100 * SEED_SHARE:.0f}% of the noise variance is the seed's (run k of every "
    "experiment draws the same)",
}


class Loop:
    """One simulated loop as the engine runs it: the best (measured again when the judge
    asks: confirmations, controls), candidates run as often as the judge asks, the noise
    estimated from every experiment measured more than once (control runs apart)."""

    def __init__(self, rng: random.Random, judge: Judge, machine: Machine) -> None:
        self.rng, self.judge, self.machine = rng, judge, machine
        self.truth = 0.0  # the best's true value
        self.best = [machine.run(rng, self.truth, seed) for seed in range(BASELINE_RUNS)]
        self.groups: list[list[Run]] = [self.best]
        self.runs = BASELINE_RUNS
        self.controls = 0
        self.beside: list[Run] = []  # the best's control runs since it was kept
        self.track: Track | None = None
        if judge.controls:
            self.track = judge.track(timed(self.best), self.noise() or SIGMA, False)

    def measure_best(self, control: bool = False, seed: int = 0) -> Run:
        """The best measured again, seeded as the engine seeds it: a confirmation as its next
        run, a control as the candidate's run it is beside; a control run is recorded apart
        from its measurements."""
        run = self.machine.run(self.rng, self.truth, seed if control else len(self.best))
        self.runs += 1
        if control and self.track is not None:
            self.track.add(Timed(run.value, run.at, True), self.noise() or SIGMA)
            self.controls += 1
            self.beside.append(run)
        else:
            self.best.append(run)
        return run

    def noise(self, extra: list[Run] | None = None) -> float | None:
        groups = [[r.value for r in g] for g in self.groups]
        return estimate_noise([*groups, [r.value for r in extra]] if extra else groups)

    def experiment(self, truth: float, adopt: bool = True) -> bool:
        """One candidate of this true value, judged; kept (and, if `adopt`, the new best)?"""
        judge = self.judge
        while judge.needs_confirmation([r.value for r in self.best], self.noise()):
            self.measure_best()
        if judge.wants_control(self.track, self.machine.clock + 1, self.noise()):
            self.measure_best(control=True)
        runs: list[Run] = []
        while True:
            runs.append(self.machine.run(self.rng, truth, len(runs)))
            self.runs += 1
            while True:
                decision = judge.assess(
                    [r.value for r in runs],
                    [r.value for r in self.best],
                    self.noise(runs),
                    self.track,
                    [r.at for r in runs],
                )
                if decision.action != "control":
                    break
                self.measure_best(control=True, seed=len(runs) - 1)
            if decision.action != "rerun":
                break
        if len(runs) > 1:
            self.groups.append(runs)
        if decision.keep and adopt:
            if len(runs) == 1:
                self.groups.append(runs)  # later confirmations make it a group
            self.truth, self.best, self.beside = truth, runs, []
            if self.track is not None:
                noise = self.noise() or SIGMA
                self.track = judge.track(timed(runs), noise, True, self.track)
        return decision.keep

    def optimism(self) -> float:
        """How much better the best reads than it is where it was measured, in sigma: its
        reported metric against the truth over its runs. As the engine reports it: the mean of
        the runs it was judged on (and confirmations) until it is measured again beside a
        candidate; from its first control, the mean of all its runs with the judged ones read
        back for their luck (Track.recorded)."""
        runs = self.best + self.beside
        reported = mean([r.value for r in runs])
        if self.track is not None and self.beside:
            reported = self.track.recorded
        return (mean([r.level for r in runs]) - reported) / SIGMA


def timed(runs: list[Run]) -> list[Timed]:
    return [Timed(r.value, r.at) for r in runs]


def ratchet_loop(
    rng: random.Random, experiments: int, judge: Judge, machine: Machine
) -> dict[str, float]:
    loop = Loop(rng, judge, machine)
    kept_noop = kept_real = noop = real = 0
    truth = 0.0
    for _ in range(experiments):
        is_real = rng.random() < 0.1
        real += is_real
        noop += not is_real
        if loop.experiment(truth - 2 * SIGMA if is_real else truth):
            kept_real += is_real
            kept_noop += not is_real
            truth = loop.truth
    return {
        "noop": noop,
        "real": real,
        "kept_noop": kept_noop,
        "kept_real": kept_real,
        "bias": loop.optimism(),
        "runs": loop.runs,
        "controls": loop.controls,
    }


def per_candidate(
    rng: random.Random, judge: Judge, gain: float, candidates: int = 20000
) -> tuple[float, float]:
    """Against a fixed best (noise known) of 3 runs, or of confirm_runs for the sequential
    rule (which measures a best that often): share kept, runs per candidate."""
    kept = runs_total = 0
    size = judge.confirm_runs if judge.rule == "sequential" else 3
    for _ in range(candidates):
        best = [rng.gauss(0, SIGMA) for _ in range(size)]
        runs: list[float] = []
        while True:
            runs.append(-gain + rng.gauss(0, SIGMA))
            decision = judge.assess(runs, best, SIGMA)
            if decision.action != "rerun":
                break
        kept += decision.keep
        runs_total += len(runs)
    return kept / candidates, runs_total / candidates


def per_candidate_in_time(
    rng: random.Random, judge: Judge, scenario: str, gain: float, loops: int, candidates: int
) -> tuple[float, float]:
    """Candidates of one kind (a gain of `gain` sigma, or none) judged one after another
    against a best that is never replaced, on a machine of this scenario: the share kept,
    and the runs per candidate, controls and confirmations included."""
    kept = runs = 0
    for _ in range(loops):
        loop = Loop(rng, judge, SCENARIOS[scenario](rng))
        before = loop.runs
        kept += sum(loop.experiment(-gain, adopt=False) for _ in range(candidates))
        runs += loop.runs - before
    return kept / (loops * candidates), runs / (loops * candidates)


def split_candidate(rng: random.Random) -> str:
    """The noise estimate before and after one candidate whose runs split in two."""
    groups = [[rng.gauss(0, SIGMA) for _ in range(3)] for _ in range(4)]
    before = estimate_noise(groups) or 0.0
    split = [rng.gauss(0, SIGMA) for _ in range(3)] + [40 + rng.gauss(0, SIGMA) for _ in range(2)]
    after = estimate_noise([*groups, split]) or 0.0
    squares = [sum((v - mean(g)) ** 2 for v in g) for g in [*groups, split]]
    plain = (sum(squares) / sum(len(g) - 1 for g in [*groups, split])) ** 0.5
    return (
        f"one split candidate: noise {before:.2f} -> {after:.2f} sigma (plain pooling: {plain:.2f})"
    )


def summarise(name: str, results: list[dict[str, float]], experiments: int) -> None:
    noop = sum(r["noop"] for r in results)
    real = sum(r["real"] for r in results)
    kept_noop = sum(r["kept_noop"] for r in results)
    kept_real = sum(r["kept_real"] for r in results)
    bias = statistics.mean(r["bias"] for r in results)
    runs = statistics.mean(r["runs"] for r in results)
    print(
        f"{name:>10}: no-op changes kept {100 * kept_noop / noop:5.1f}%  "
        f"({kept_noop / len(results):.1f} per {experiments} experiments), "
        f"real improvements kept {100 * kept_real / real:5.1f}%, "
        f"reported best {bias:+.2f} sigma from the truth, "
        f"GPU runs {runs:.0f} per loop ({runs / (experiments + 1):.2f} per experiment), "
        f"{100 * kept_real / len(results) / runs:.2f} real gains kept per 100 runs"
    )


@dataclass(frozen=True)
class Row:
    """One rule on one machine: what the issue's goals are measured by."""

    noop: float  # no-effect candidates kept, per candidate (a best never replaced)
    gain: float  # 2-sigma gains kept, per candidate
    loop_noop: float  # no-effect candidates kept in the loop
    loop_real: float  # real gains kept in the loop
    runs: float  # runs per experiment in the loop, controls and confirmations included
    controls: float  # of which controls
    optimism: float  # the reported best against its truth where it was measured, in sigma

    def fails(self) -> list[str]:
        """The goals this row misses."""
        goals = (
            (self.noop <= 0.05, "no-effect"),
            (self.gain >= 0.80, "2-sigma"),
            (self.loop_real >= 0.75, "in-loop"),
            (self.runs <= 1.6, "runs"),
            (abs(self.optimism) <= 0.5, "optimism"),
        )
        return [name for met, name in goals if not met]


def measure(rng: random.Random, judge: Judge, scenario: str, loops: int, experiments: int) -> Row:
    results = [
        ratchet_loop(rng, experiments, judge, SCENARIOS[scenario](rng)) for _ in range(loops)
    ]
    noop = sum(r["noop"] for r in results)
    real = sum(r["real"] for r in results)
    runs = sum(r["runs"] for r in results) / (loops * (experiments + 1))
    candidates = max(20, loops // 3)
    noop_kept, _ = per_candidate_in_time(rng, judge, scenario, 0.0, candidates, experiments)
    gain_kept, _ = per_candidate_in_time(rng, judge, scenario, 2 * SIGMA, candidates, experiments)
    return Row(
        noop_kept,
        gain_kept,
        sum(r["kept_noop"] for r in results) / noop,
        sum(r["kept_real"] for r in results) / real,
        runs,
        sum(r["controls"] for r in results) / (loops * (experiments + 1)),
        statistics.mean(r["bias"] for r in results),
    )


COLUMNS = (
    f"{'no-effect':>10}{'2-sigma':>9}{'loop':>8}{'loop':>8}{'runs/':>7}{'of them':>9}"
    f"{'best':>7}  misses",
    f"{'kept':>10}{'kept':>9}{'no-eff.':>8}{'real':>8}{'exp.':>7}{'controls':>9}{'optim.':>7}",
)
HEADER = f"{'rule':<11}{'drift':<9}{COLUMNS[0]}\n{'':<20}{COLUMNS[1]}"


def figures(row: Row) -> str:
    return (
        f"{100 * row.noop:>9.1f}%{100 * row.gain:>8.1f}%{100 * row.loop_noop:>7.1f}%"
        f"{100 * row.loop_real:>7.1f}%{row.runs:>7.2f}{row.controls:>9.2f}"
        f"{row.optimism:>+7.2f}  {', '.join(row.fails()) or '-'}"
    )


def table_row(rule: str, scenario: str, row: Row) -> str:
    return f"{rule:<11}{scenario:<9}{figures(row)}"


def sprt(
    rng: random.Random, gain: float, accept: float, reject: float, spread: float = SIGMA
) -> tuple[bool, int]:
    """Wald's test of a 2-sigma gain against none on observations of the candidate less the
    best with this spread: one run against the best's true value (spread sigma), or a run
    less the best's run beside it (a pair: spread sigma x sqrt 2)."""
    evidence, n = 0.0, 0
    alternative = 2 * SIGMA
    while reject < evidence < accept and n < 50:
        n += 1
        x = -gain + rng.gauss(0, spread)  # lower is better
        # log N(x; -alternative, spread) - log N(x; 0, spread)
        evidence += -(alternative * x) / spread**2 - alternative**2 / (2 * spread**2)
    return evidence >= accept, n


def sprt_figures(
    rng: random.Random, accept: float, reject: float, candidates: int, spread: float, cost: int
) -> tuple[float, float, float]:
    """Runs per candidate (this bench's mix: 1 in 10 a gain; `cost` runs an observation),
    no-effect and gains kept."""
    noop = [sprt(rng, 0.0, accept, reject, spread) for _ in range(candidates)]
    real = [sprt(rng, 2 * SIGMA, accept, reject, spread) for _ in range(candidates)]
    observations = 0.9 * statistics.mean(n for _, n in noop) + 0.1 * statistics.mean(
        n for _, n in real
    )
    kept_noop = sum(k for k, _ in noop) / candidates
    return cost * observations, kept_noop, sum(k for k, _ in real) / candidates


def sprt_floor(seed: int, spread: float, cost: int) -> tuple[float, float, float, str] | None:
    """About the fewest runs per candidate any rule could spend at the goals (no-effect kept
    <= 5%, 2-sigma gains kept >= 80%) on these observations: Wald's SPRT (for two simple
    hypotheses, the fewest observations on average at its error rates), its bounds searched
    on a grid, then the best few measured again on fresh draws so the minimum over the grid
    is not a lucky one. Runs, no-effect kept, gains kept, and the bounds; None if none met."""
    rng = random.Random(seed)
    grid = []
    for accept in (a / 10 for a in range(10, 31)):
        for reject in (-r / 20 for r in range(0, 21)):
            runs, kept_noop, kept_real = sprt_figures(rng, accept, reject, 4000, spread, cost)
            if kept_noop <= 0.05 and kept_real >= 0.80:
                grid.append((runs, accept, reject))
    for _, accept, reject in sorted(grid)[:8]:
        runs, kept_noop, kept_real = sprt_figures(rng, accept, reject, 40000, spread, cost)
        if kept_noop <= 0.05 and kept_real >= 0.80:
            return runs, kept_noop, kept_real, f"{accept:g} / {reject:g}"
    return None


def known_reference_floor(seed: int) -> str:
    """The floor if the best's true value came for free. A real rule pays more: its best is
    measured, and a new best must be measured again."""
    found = sprt_floor(seed, SIGMA, 1)
    if found is None:
        return "the floor: no SPRT bounds on the grid met the goals"
    runs, kept_noop, kept_real, bounds = found
    return (
        f"the floor, with the best's true value known for free (SPRT, bounds {bounds}): "
        f"{runs:.2f} runs per candidate ({100 * kept_noop:.1f}% no-effect, "
        f"{100 * kept_real:.1f}% of 2-sigma gains kept)"
    )


def paired_floor(seed: int) -> str:
    """The floor for a judge that assumes of the machine only that it holds still across two
    adjacent runs: each candidate run is read against a run of the best beside it, so an
    observation costs two runs and spreads sqrt 2 sigma, however the machine moves between
    pairs. (A run of the best between two candidate runs could serve both, if the machine
    holds still across three.)"""
    found = sprt_floor(seed, SIGMA * math.sqrt(2), 2)
    if found is None:
        return "the paired floor: no SPRT bounds on the grid met the goals"
    runs, kept_noop, kept_real, bounds = found
    return (
        f"the floor on a machine that holds still only from one run to the next, each run "
        f"read against a run of the best beside it (SPRT "
        f"on pairs, bounds {bounds}): {runs:.2f} runs per candidate ({100 * kept_noop:.1f}% "
        f"no-effect, {100 * kept_real:.1f}% of 2-sigma gains kept)"
    )


# The control rates of the frontier: the best measured when it was last measured this many
# runs ago, or when its level's variance exceeds this share of the noise's (judge.py's
# MAX_GAP and STALE; the first is the default).
CONTROL_RATES = ((11, 0.63), (6, 0.5), (4, 0.4), (3, 0.3), (2, 0.2), (1, 0.1))


def frontier(rng: random.Random, scenario: str, loops: int, experiments: int) -> None:
    """What more controls buy on one machine: the default rule at rising control rates."""
    print(
        f"Control rate on {scenario} ({SCENARIO_NOTES[scenario]}), the default rule, "
        f"{loops} loops of {experiments} experiments per row"
    )
    print(f"{'max gap':<8}{'stale':<6}{COLUMNS[0]}\n{'':<14}{COLUMNS[1]}")
    for gap, stale in CONTROL_RATES:
        judge = Judge(
            lower_is_better=True, rule="sequential", controls=True, max_gap=gap, stale=stale
        )
        row = measure(rng, judge, scenario, loops, experiments)
        print(f"{gap:<8}{stale:<6}{figures(row)}", flush=True)
    print(f"  {paired_floor(rng.randrange(1 << 30))}")


def abort_savings(rng: random.Random, candidates: int) -> None:
    config = MetricConfig(
        "loss",
        "minimize",
        None,
        None,
        0.0,
        None,
        progress="loss",
        abort_after=0.25,
        abort_margin=0.1,
    )
    steps = 50

    def curve(scale: float) -> list[tuple[float, float]]:
        return [
            ((i + 1) / steps, scale * (4.0 - 2.5 * (i + 1) / steps) * (1 + rng.gauss(0, 0.02)))
            for i in range(steps)
        ]

    best = curve(1.0)
    spent = full = 0.0
    aborted_worse = aborted_fine = worse = 0
    for n in range(candidates):
        is_worse = n % 2 == 0
        worse += is_worse
        watch = AbortWatch(config, best)
        used = 1.0
        for fraction, value in curve(1.3 if is_worse else 1.0):
            if watch.feed(f"loss: {value:.5f}", fraction):
                used = fraction
                aborted_worse += is_worse
                aborted_fine += not is_worse
                break
        spent += used
        full += 1.0
    print(
        f"   abort: {aborted_worse}/{worse} clearly worse runs stopped early, "
        f"{aborted_fine}/{candidates - worse} others stopped by mistake; GPU time "
        f"{spent:.1f} of {full:.0f} budgets: {100 * (1 - spent / full):.0f}% saved"
    )


def name_of(judge: Judge) -> str:
    return "controls" if judge.controls else judge.rule


def rules(names: list[str]) -> list[Judge]:
    made = {
        "fixed": Judge(lower_is_better=True),
        "sequential": Judge(lower_is_better=True, rule="sequential"),
        "controls": Judge(lower_is_better=True, rule="sequential", controls=True),
    }
    return [made[name] for name in names]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loops", type=int, default=300)
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rules", default="fixed,sequential,controls", help="comma-separated")
    parser.add_argument("--drift", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--table-only", action="store_true", help="only the drift table")
    parser.add_argument(
        "--frontier",
        choices=list(SCENARIOS),
        help="only the default rule at rising control rates, on this machine",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.frontier:
        frontier(rng, args.frontier, args.loops, args.experiments)
        return
    names = args.rules.split(",")
    if not args.table_only:
        naive = [naive_loop(rng, args.experiments) for _ in range(args.loops)]
        print(f"{args.loops} loops of {args.experiments} experiments, 3 baseline runs")
        summarise("naive", naive, args.experiments)
        for judge in rules(names):
            ours = [
                ratchet_loop(rng, args.experiments, judge, SCENARIOS["none"](rng))
                for _ in range(args.loops)
            ]
            summarise(name_of(judge), ours, args.experiments)
            if judge.controls:
                continue  # against a fixed best there is nothing to control: see the table
            noop, noop_runs = per_candidate(rng, judge, 0.0)
            real, real_runs = per_candidate(rng, judge, 2 * SIGMA)
            print(
                f"{'':>10}per candidate against a fixed best: no-effect kept {100 * noop:.1f}% "
                f"({noop_runs:.2f} runs), 2-sigma gains kept {100 * real:.1f}% "
                f"({real_runs:.2f} runs)"
            )
        print(f"{'':>10}{known_reference_floor(args.seed)}")
        print(f"{'':>10}{paired_floor(args.seed)}")
        print(f"{'':>10}{split_candidate(rng)}")
        abort_savings(rng, 200)
        print()
    print(
        f"Drift: {args.loops} loops of {args.experiments} experiments per rule and machine, "
        "every run one tick of the machine's clock; per candidate: a run of candidates of one "
        "kind against a best never replaced, on the same machine. Goals: no-effect kept <= 5%, "
        "2-sigma gains kept >= 80%, real gains kept in the loop >= 75%, <= 1.6 runs per "
        "experiment, the best within 0.5 sigma."
    )
    for name in args.drift.split(","):
        print(f"  {name:<8} {SCENARIO_NOTES[name]}")
    print(HEADER)
    for judge in rules(names):
        for name in args.drift.split(","):
            row = measure(rng, judge, name, args.loops, args.experiments)
            print(table_row(name_of(judge), name, row), flush=True)


if __name__ == "__main__":
    main()
