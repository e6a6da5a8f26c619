"""A broken run is not evidence: when the locked evaluator fails on a candidate and on the best
run beside it, the harness is at fault, not the edit; when only the candidate fails it, the edit
is (its own crash, handed to the repair agent)."""

from __future__ import annotations

import http.server
import socket
from pathlib import Path

import pytest
from agents import ScriptedAgent, replace
from conftest import CONFIG, MakeProject, needs_sandbox
from loopback_http import LoopbackHTTP
from loops import engine_for, run
from ratchet.events import Event, ExperimentFinished
from ratchet.experiment import Status

EVALUATOR = """\
import pathlib, re, sys
source = open("train.py").read()
if pathlib.Path({down!r}).exists():
    sys.exit("evaluator: its data store does not answer")
if "BROKEN" in source:
    sys.exit("evaluator: cannot read this program's answer")
lr = float(re.search(r"LR = ([0-9.]+)", source).group(1))
print("score:", abs(lr - 0.3))
"""


def evaluated_project(make_project: MakeProject, store: Path) -> Path:
    store.mkdir()
    config = CONFIG.replace('name = "score"', 'name = "score"\neval = "{python} evaluate.py"')
    config = config.replace('["prepare.py"]', '["prepare.py", "evaluate.py"]')
    config = config.replace("[agent]", f'[sandbox]\nread = ["{store}"]\n\n[agent]')
    return make_project(
        config=config,
        extra={"evaluate.py": EVALUATOR.format(down=str(store / "down"))},
        train="LR = 0.5\nprint('training')\n",
    )


