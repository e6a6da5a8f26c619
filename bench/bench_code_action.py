"""textDocument/codeAction latency of `ratchet serve` while an experiment prints 10,000 lines
a second, on a fresh record or one of 10,000 earlier experiments: a real LSP client
(pytest-lsp's) drives the real server over stdio; the loop runs in its own process.

    python bench/bench_code_action.py [--seconds 15] [--rate 20] [--ledger 10000]

A 300-line editable file gets a few finished experiments first (so the requests carry real
results: apply edits, three-way merges, diff payloads); with `--ledger N`, N more are written
to the ledger and a fresh server opens it. Then one experiment streams 10,000 lines a second
while the client asks for code actions on a changed line, `rate` times a second, and for
`ratchet.status` (what the status tick computes) as often. Goals: codeAction p99 under 50 ms;
the bytes the client receives per finished experiment flat in N (one delta row, never the
whole list). The same is measured on an idle loop for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lsprotocol import types

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lsp_helpers import Editor, start_editor, stop_editor, stop_loops
from ratchet.experiment import Experiment, Status
from ratchet.ledger import Ledger

LINES_PER_SECOND = 10_000

TRAIN = textwrap.dedent(
    """\
    import os
    import sys
    import time

    FLAG = {flag!r}
    LR = 0.5

    WIDTH = 8

    stream_seconds = {seconds}
    lines_per_second = {rate}

    {filler}

    score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100
    if os.path.exists(FLAG):
        start = time.monotonic()
        printed = 0
        while (now := time.monotonic() - start) < stream_seconds:
            due = int(now * lines_per_second)
            if due > printed:
                sys.stdout.write("".join(
                    f"step {{i}} loss {{score + 1 / (i + 1):.6f}} lr {{LR}}\\n"
                    for i in range(printed, due)
                ))
                sys.stdout.flush()
                printed = due
            time.sleep(0.002)
    print(f"score: {{score:.6f}}")
    """
)

CONFIG = textwrap.dedent(
    """\
    [loop]
    editable = "train.py"
    locked = ["prepare.py"]
    command = "{python} train.py"
    budget = "{budget}s"

    [metric]
    name = "score"
    goal = "minimize"

    [judge]
    baseline_runs = 1

    [agent]
    kind = "mutate"
    seed = 0

    [sandbox]
    read = ["{flag_folder}"]  # the flag that starts the stream lies outside the project
    """
)


def filler(lines: int) -> str:
    """Ordinary-looking code, so the file is of a realistic size."""
    out = []
    for n in range(lines // 6):
        out += [
            f"def block_{n}(x):",
            f'    """Step {n} of a made-up pipeline."""',
            f"    y = x * {n + 1} + {n}",
            "    return y - x",
            "",
            "",
        ]
    return "\n".join(out)


def make_project(folder: Path, seconds: float) -> Path:
    root = folder / "project"
    root.mkdir()
    flag = folder / "stream.flag"
    (root / "train.py").write_text(
        TRAIN.format(flag=str(flag), seconds=seconds, rate=LINES_PER_SECOND, filler=filler(270))
    )
    (root / "prepare.py").write_text("# locked\n")
    (root / "program.md").write_text("Make the score lower.\n")
    (root / "ratchet.toml").write_text(
        CONFIG.format(python=sys.executable, budget=int(seconds * 4) + 10, flag_folder=folder)
    )
    git = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    return root


async def sample(editor: Editor, line: int, seconds: float, rate: float) -> tuple[list[float], int]:
    """Code-action round trips (ms) on `line`, `rate` a second for `seconds`; and how many
    actions the last request gave."""
    diagnostics = [d for d in editor.diagnostics("train.py") if d.range.start.line == line]
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=editor.uri("train.py")),
        range=types.Range(types.Position(line, 0), types.Position(line, 0)),
        context=types.CodeActionContext(diagnostics=diagnostics),
    )
    timings = []
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        actions = await editor.client.text_document_code_action_async(params)
        timings.append((time.perf_counter() - started) * 1000)
        assert actions, "no code actions came back"
        count = len(actions)
        await asyncio.sleep(max(0.0, 1 / rate - timings[-1] / 1000))
    return timings, count


def figures(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def count_bytes(editor: Editor) -> Counter[str]:
    """Bytes of each message the client receives, by method (as JSON, the wire's payload)."""
    received: Counter[str] = Counter()
    protocol = editor.client.protocol
    handle = protocol.handle_message

    def counted(message: Any) -> Any:
        method = getattr(message, "method", None) or "response"
        received[method] += len(json.dumps(message, default=protocol._serialize_message))
        return handle(message)

    protocol.handle_message = counted  # type: ignore[method-assign]
    return received


def seed(root: Path, count: int) -> float:
    """`count` more experiments in the ledger, copies of the real ones: 1% kept (on the real
    best's commit), the rest discarded before commit. Returns the seconds it took."""
    started = time.perf_counter()
    ledger = Ledger(root / ".ratchet")
    (tag,) = ledger.tags()
    real = [ledger.get(tag, e.id) for e in ledger.experiments(tag)]
    kept = [e for e in real if e and e.status is Status.KEPT and e.source != "baseline"]
    model = kept[-1] if kept else real[-1]
    assert model is not None
    first = ledger.next_id(tag)
    for number in range(first, first + count):
        copy = Experiment(**{**model.__dict__})
        copy.id = number
        copy.description = f"synthetic {number}: {model.description}"
        if number % 100:
            copy.status, copy.commit, copy.metric = Status.DISCARDED, None, (model.metric or 0) + 1
        ledger.save(copy)
    ledger.close()
    return time.perf_counter() - started


async def round_trips(editor: Editor, seconds: float, rate: float) -> list[float]:
    timings = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        await editor.command("ratchet.status")
        timings.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(max(0.0, 1 / rate - timings[-1] / 1000))
    return timings


async def warm_up(root: Path) -> None:
    """Six real experiments, so the file carries real results."""
    editor = await start_editor(root)
    try:
        await editor.command("ratchet.start", 6)
        await editor.wait(
            lambda: editor.statuses[-1]["state"] == "idle" and editor.statuses[-1]["total"] >= 6,
            "the first experiments",
            timeout=120,
        )
        await editor.wait(lambda: editor.statuses[-1]["loop"] is None, "the loop gone", 30)
    finally:
        await stop_editor(editor)


async def measure(
    root: Path, folder: Path, seconds: float, rate: float, total: int
) -> dict[str, Any]:
    opened = time.perf_counter()
    editor = await start_editor(root)
    try:
        editor.open("train.py")
        await editor.wait(
            lambda: editor.statuses and editor.statuses[-1]["total"] >= total, "the record", 120
        )
        open_s = time.perf_counter() - opened
        hints = await editor.wait_async(
            lambda: editor.inlay_hints("train.py"), lambda found: found, "hints", 60
        )
        lines = Counter(h.position.line for h in hints)
        line = lines.most_common(1)[0][0]
        idle, _ = await sample(editor, line, 3, rate)
        idle_status = await round_trips(editor, 2, rate)

        (folder / "stream.flag").write_text("stream\n")
        received = count_bytes(editor)
        rows_before = len(editor.rows)
        await editor.command("ratchet.proposeOnce")
        running = await editor.wait(
            lambda: (
                editor.statuses[-1]["running"]
                and editor.statuses[-1]["running"][0]["lastLine"].startswith("step ")
                and editor.statuses[-1]["running"]
            ),
            "the streaming experiment",
            timeout=120,
        )
        experiment = running[0]["id"]
        streaming, actions = await asyncio.gather(
            sample(editor, line, seconds, rate), round_trips(editor, seconds, rate / 2)
        )
        (streaming, actions), status_ms = streaming, actions
        still = editor.statuses[-1]["running"]
        await editor.wait(lambda: editor.statuses[-1]["loop"] is None, "the end", 180)
        unfinished = ("proposed", "awaiting_review", "running", "measured")
        finished = sum(1 for r in editor.rows[rows_before:] if r["status"] not in unfinished)
        tag = editor.statuses[-1].get("tag") or Ledger(root / ".ratchet").tags()[-1]
        log = root / ".ratchet" / "loops" / tag / "logs" / f"{experiment}.log"
        printed = sum(1 for text in log.read_text().splitlines() if text.startswith("step "))
        row = await editor.command("ratchet.experiment", experiment)
    finally:
        await stop_editor(editor)
        stop_loops(root)
    return {
        "open_s": round(open_s, 2),
        "streaming": figures(streaming),
        "idle": figures(idle),
        "status_while_streaming": figures(status_ms),
        "status_idle": figures(idle_status),
        "lines_per_second": round(printed / max(row["run_s"], 1e-9)),
        "experiment_still_running_at_end_of_sampling": bool(still),
        "actions_per_request": actions,
        "experiment_rows_received": finished,
        "bytes_received_by_method": dict(received),
        "delta_bytes_per_finished_experiment": round(
            received["ratchet/experiment"] / max(1, finished)
        ),
    }


async def bench(seconds: float, rate: float, ledger: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-lsp-") as scratch:
        folder = Path(scratch)
        root = make_project(folder, seconds + 3)
        try:
            await warm_up(root)
            seeded = seed(root, ledger) if ledger else 0.0
            result = await measure(root, folder, seconds, rate, 6 + ledger)
        finally:
            stop_loops(root)
    return {"ledger": ledger, "seed_s": round(seeded, 1), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="sampling while streaming")
    parser.add_argument("--rate", type=float, default=20.0, help="code action requests a second")
    parser.add_argument("--ledger", type=int, default=0, help="earlier experiments to add")
    args = parser.parse_args()
    result = asyncio.run(bench(args.seconds, args.rate, args.ledger))
    print(json.dumps(result, indent=1))
    streaming = result["streaming"]
    status = result["status_while_streaming"]
    assert isinstance(streaming, dict) and isinstance(status, dict)
    print(
        f"{args.ledger} earlier experiments; codeAction while printing "
        f"{result['lines_per_second']} lines/s: p50 {streaming['p50_ms']} ms, p99 "
        f"{streaming['p99_ms']} ms (goal p99 < 50 ms: "
        f"{'met' if streaming['p99_ms'] < 50 else 'NOT met'}); ratchet.status p99 "
        f"{status['p99_ms']} ms; {result['delta_bytes_per_finished_experiment']} bytes of "
        "ratchet/experiment per finished experiment"
    )


if __name__ == "__main__":
    main()
