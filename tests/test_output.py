"""A run's output as lines: progress lines redrawn with a bare \\r are lines for live progress
and the metric's curve, while the stored log stays small."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from conftest import MakeProject
from loops import engine_for, run, statuses
from ratchet.events import OutputLine
from ratchet.progress import load_curve
from ratchet.runners.output import LineSplitter, OutputSink


def test_a_bare_carriage_return_ends_a_line() -> None:
    splitter = LineSplitter()
    assert splitter.feed_marked(b"start\n\rstep 1 | loss 2.0") == [("start", False)]
    assert splitter.feed_marked(b"\rstep 2 | loss 1.5\r") == [
        ("step 1 | loss 2.0", True)
    ]  # the \r at the chunk's end may be half of \r\n: it waits
    assert splitter.feed_marked(b"\nwindows\r\nval: 1\n") == [
        ("step 2 | loss 1.5", False),
        ("windows", False),
        ("val: 1", False),
    ]
    assert splitter.feed(b"a\rb\rc") == ["a", "b"] and splitter.flush() == ["c"]


def test_redrawn_lines_reach_the_engine_but_the_log_only_once_a_second(tmp_path: Path) -> None:
    now = [0.0]
    seen: list[str] = []
    sink = OutputSink(tmp_path / "run.log", seen.append, clock=lambda: now[0])
    for step in range(1000):  # a thousand redraws in 10 s, never a \n
        now[0] = step / 100
        sink.feed(f"\rstep {step} | loss {1 / (step + 1):.4f}".encode())
    sink.feed(b"\nval_bpb: 1.0\n")
    sink.close()
    assert len(seen) == 1001 and seen[0].startswith("step 0 |") and seen[-1] == "val_bpb: 1.0"
    logged = (tmp_path / "run.log").read_text().splitlines()
    assert 10 <= len(logged) <= 13, logged  # one a second, the last step and the summary
    assert logged[-2].startswith("step 999 |") and logged[-1] == "val_bpb: 1.0"
    assert list(sink.tail) == logged


TRAIN = textwrap.dedent(
    """\
    import sys, time
    LR = 0.5
    for step in range(40):
        print(f"\\rstep {step:05d} | loss: {2.0 - step / 40:.4f}", end="", flush=True)
        time.sleep(0.05)
    print()
    print("---")
    print(f"score: {(LR - 0.3) ** 2:.6f}")
    """
)


def test_a_training_script_that_redraws_its_step_line_shows_progress_live(
    make_project: MakeProject,
) -> None:
    config = '[loop]\neditable = "train.py"\ncommand = "{python} train.py"\nbudget = "20s"\n'
    config += '[metric]\nname = "score"\nprogress = "loss"\n[judge]\nbaseline_runs = 1\n'
    root = make_project(train=TRAIN, config=config)
    engine = engine_for(root, agent=None, tag="cr")  # type: ignore[arg-type]
    events = asyncio.run(run(engine, 1))
    assert statuses(engine) == ["kept"]
    lines = [e for e in events if isinstance(e, OutputLine) and e.line.startswith("step ")]
    assert len(lines) == 40, [e.line for e in lines]
    # Live: the steps arrived over the run, not all at its end.
    assert lines[-1].elapsed_s - lines[0].elapsed_s > 1.0
    curve = load_curve(engine.data / "curves", 0)
    assert len(curve) == 40 and curve[0][1] == 2.0 and curve[-1][1] < curve[0][1]
    log = (engine.data / "logs" / "0.log").read_text().splitlines()
    assert len(log) < 20 and log[-1] == "score: 0.040000"
