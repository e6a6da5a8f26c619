"""`ratchet report`: a real loop's report opened in headless Chromium; a 10,000-experiment
ledger reported in seconds and in a few MB; never over a file the user's git tracks."""

from __future__ import annotations

import re
import shutil
import textwrap
import time
from pathlib import Path

import pytest
from conftest import MakeProject, commit_all
from loops import engine_for, run
from ratchet.cli import main
from ratchet.ledger import Ledger
from ratchet.report import summarise
from ratchet.report_html import render_html
from ratchet.report_md import render_md
from reports import dump_dom, screenshot, synthetic_ledger

# A noisy metric, and a crash when the agent makes WIDTH small: a loop with all the parts.
NOISY_TRAIN = textwrap.dedent(
    """\
    import random
    LR = 0.5

    # Separate lines merge cleanly when a pipelined proposal lands on a newer best.

    WIDTH = 8
    if WIDTH < 7:
        raise ValueError(f"WIDTH {WIDTH} is too small for the model")
    score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100 + random.gauss(0, 0.002)
    print(f"score: {score:.6f}")
    """
)

CONFIG = textwrap.dedent(
    """\
    [loop]
    editable = "train.py"
    locked = ["prepare.py"]
    command = "{python} train.py"
    budget = "10s"
    pipeline = false

    [metric]
    name = "score"
    goal = "minimize"

    [judge]
    baseline_runs = 3
    max_runs = 2

    [agent]
    kind = "mutate"
    seed = 3
    """
)


@pytest.fixture
def loop_project(make_project: MakeProject) -> Path:
    return make_project(train=NOISY_TRAIN, config=CONFIG)


async def _run_loop(root: Path, n: int = 14) -> Ledger:
    engine = engine_for(root)
    engine.add_note("try a wider model first")
    await run(engine, n)
    return Ledger(root / ".ratchet")


async def test_report_of_a_real_loop_opens_in_chromium(loop_project: Path, tmp_path: Path) -> None:
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("needs Chromium (scripts/install-vscode-deps.sh installs it)")
    ledger = await _run_loop(loop_project)
    summary = summarise(ledger, "t")
    assert summary.keeps, "the loop should have kept something to report"
    assert main(["-C", str(loop_project), "report"]) == 0
    page = loop_project / ".ratchet" / "report.html"
    html = page.read_text(encoding="utf-8")
    # Self-contained: nothing fetched, no script.
    assert not re.search(r"<script|<link|src=\"http|href=\"http|@import", html)
    dom = dump_dom(page)
    assert "<svg" in dom and 'class="kept"' in dom and 'class="best"' in dom
    for keep in summary.keeps:
        assert f"exp {keep.experiment.id}</b>" in dom
        assert keep.experiment.diff.splitlines()[-1].strip()[:20] in html
    assert "try a wider model first" in dom
    assert "bwrap" in dom  # whether runs were sandboxed, as the experiments recorded it
    if summary.crashes:
        assert "too small for the model" in dom
    image = screenshot(page, tmp_path / "report.png")
    assert image.stat().st_size > 20_000  # a drawn page, not a blank one


async def test_markdown_report_for_a_pull_request(loop_project: Path) -> None:
    await _run_loop(loop_project, 8)
    out = loop_project / "pr.md"
    assert main(["-C", str(loop_project), "report", "-o", str(out)]) == 0  # .md: Markdown
    text = out.read_text(encoding="utf-8")
    assert text.startswith("## Ratchet loop `t`: score")
    assert "| kept |" in text and "```diff" in text


async def test_report_never_overwrites_a_tracked_file(
    loop_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _run_loop(loop_project, 3)
    mine = loop_project / "report.html"
    mine.write_text("my own report\n")
    commit_all(loop_project, "a report of my own")
    assert main(["-C", str(loop_project), "report", "-o", str(mine)]) == 2
    assert mine.read_text() == "my own report\n"
    assert "tracked by git" in capsys.readouterr().err
    assert main(["-C", str(loop_project), "plot", "-o", str(mine)]) == 2
    assert main(["-C", str(loop_project), "plot"]) == 0  # default: .ratchet/progress.png
    assert (loop_project / ".ratchet" / "progress.png").stat().st_size > 1000


def test_a_loop_of_ten_thousand_is_summarised_fast_and_small(tmp_path: Path) -> None:
    ledger = synthetic_ledger(tmp_path / ".ratchet", 10_000)
    started = time.perf_counter()
    summary = summarise(ledger, "big")
    html = render_html(summary)
    markdown = render_md(summary)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"report took {elapsed:.1f}s"
    assert len(html.encode()) < 3_000_000 and len(markdown.encode()) < 1_000_000
    kept = sum(1 for e in ledger.experiments("big") if str(e.status) == "kept") - 1
    assert len(summary.keeps) == kept  # every keep is listed
    assert html.count('<div class="card"><b>exp ') == kept
    assert 0 < len(summary.near_misses) <= 10
    assert {len(group.ids) for group in summary.crashes} and len(summary.crashes) <= 2
    assert "σ (σ " in html  # a keep recorded before the judge wrote its verdict in σ
    assert "gain 2.5σ at its verdict; its runs resolved 1.2σ" in html  # one that did
    assert "gain 2.5σ at its verdict" in markdown


def test_ticks_are_whole_experiments(tmp_path: Path) -> None:
    ledger = synthetic_ledger(tmp_path / ".ratchet", 7, tag="small")
    html = render_html(summarise(ledger, "small"))
    ticks = re.findall(r'text-anchor="middle">([0-9.]+)</text>', html)
    assert ticks and all("." not in tick for tick in ticks)


def test_report_says_what_is_wrong_without_a_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-C", str(tmp_path), "report"]) == 2
    assert "ratchet run" in capsys.readouterr().err
