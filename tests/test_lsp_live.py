"""`ratchet serve` while experiments run: work-done progress and its cancel, the review gate,
and files changing under the loop (a locked file, ratchet.toml)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import CONFIG, TRAIN, MakeProject
from lsp_helpers import Editor, start_editor, stop_editor, stop_loops
from lsprotocol import types
from pygls.exceptions import JsonRpcException

# The baseline is quick; every changed version prints a line every 20 ms for ~8 s.
SLOW = TRAIN.replace(
    'print("training...")\n',
    textwrap.dedent(
        """\
        import time
        print("training...")
        steps = 1 if (LR, WIDTH) == (0.5, 8) else 400
        for step in range(steps):
            print(f"step {step} loss {score + 1 / (step + 1):.4f}", flush=True)
            time.sleep(0.02)
        """
    ),
)


REVIEWED = CONFIG.replace('budget = "10s"', 'budget = "10s"\nreview = "propose"')


@pytest.fixture
async def editor(
    make_project: MakeProject, request: pytest.FixtureRequest
) -> AsyncIterator[Editor]:
    """A server on a project; parametrize indirectly to change its files (default: SLOW)."""
    root = make_project(**getattr(request, "param", {"train": SLOW}))
    editor = await start_editor(root)
    yield editor
    await stop_editor(editor)
    stop_loops(root)


def bar_of(editor: Editor, experiment: int) -> list[object] | None:
    for token, values in editor.client.progress_reports.items():
        if str(token).startswith(f"ratchet/exp/{experiment}/"):
            return values
    return None


def token_of(editor: Editor, experiment: int) -> str:
    return next(
        str(t)
        for t in editor.client.progress_reports
        if str(t).startswith(f"ratchet/exp/{experiment}/")
    )


async def test_progress_reports_and_cancel_interrupts_the_experiment(editor: Editor) -> None:
    await editor.command("ratchet.start")
    reports = await editor.wait(
        lambda: [v for v in bar_of(editor, 1) or [] if isinstance(v, types.WorkDoneProgressReport)][
            2:
        ],
        "three progress reports of exp 1",
    )
    begin = bar_of(editor, 1)[0]  # type: ignore[index]
    assert isinstance(begin, types.WorkDoneProgressBegin)
    assert begin.title == "Ratchet: experiment 1" and begin.cancellable and begin.percentage == 0
    for report in reports:
        assert report.message and report.message.startswith("step ")  # its last line
        assert report.percentage is not None and 0 <= report.percentage <= 100
    assert [r.percentage for r in reports] == sorted(r.percentage for r in reports)

    # Throttled: at most four reports a second (and some), though the run prints fifty lines
    # a second. Two seconds, so a loaded machine's late report still lands in the window.
    before = len(bar_of(editor, 1) or [])
    await asyncio.sleep(2.0)
    during = len(bar_of(editor, 1) or []) - before
    assert 1 <= during <= 9, during

    # The status bar: the running experiment with elapsed and budget.
    running = await editor.wait(
        lambda: editor.statuses[-1]["running"], "a status with the running experiment"
    )
    assert running[0]["id"] == 1 and running[0]["budget"] == 10.0
    assert running[0]["lastLine"].startswith("step ")

    # Pause: the running experiment goes on; nothing new starts until resume.
    assert (await editor.command("ratchet.pause"))["state"] == "paused"
    await editor.wait_state("paused")
    lines = len(bar_of(editor, 1) or [])
    await editor.wait(lambda: len(bar_of(editor, 1) or []) > lines, "reports while paused")
    assert (await editor.command("ratchet.resume"))["state"] == "running"
    await editor.wait_state("running")

    # Cancel from the client: the experiment stops and is recorded cancelled (not run again).
    editor.client.window_work_done_progress_cancel(
        types.WorkDoneProgressCancelParams(token=token_of(editor, 1))
    )
    end = await editor.wait(
        lambda: [v for v in bar_of(editor, 1) or [] if isinstance(v, types.WorkDoneProgressEnd)],
        "the end of exp 1's progress",
        timeout=10,
    )
    assert end[0].message and end[0].message.startswith("exp 1 cancelled:")
    rows = await editor.command("ratchet.experiments")
    assert rows[1]["status"] == "cancelled" and rows[1]["run_s"] < 6
    # The loop goes on with the next proposal; ratchet.stopExperiment stops one by number.
    await editor.wait(lambda: bar_of(editor, 2), "exp 2 to start")
    with pytest.raises(JsonRpcException) as caught:
        await editor.command("ratchet.stopExperiment", 99)
    assert caught.value.message == "experiment 99 is not running"
    assert (await editor.command("ratchet.stopExperiment", 2))["stopped"] is True
    await editor.wait(
        lambda: any(r["id"] == 2 and r["status"] == "cancelled" for r in editor.rows),
        "exp 2 cancelled",
    )
    assert editor.status()["loop"]["attached"]  # the loop itself goes on
    assert (await editor.command("ratchet.stop"))["state"] == "idle"
    await editor.wait_state("idle")
    end2 = [v for v in bar_of(editor, 2) or [] if isinstance(v, types.WorkDoneProgressEnd)]
    assert end2 and end2[0].message and "cancelled" in end2[0].message


@pytest.mark.parametrize("editor", [{"config": REVIEWED}], indirect=True)
async def test_the_review_gate_goes_live_without_stopping_the_loop(editor: Editor) -> None:
    await editor.command("ratchet.start")
    status = await editor.wait_state("awaiting_review")
    pid = status["loop"]["pid"]
    # The editor's setting turns the gate off: the waiting proposal is still decided by
    # hand, the next ones run unattended, and it is the same loop (no restart).
    editor.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ratchet": {"reviewGate": "auto"}})
    )
    await asyncio.sleep(0.3)
    # Those proposed before the change wait as they were proposed; accept them.
    accepted = []
    deadline = asyncio.get_running_loop().time() + 20
    while editor.statuses[-1]["total"] < 5:
        for number in editor.statuses[-1]["awaitingReview"]:
            if number not in accepted:
                accepted.append(number)
                await editor.command("ratchet.accept", number)
        assert asyncio.get_running_loop().time() < deadline, editor.statuses[-1]
        await asyncio.sleep(0.05)
    assert accepted and max(accepted) <= 2, accepted  # none asked after the change
    assert editor.status()["loop"] == {"pid": pid, "attached": True}
    rows = await editor.command("ratchet.experiments")
    assert all(r["status"] != "rejected" for r in rows)
    await editor.command("ratchet.stop")


@pytest.mark.parametrize("editor", [{"config": REVIEWED}], indirect=True)
async def test_the_review_gate(editor: Editor) -> None:
    editor.open("train.py")
    await editor.command("ratchet.start")
    status = await editor.wait_state("awaiting_review")
    assert status["awaitingReview"] == [1]

    # The proposal is a warning on the lines it would change, in one line of words.
    proposal = await editor.wait(
        lambda: [d for d in editor.diagnostics("train.py") if d.code == "proposed"],
        "the proposal diagnostic",
    )
    diagnostic = proposal[0]  # one per changed block of lines
    assert all(d.data["experiment"] == 1 for d in proposal)
    assert diagnostic.message.startswith("exp 1 proposed: ")
    assert diagnostic.message.endswith("waiting for review: accept to run it, or reject")
    assert "\n" not in diagnostic.message
    line = TRAIN.splitlines()[diagnostic.range.start.line]
    assert line.startswith(("LR = ", "WIDTH = "))

    # Over it, code lenses any client shows; its new text as ghost text (an inlay hint).
    lenses = await editor.code_lenses("train.py")
    assert [(lens.command.title, lens.command.command) for lens in lenses] == [
        ("Accept & Run exp 1", "ratchet.accept"),
        ("Reject", "ratchet.reject"),
        ("Open diff", "ratchet.openDiff"),
    ]
    assert [next(iter(lens.command.arguments)) for lens in lenses[:2]] == [1, 1]
    diff_payload = next(iter(lenses[2].command.arguments))  # what the code action carries
    assert diff_payload["experiment"] == 1 and diff_payload["left"] != diff_payload["right"]
    assert {lens.range.start.line for lens in lenses} == {diagnostic.range.start.line}
    assert "codeLens" in editor.refreshes and "inlayHint" in editor.refreshes
    (ghost,) = [h for h in await editor.inlay_hints("train.py") if h.data["kind"] == "proposal"]
    full = await editor.command("ratchet.diffText", "ratchet:/exp/1.diff")
    assert full["text"].startswith("--- a/train.py")
    added = [t[1:] for t in full["text"].splitlines() if t.startswith("+") and t[1:2] != "+"]
    assert ghost.label == "→ " + added[0].strip()
    assert ghost.position == types.Position(diagnostic.range.start.line, len(line))

    actions = {
        a.title: a for a in await editor.code_actions("train.py", diagnostic.range.start.line)
    }
    accept = actions["Accept & run experiment 1"]
    assert accept.is_preferred and accept.command and accept.command.command == "ratchet.accept"
    reject = actions["Reject experiment 1"]
    assert reject.command and list(reject.command.arguments or []) == [1]
    diff = actions["Open diff of experiment 1"].command
    assert diff and diff.arguments and diff.arguments[0]["left"] != diff.arguments[0]["right"]

    # Nothing ran while it waited.
    rows = await editor.command("ratchet.experiments")
    assert [r["status"] for r in rows] == ["kept", "awaiting_review"]

    # Reject (the code action's command): recorded rejected; the next proposal waits.
    assert (await editor.command("ratchet.reject", *reject.command.arguments))["accepted"] is False
    await editor.wait(
        lambda: editor.statuses[-1]["awaitingReview"] == [2], "the next proposal to wait"
    )
    rows = await editor.command("ratchet.experiments")
    assert rows[1]["status"] == "rejected" and rows[1]["run_s"] == 0

    # A proposal already decided cannot be decided again.
    with pytest.raises(JsonRpcException) as caught:
        await editor.command("ratchet.accept", 1)
    assert caught.value.message == "experiment 1 is not waiting for review"

    # Accept (no argument: the one waiting): it runs and is judged.
    assert (await editor.command("ratchet.accept"))["experiment"] == 2
    await editor.wait(
        lambda: editor.statuses[-1]["awaitingReview"] == [3], "exp 2 judged, exp 3 waiting"
    )
    rows = await editor.command("ratchet.experiments")
    assert rows[2]["status"] in ("kept", "discarded") and rows[2]["metric"] is not None
    await editor.command("ratchet.stop")
    rows = await editor.command("ratchet.experiments")
    assert rows[3]["status"] == "rejected"  # stopped before review
    await editor.wait(
        lambda: not [d for d in editor.diagnostics("train.py") if d.code == "proposed"],
        "the proposal diagnostic gone",
    )


async def test_a_locked_file_changed_pauses_the_loop(editor: Editor) -> None:
    root = editor.root
    await editor.command("ratchet.start")
    await editor.wait(lambda: bar_of(editor, 1), "exp 1 running")

    # ratchet.toml edited mid-loop: checked at once; the loop's rules stay pinned.
    config = (root / "ratchet.toml").read_text()
    (root / "ratchet.toml").write_text(config.replace('budget = "10s"', 'budget = "12s"'))
    await editor.wait(
        lambda: any("changes the rules" in m.message for m in editor.client.messages),
        "the pinned-rules warning",
    )
    (root / "ratchet.toml").write_text(config.replace('budget = "10s"', "budget = 10s"))
    await editor.wait(lambda: editor.diagnostics("ratchet.toml"), "the mistake reported")
    assert editor.diagnostics("ratchet.toml")[0].range.start.line == config.splitlines().index(
        'budget = "10s"'
    )
    (root / "ratchet.toml").write_text(config)
    await editor.wait(lambda: not editor.diagnostics("ratchet.toml"), "the mistake cleared")

    # program.md: the agent re-reads it before each proposal; the server says so.
    (root / "program.md").write_text("Make the score lower, gently.\n")
    await editor.wait(
        lambda: any("program.md changed" in m.message for m in editor.client.log_messages),
        "the program.md notice",
    )

    # A locked file changed by anyone: an error on it, a message, and the loop pauses.
    (root / "prepare.py").write_text("# locked: tampered with\n")
    status = await editor.wait_state("paused")
    assert status["lockedChanged"] == ["prepare.py"]
    (diagnostic,) = await editor.wait(
        lambda: editor.diagnostics("prepare.py"), "the diagnostic on prepare.py"
    )
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert "prepare.py is locked, and it changed on disk" in diagnostic.message
    assert any(
        m.type == types.MessageType.Error and "prepare.py is locked" in m.message
        for m in editor.client.messages
    )
    # Put back as it was: the error goes; the loop stays paused until the user resumes.
    (root / "prepare.py").write_text("# locked: the data and the evaluation\n")
    await editor.wait(lambda: not editor.diagnostics("prepare.py"), "the error cleared")
    assert editor.status()["state"] == "paused"
    await editor.command("ratchet.resume")
    await editor.wait_state("running")
    await editor.command("ratchet.stop")
    assert Path(root / "train.py").read_text() == SLOW  # the user's file never written


@pytest.mark.parametrize("editor", [{"config": REVIEWED}], indirect=True)
async def test_a_hand_edit_runs_after_a_loop_stopped_while_awaiting_review(
    editor: Editor,
) -> None:
    await editor.command("ratchet.start")
    await editor.wait_state("awaiting_review")
    assert (await editor.command("ratchet.stop"))["state"] == "idle"
    await editor.wait_state("idle")
    before = editor.statuses[-1]["total"]
    text = (editor.root / "train.py").read_text().replace("LR = 0.5", "LR = 0.3")
    text = text.replace("WIDTH = 8", "WIDTH = 12")
    editor.open("train.py", text)
    await editor.command("ratchet.runBuffer", "the best by hand")
    await editor.wait(
        lambda: editor.statuses[-1]["total"] > before and editor.statuses[-1]["best"] == 0,
        "the hand edit kept",
        timeout=60,
    )
