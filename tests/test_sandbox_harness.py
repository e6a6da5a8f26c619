"""examples/harness through the real loop: a task agent on the anthropic SDK, its harness the
editable file, against the example's own offline stand-in (examples/harness/standin.py),
declared as the one reachable host. The run gets the task's own key and nothing else; every
other address stays shut. The proposer is Ratchet's `anthropic` agent, answered by the
stand-in's scripted edits: the real improvements are kept, and the keep that learnt the dev
answers by heart is shown falling on the holdout."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from agents import ScriptedAgent
from conftest import git
from ratchet.config import load_config
from ratchet.engine import Engine
from ratchet.experiment import Status
from ratchet.report import summarise
from ratchet.report_html import render_html
from ratchet.report_md import render_md
from ratchet.runners.sandbox import find_bwrap, probe
from test_sandbox_attacks import SENTINEL, Listener

pytestmark = pytest.mark.skipif(
    probe(find_bwrap()) is not None, reason="no bubblewrap sandbox can start here"
)
pytest.importorskip("anthropic")

EXAMPLE = Path(__file__).parent.parent / "examples" / "harness"
TASK_KEY = "task-key-0123456789"
PROPOSER_KEY = "proposer-key-9876543210"


def load_standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("harness_standin", EXAMPLE / "standin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


standin = load_standin()


def project(tmp_path: Path, port: int, agent: str = "anthropic") -> Path:
    """The example in a fresh repository, its one host the stand-in's loopback port (as the
    README says to set it), one baseline run (the stand-in is deterministic)."""
    folder = tmp_path / "harness"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    toml = folder / "ratchet.toml"
    text = toml.read_text()
    assert 'hosts = ["api.anthropic.com:443"]' in text and "# offline" in text
    toml.write_text(
        text.replace("python ", f"{sys.executable} ")
        .replace('"api.anthropic.com:443"', f'"127.0.0.1:{port}"')
        .replace('kind = "anthropic"', f'kind = "{agent}"')
        .replace("[agent]", "[judge]\nbaseline_runs = 1\n\n[agent]")
    )
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "example")
    return folder


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def escape(port: int) -> tuple[Any, str]:
    """The edited harness tries another loopback port and the proposer's key."""
    code = (
        "\nimport os, socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), 2)\n"
        "    print('ATTACK-OK reached another port')\n"
        "except OSError as error:\n"
        "    print('other port:', error)\n"
        "if os.environ.get('ANTHROPIC_API_KEY'):\n"
        "    print('ATTACK-OK the proposer key')\n"
    )
    return (lambda source: source.replace("import sys\n", "import sys\n" + code, 1), "reach out")


async def test_a_harness_run_reaches_only_its_declared_host_with_its_own_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = Listener()
    with standin.StandIn() as api:
        folder = project(tmp_path, _port(api.base_url), agent="mutate")
        monkeypatch.setenv("TASK_API_KEY", TASK_KEY)
        monkeypatch.setenv("TASK_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL)
        engine = Engine(load_config(folder), tag="h", agent=ScriptedAgent([escape(listener.port)]))
        await engine.run(max_experiments=2)
        await engine.close()
    baseline, attack = engine.ledger.experiments("h")
    assert baseline.metric == pytest.approx(4 / 60, abs=1e-6), baseline.reason
    assert attack.status is Status.DISCARDED
    logs = "".join(
        p.read_text() for p in (folder / ".ratchet" / "loops" / "h" / "logs").glob("*.log")
    )
    assert "ATTACK-OK" not in logs and "other port:" in logs
    assert listener.connections == 0
    assert api.requests and {r.api_key for r in api.requests} == {TASK_KEY}


@pytest.mark.slow  # six experiments and eleven evaluations, each importing the SDK
async def test_the_harness_loop_keeps_real_improvements_and_flags_a_memorised_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with standin.StandIn(proposer_key=PROPOSER_KEY) as api:
        folder = project(tmp_path, _port(api.base_url))
        monkeypatch.setenv("TASK_API_KEY", TASK_KEY)
        monkeypatch.setenv("TASK_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PROPOSER_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        engine = Engine(load_config(folder), tag="h")  # the `anthropic` agent of ratchet.toml
        await engine.run(max_experiments=6)
        await engine.close()
    experiments = engine.ledger.experiments("h")
    described = [(e.description, e.status) for e in experiments]
    assert described == [
        ("baseline", Status.KEPT),
        ("give the model a calculator tool and run its calls", Status.KEPT),
        ("raise max_tokens 512 -> 1024", Status.DISCARDED),  # the no-op
        ("format rule: write dates as YYYY-MM-DD", Status.KEPT),
        ("unit rule: exact conversion factors in the prompt", Status.KEPT),
        ("a table of reference answers in the system prompt", Status.KEPT),  # wins dev
    ], [e.reason for e in experiments]
    # Dev and the holdout rise together with each real improvement; the table of dev answers
    # lifts dev to 1 and drops the holdout (the model copies listed answers on new questions).
    dev = [round(e.metric or 0, 4) for e in experiments]
    held = [None if e.holdout is None else round(e.holdout, 4) for e in experiments]
    assert dev == [0.0667, 0.3167, 0.3167, 0.6167, 0.9, 1.0]
    assert held == [0.1, 0.2667, None, 0.5667, 0.9, 0.4]

    # The report, built by the real report code, shows dev and holdout per keep and marks the
    # memorising keep as falling on the holdout, and that one only.
    summary = summarise(engine.ledger, "h")
    fell = [k.experiment.id for k in summary.keeps if summary.holdout_fell(k)]
    assert [k.experiment.id for k in summary.keeps] == [1, 3, 4, 5] and fell == [5]
    markdown = render_md(summary)
    keeps = [line for line in markdown.splitlines() if line.startswith("- **exp")]
    assert len(keeps) == 4 and all("holdout" in line for line in keeps)
    assert "accuracy 0.9 → 1" in keeps[3] and "holdout 0.9 → 0.4" in keeps[3]
    assert "fell beyond its noise" in keeps[3]
    assert not any("fell beyond" in line for line in keeps[:3])
    assert render_html(summary).count('class="holdout-fell"') == 1

    # The proposer (its own key) was shown the failing cases' traces, never a held-out case.
    proposer = [r for r in api.requests if r.role == "proposer"]
    task = [r for r in api.requests if r.role == "task"]
    assert len(proposer) == 5 and {r.api_key for r in proposer} == {PROPOSER_KEY}
    assert task and {r.api_key for r in task} == {TASK_KEY}
    prompts = [standin.text_of(r.body["messages"][0]["content"]) for r in proposer]
    assert "expected " not in prompts[0]  # the first is proposed while the baseline runs
    assert all("expected " in text and "transcript:\nmodel: " in text for text in prompts[1:])
    shown = [json.dumps(r.body) for r in proposer]
    held_out = [json.loads(line) for line in (EXAMPLE / "holdout.jsonl").read_text().splitlines()]
    for case in held_out:
        assert not any(json.dumps(case["question"])[1:-1] in text for text in shown)