async def test_an_evaluator_that_fails_on_the_best_too_charges_nothing_to_the_edit(
    make_project: MakeProject, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    root = evaluated_project(make_project, store)
    agent = ScriptedAgent([(replace("LR = 0.5", "LR = 0.35"), "a real gain")])
    engine = engine_for(root, agent)

    def outage_after_the_baseline(event: Event) -> None:
        if isinstance(event, ExperimentFinished) and event.experiment.id == 0:
            (store / "down").touch()

    engine.bus.subscribe(outage_after_the_baseline)
    await run(engine, 3)
    experiments = engine.ledger.experiments("t")
    gain = [e for e in experiments if e.description == "a real gain"]
    assert gain and all(e.status is Status.LOST for e in gain), [(e.status, e.reason) for e in gain]
    assert "the evaluator failed on the best (exp 0) too" in gain[0].reason
    assert len(gain) == 2 and gain[1].rerun_of == gain[0].id  # measured again, once
    assert not [e for e in experiments if e.status in (Status.CRASHED, Status.TIMEOUT)]
    assert not [c for c in agent.contexts if c.repair_of is not None]  # nothing to repair
    # The best's runs beside it are recorded as failed control runs, not as its measurements.
    controls = engine.ledger.runs("t", 0, controls=True)
    assert [r["metric"] for r in controls if r["beside"] == gain[0].id] == [None]


async def test_an_evaluator_that_fails_only_on_the_edit_is_the_edit_s_crash(
    make_project: MakeProject, tmp_path: Path
) -> None:
    root = evaluated_project(make_project, tmp_path / "store")
    agent = ScriptedAgent([(replace("LR = 0.5", "LR = 0.35  # BROKEN"), "breaks its answer")])
    engine = engine_for(root, agent)
    await run(engine, 2)
    baseline, broken = engine.ledger.experiments("t")[:2]
    assert broken.status is Status.CRASHED and "cannot read this program" in broken.log_tail
    assert [c.repair_of.broken_text for c in agent.contexts if c.repair_of] == [
        "LR = 0.35  # BROKEN\nprint('training')\n"
    ]
    # The best, run beside it, evaluated: recorded as a control with its number.
    beside = [r["metric"] for r in engine.ledger.runs("t", 0, controls=True) if r["beside"]]
    assert beside and beside == pytest.approx([baseline.metric] * len(beside))


class Host:
    """A declared host on loopback (plain HTTP, so the proxy can read its answers): it serves
    `/score?lr=X` with 200, except once with 503 for each `lr` in `fail_once`, and `/boom`
    with 500 always (a request the edit can choose to make)."""

    def __init__(self, fail_once: set[str]) -> None:
        self.fail_once = set(fail_once)
        self.asked: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.asked.append(self.path)
                lr = self.path.partition("lr=")[2]
                status = 500 if self.path == "/boom" else 200
                if lr in host.fail_once:
                    host.fail_once.discard(lr)
                    status = 503
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.http = LoopbackHTTP(Handler)
        self.port = self.http.port

    def __enter__(self) -> Host:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.stop()


CALLER = """\
import urllib.request

LR = 0.5

# Separate lines merge cleanly when a pipelined proposal lands on a newer best.

URL = "http://127.0.0.1:{port}/score?lr=" + str(LR)
urllib.request.urlopen(URL, timeout=10).read()
print("score:", abs(LR - 0.3))
"""


@needs_sandbox
async def test_a_run_that_fails_while_its_declared_host_fails_is_measured_again_not_charged(
    make_project: MakeProject, tmp_path: Path
) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    down = free.getsockname()[1]  # a declared host nobody serves
    free.close()
    with Host(fail_once={"0.35", "0.45"}) as host:
        config = CONFIG.replace(
            "[agent]",
            f'[sandbox]\nhosts = ["127.0.0.1:{host.port}", "127.0.0.1:{down}"]\n\n[agent]',
        )
        root = make_project(config=config, train=CALLER.format(port=host.port))
        agent = ScriptedAgent(
            [
                (replace("LR = 0.5", "LR = 0.35"), "a real gain, its host throttled once"),
                (replace(f'{host.port}/score?lr=" + str(LR)', f'{host.port}/boom"'), "boom"),
                (replace(f":{host.port}/", f":{down}/"), "asks a host that is down"),
                (replace("import urllib.request", "raise SystemExit(3)"), "its own crash"),
                (retries_then_fails, "retries past a 503, then fails on its own"),
            ]
        )
        engine = engine_for(root, agent)
        await run(engine, 8)
    rows = engine.ledger.experiments("t")
    said = [(e.id, e.description, e.status, e.rerun_of, e.reason) for e in rows]
    gain = [e for e in rows if e.description.startswith("a real gain")]
    assert [e.status for e in gain] == [Status.LOST, Status.KEPT], said
    assert "the declared host 127.0.0.1" in gain[0].reason and "answered 503" in gain[0].reason
    assert gain[1].rerun_of == gain[0].id
    # An edit that makes its host fail on purpose buys one draw, not more: lost, then charged.
    boom = [e for e in rows if e.description == "boom"]
    assert [e.status for e in boom] == [Status.LOST, Status.CRASHED], said
    assert "answered 500" in boom[0].reason and "charged to it" in boom[1].reason
    down_rows = [e for e in rows if e.description == "asks a host that is down"]
    assert [e.status for e in down_rows] == [Status.LOST, Status.CRASHED], said
    assert "could not be reached" in down_rows[0].reason
    # A 503 the run got past (its host's last word was 200) excuses nothing.
    retried = [e for e in rows if e.description.startswith("retries past a 503")]
    assert [e.status for e in retried] == [Status.CRASHED], said
    assert host.asked.count("/score?lr=0.45") == 2
    # A failure of the edit's own, its hosts well, is its crash, for the repair agent.
    own = [e for e in rows if e.description == "its own crash"]
    assert own and own[0].status is Status.CRASHED, said
    # Only what was charged went to the repair agent: never a run its host failed first.
    repaired = [c.repair_of.broken_text for c in agent.contexts if c.repair_of]
    charged = [e for e in rows if e.status is Status.CRASHED]
    assert len(repaired) == len(charged) and any("SystemExit(3)" in t for t in repaired)
    assert "/boom" in host.asked


def retries_then_fails(text: str) -> str:
    """LR 0.45 (its host answers 503 once), asked again after a failure, then exit 4."""
    call = "urllib.request.urlopen(URL, timeout=10).read()\n"
    again = f"try:\n    {call}except Exception:\n    {call}raise SystemExit(4)\n"
    return replace(call, again)(replace("LR = 0.35", "LR = 0.45")(text))
