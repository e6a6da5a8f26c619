"""`ratchet serve` end to end: a real LSP client, the real server as a subprocess, a real git
repository with a tiny experiment and the mutate agent. Results, diagnostics, code actions
and their edits, apply / revert / runBuffer / proposeOnce, ratchet.toml mistakes, and every
bad argument answered with a plain error."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CONFIG, TRAIN, MakeProject
from lsp_helpers import Editor, expected_head, start_editor, stop_editor, stop_loops
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from ratchet.ledger import Ledger
from ratchet.lsp.textops import parse_blocks

CONTRACT = {
    "ratchet.start",
    "ratchet.stop",
    "ratchet.pause",
    "ratchet.resume",
    "ratchet.proposeOnce",
    "ratchet.accept",
    "ratchet.reject",
    "ratchet.apply",
    "ratchet.revert",
    "ratchet.runBuffer",
    "ratchet.note",
    "ratchet.experiments",
    "ratchet.status",
    "ratchet.stopExperiment",
    "ratchet.report",
    "ratchet.finalize",
}

OpenEditor = Callable[[Path], Awaitable[Editor]]


@pytest.fixture
async def editors() -> AsyncIterator[OpenEditor]:
    started: list[Editor] = []

    async def open_editor(root: Path) -> Editor:
        editor = await start_editor(root)
        started.append(editor)
        return editor

    yield open_editor
    for editor in started:
        await stop_editor(editor)
    for editor in started:
        stop_loops(editor.root)


async def failure(editor: Editor, command: str, *arguments: Any) -> JsonRpcException:
    with pytest.raises(JsonRpcException) as caught:
        await editor.command(command, *arguments)
    return caught.value


def line_of(text: str, content: str) -> int:
    return text.splitlines().index(content)


async def run_loop(editor: Editor, total: int) -> list[dict[str, Any]]:
    await editor.command("ratchet.start", total)
    await editor.wait(
        lambda: editor.statuses[-1]["state"] == "idle" and editor.statuses[-1]["total"] >= total,
        f"{total} experiments finished",
    )
    return await editor.command("ratchet.experiments")


async def test_loop_results_as_diagnostics_actions_apply_and_revert(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    # Seed 1 draws a keep and a discard in the first three proposals (the draws follow the
    # proposal's number and the best file, not the timing of the loop).
    root = make_project(config=CONFIG.replace("seed = 0", "seed = 1"))
    editor = await editors(root)
    # The capabilities list the whole contract; openDiff is handled but left to the client.
    advertised = editor.capabilities.execute_command_provider
    assert advertised is not None and set(advertised.commands) == CONTRACT
    assert editor.capabilities.code_action_provider

    # The user has an unsaved edit of their own; Ratchet must never lose it.
    mine = TRAIN.replace('print("training...")', 'print("training, my way")')
    editor.open("train.py", mine)

    experiments = await run_loop(editor, 4)
    assert [e["id"] for e in experiments] == [0, 1, 2, 3]
    kept = [e for e in experiments if e["status"] == "kept" and e["source"] != "baseline"]
    discarded = [e for e in experiments if e["status"] == "discarded"]
    assert kept and discarded, [(e["id"], e["status"]) for e in experiments]
    for exp in experiments:  # light JSON rows with the contract's fields, heavy ones empty
        assert {"id", "status", "metric", "description", "commit", "reason", "diff"} <= set(exp)
        assert {"run_s", "cost_usd", "agent", "secondary"} <= set(exp)
        assert exp["diff"] == "" and exp["log_tail"] == ""
    # ratchet.experiment gives one whole row; `since` and `limit` page the list.
    full = [await editor.command("ratchet.experiment", e["id"]) for e in experiments]
    assert all(f["diff"] for f in full[1:]) and full[2]["status"] == experiments[2]["status"]
    assert [r["id"] for r in await editor.command("ratchet.experiments", {"since": 1})] == [2, 3]
    page = await editor.command("ratchet.experiments", {"since": 0, "limit": 2})
    assert [r["id"] for r in page] == [1, 2]
    # Each change was pushed as it finished: one light row per experiment, not the list.
    assert sorted({r["id"] for r in editor.rows}) == [0, 1, 2, 3]
    assert all(r["diff"] == "" for r in editor.rows)
    experiments = full
    kept = [e for e in experiments if e["status"] == "kept" and e["source"] != "baseline"]
    discarded = [e for e in experiments if e["status"] == "discarded"]

    # Status: notified while running and at the end, with the best and its gain.
    assert any(s["state"] == "running" for s in editor.statuses)
    final = editor.status()
    best = kept[-1]
    assert final["bestId"] == best["id"] and final["best"] == pytest.approx(best["metric"])
    assert final["total"] == 4 and final["kept"] == len(kept)
    assert final["gainPercent"] == pytest.approx(100 * (0.2 - best["metric"]) / 0.2)

    # Each finished experiment is an inlay hint at the end of the lines its change touched;
    # the latest of each line is also a diagnostic at Hint severity (no squiggle, no Problems
    # entry), so a plain LSP client sees results as diagnostics.
    async def results() -> dict[int, list[types.InlayHint]]:
        found: dict[int, list[types.InlayHint]] = {}
        for hint in await editor.inlay_hints("train.py"):
            found.setdefault(hint.data["experiment"], []).append(hint)
        return found

    # An experiment's hints sit on the lines its change touched, found by content in the
    # user's text (here the original file): one whose lines are all there has them.
    lines = mine.splitlines()

    def locatable(exp: dict[str, Any]) -> bool:
        blocks = parse_blocks(exp["diff"])
        return bool(blocks) and all(block.old and block.old[0] in lines for block in blocks)

    expected = {e["id"] for e in experiments[1:] if e["diff"] and locatable(e)}
    assert expected
    found = await editor.wait_async(results, lambda f: expected <= set(f), "a hint each")
    newest = {}  # line -> the newest experiment with a hint there
    for number in sorted(found):
        for hint in found[number]:
            newest[hint.position.line] = number
    shown = await editor.wait(
        lambda: (d := editor.diagnostics("train.py")) and len(d) >= len(newest) and d,
        "the latest results as diagnostics",
    )
    by_id = {e["id"]: e for e in experiments}
    for diagnostic in shown:
        assert diagnostic.severity == types.DiagnosticSeverity.Hint, diagnostic
        assert diagnostic.source == "ratchet" and diagnostic.data["kind"] == "result"
        exp = by_id[diagnostic.data["experiment"]]
        assert diagnostic.message.startswith(expected_head(exp, experiments))
        assert diagnostic.code == exp["status"]
        assert newest[diagnostic.range.start.line] == exp["id"]  # only the newest of a line
        (related,) = diagnostic.related_information or []
        assert related.location.uri.endswith(".log")
    assert {d.range.start.line for d in shown} == set(newest)
    for exp in experiments[1:]:
        blocks = parse_blocks(exp["diff"])
        # Located by the lines as they were or as the experiment made them.
        starts = {block.old[0] for block in blocks if block.old}
        starts |= {block.new[0] for block in blocks if block.new}
        for hint in found.get(exp["id"], []):
            assert hint.label == expected_head(exp, experiments)
            assert isinstance(hint.tooltip, str) and hint.tooltip.splitlines()[-1] == exp["reason"]
            assert lines[hint.position.line] in starts
            assert hint.position.character == len(lines[hint.position.line])  # end of line

    # The progress of each experiment: begin with its description, end with its result.
    bars = editor.client.progress_reports
    assert len(bars) == 4
    for token, values in bars.items():
        number = int(str(token).split("/")[2])
        exp = experiments[number]
        assert isinstance(values[0], types.WorkDoneProgressBegin)
        assert values[0].message == exp["description"] and values[0].cancellable
        assert isinstance(values[-1], types.WorkDoneProgressEnd)
        assert values[-1].message and values[-1].message.startswith(f"exp {number} {exp['status']}")
        if number:
            assert values[-1].message == expected_head(exp, experiments)

    # Code actions on the kept result: apply it (an edit), revert it, open its diff.
    line = found[best["id"]][0].position.line
    actions = {a.title: a for a in await editor.code_actions("train.py", line)}
    assert {f"Apply experiment {best['id']}", f"Revert experiment {best['id']}"} <= set(actions)
    assert f"Open diff of experiment {best['id']}" in actions
    diff = actions[f"Open diff of experiment {best['id']}"].command
    assert diff is not None and diff.command == "ratchet.openDiff"
    payload = diff.arguments[0]  # type: ignore[index]
    assert payload["left"] != payload["right"]
    assert payload["right"] != payload["left"] and payload["diff"] == best["diff"]
    # A client with no diff view of its own sends openDiff back: it gets the diff shown.
    shown = await editor.command("ratchet.openDiff", payload)
    assert shown["diff"] == best["diff"]
    await editor.wait(
        lambda: any(best["diff"] in m.message for m in editor.client.messages), "the diff shown"
    )
    revert = actions[f"Revert experiment {best['id']}"].command
    assert revert is not None and list(revert.arguments or []) == [best["id"]]

    apply = actions[f"Apply experiment {best['id']}"]
    assert apply.edit is not None and apply.kind == types.CodeActionKind.QuickFix
    editor.apply_edit(apply.edit)
    best_text = payload["right"].rstrip("\n") + "\n"
    expected = best_text.replace('print("training...")', 'print("training, my way")')
    assert editor.text("train.py") == expected  # the change, and the user's edit kept

    # Located by content: results whose lines the user's text no longer has are dropped; the
    # kept one now sits on its own new lines.
    now = set(expected.splitlines())

    def still_there(exp: dict[str, Any]) -> bool:
        return any(
            (b.old and b.old[0] in now) or (b.new and b.new[0] in now)
            for b in parse_blocks(exp["diff"])
        )

    gone = {e["id"] for e in discarded if not still_there(e)}
    found = await editor.wait_async(
        results, lambda f: best["id"] in f and not gone & set(f), "stale results dropped"
    )
    new_lines = {b.new[0] for b in parse_blocks(best["diff"]) if b.new}
    assert all(expected.splitlines()[h.position.line] in new_lines for h in found[best["id"]])

    # ratchet.apply: the best is already there; a discarded one comes as an applyEdit.
    assert (await editor.command("ratchet.apply", "best"))["applied"] is False
    other = discarded[0]
    result = await editor.command("ratchet.apply", other["id"])
    assert result["applied"] is True
    other_line = parse_blocks(other["diff"])[0].new[0]
    assert other_line in editor.text("train.py").splitlines()
    assert 'print("training, my way")' in editor.text("train.py")
    assert editor.edits[-1].edit.document_changes[0].text_document.version is not None  # type: ignore[index,union-attr]

    # An editor that refuses the edit, and a user edit on the very same line, are errors.
    editor.refuse_edits = True
    error = await failure(editor, "ratchet.apply", "best")
    assert error.message == "the editor did not apply the edit: read-only"
    editor.refuse_edits = False
    editor.change("train.py", mine.replace("LR = 0.5", "LR = 7"))
    error = await failure(editor, "ratchet.apply", "best")
    assert "change the same lines as the best" in error.message

    # Revert the kept experiment: a new experiment that takes its change back out, kept.
    await editor.command("ratchet.revert", best["id"])
    await editor.wait(
        lambda: editor.statuses[-1]["state"] == "idle" and editor.statuses[-1]["total"] == 5,
        "the revert measured",
    )
    rows = await editor.command("ratchet.experiments")
    assert rows[-1]["source"] == "revert"
    assert rows[-1]["id"] in {r["id"] for r in editor.rows}
    assert rows[-1]["description"].startswith(f"revert exp {best['id']}")
    # Reverting the only kept change gives back the baseline's text, already measured.
    assert rows[-1]["status"] in ("kept", "invalid")

    # proposeOnce: exactly one more proposal, judged, then idle again.
    await editor.command("ratchet.proposeOnce")
    await editor.wait(
        lambda: editor.statuses[-1]["state"] == "idle" and editor.statuses[-1]["total"] == 6,
        "one more experiment",
    )


async def test_run_buffer_crash_is_an_error_at_the_traceback_line(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    root = make_project()
    editor = await editors(root)
    # Unsaved: the file on disk stays as it is; the buffer is what runs.
    buffer = TRAIN.replace("WIDTH = 8\n", "WIDTH = 8\nratio = WIDTH / (LR - 0.5)\n")
    editor.open("train.py", buffer)
    await editor.command("ratchet.runBuffer", "divide by the learning rate's distance")
    await editor.wait(
        lambda: editor.statuses[-1]["state"] == "idle" and editor.statuses[-1]["total"] == 2,
        "the baseline and the buffer measured",
    )
    rows = await editor.command("ratchet.experiments")
    assert [r["status"] for r in rows] == ["kept", "crashed"]
    assert rows[1]["agent"] == "human" and rows[1]["source"] == "human"
    assert (root / "train.py").read_text() == TRAIN

    crash = await editor.wait(
        lambda: [d for d in editor.diagnostics("train.py") if d.code == "crashed"],
        "the crash diagnostic",
    )
    (diagnostic,) = crash
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    assert diagnostic.range.start.line == line_of(buffer, "ratio = WIDTH / (LR - 0.5)")
    assert diagnostic.message.startswith("exp 1 crashed: ZeroDivisionError: float division by zero")
    assert "\n" not in diagnostic.message  # one line: the description in brackets
    # It points at the run's log, where the whole traceback is.
    (related,) = diagnostic.related_information or []
    log = Path(related.location.uri.removeprefix("file://"))
    assert log.suffix == ".log" and "ZeroDivisionError" in log.read_text()

    # The user moves the line down: the error follows it, by content.
    moved = buffer.replace("import os\n", "import os\n\n\n")
    editor.change("train.py", moved)
    await editor.wait(
        lambda: [
            d
            for d in editor.diagnostics("train.py")
            if d.range.start.line == line_of(moved, "ratio = WIDTH / (LR - 0.5)")
        ],
        "the crash to follow its line",
    )
    # Code actions on a crash: no revert, but its diff.
    actions = await editor.code_actions("train.py", line_of(moved, "ratio = WIDTH / (LR - 0.5)"))
    titles = {a.title for a in actions}
    assert "Open diff of experiment 1" in titles and "Revert experiment 1" not in titles


async def test_ratchet_toml_mistakes_are_errors_at_their_range(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    broken = CONFIG.replace('budget = "10s"', 'budget = "5 parsecs"')
    root = make_project(config=broken)
    editor = await editors(root)
    diagnostics = await editor.wait(
        lambda: editor.diagnostics("ratchet.toml"), "a diagnostic on ratchet.toml"
    )
    (diagnostic,) = diagnostics
    text = (root / "ratchet.toml").read_text()
    line = line_of(text, 'budget = "5 parsecs"')
    assert diagnostic.severity == types.DiagnosticSeverity.Error and diagnostic.source == "ratchet"
    assert diagnostic.range.start == types.Position(line, len("budget = "))
    assert diagnostic.range.end == types.Position(line, len('budget = "5 parsecs"'))
    assert "is not a duration" in diagnostic.message
    status = await editor.wait(lambda: editor.statuses and editor.statuses[-1], "a status")
    assert status["state"] == "error" and status["configError"]

    error = await failure(editor, "ratchet.start")
    assert error.message.startswith("fix ratchet.toml first: ratchet.toml:")
    assert "is not a duration" in error.message

    # Typing in ratchet.toml: checked at once, unsaved.
    editor.open("ratchet.toml", text)
    typo = text.replace('budget = "5 parsecs"', 'budgte = "10s"')
    editor.change("ratchet.toml", typo)
    await editor.wait(
        lambda: any(
            "unknown key `budgte`" in d.message for d in editor.diagnostics("ratchet.toml")
        ),
        "the typo reported",
    )
    (diagnostic,) = editor.diagnostics("ratchet.toml")
    assert diagnostic.range.start == types.Position(line_of(typo, 'budgte = "10s"'), 0)
    assert 'did you mean "budget"' in diagnostic.message

    # Saved and fixed: the error goes, and the loop starts with the new settings.
    editor.change("ratchet.toml", CONFIG.format(python=_python(text)))
    (root / "ratchet.toml").write_text(CONFIG.format(python=_python(text)))
    await editor.wait(lambda: not editor.diagnostics("ratchet.toml"), "the error cleared")
    await editor.wait(lambda: editor.statuses[-1]["configError"] is None, "a valid config")
    await run_loop(editor, 1)
    assert editor.status()["baseline"] == pytest.approx(0.2)


def _python(config_text: str) -> str:
    command = next(line for line in config_text.splitlines() if line.startswith("command"))
    return command.split('"')[1].rsplit(" ", 1)[0]


async def test_bad_arguments_are_plain_errors_and_the_server_lives_on(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    root = make_project()
    editor = await editors(root)
    tag = (await editor.command("ratchet.status"))["tag"]

    for command, word in (
        ("ratchet.stop", "stop"),
        ("ratchet.pause", "pause"),
        ("ratchet.resume", "resume"),
    ):
        error = await failure(editor, command)
        assert error.message == f"no loop is running, so there is nothing to {word}"
        assert error.code == -32803
    for command in ("ratchet.accept", "ratchet.reject"):
        error = await failure(editor, command, 1)
        assert error.message == "no loop is running, so no proposal is waiting for review"
    error = await failure(editor, "ratchet.apply", 99)
    assert error.message == f"there is no experiment 99 in loop {tag}"
    error = await failure(editor, "ratchet.revert", 99)
    assert error.message == f"there is no experiment 99 in loop {tag}"
    error = await failure(editor, "ratchet.apply", "best")
    assert error.message == "no experiment has beaten the baseline yet: nothing to apply"

    for command, argument, expected in (
        ("ratchet.start", "many", "the most experiments to run is a whole number"),
        ("ratchet.start", 0, "the most experiments to run is a whole number"),
        ("ratchet.apply", "newest", 'expected an experiment number or "best"'),
        ("ratchet.revert", None, "name an experiment number"),
        ("ratchet.accept", -3, "expected an experiment number"),
        ("ratchet.note", "  ", "write the note for the agent"),
    ):
        error = await failure(editor, command, argument)
        assert error.code == -32602 and expected in error.message, (command, error.message)

    await run_loop(editor, 2)
    rows = await editor.command("ratchet.experiments")
    error = await failure(editor, "ratchet.revert", 0)
    assert "only kept experiments can be reverted" in error.message
    if rows[1]["status"] != "kept":
        error = await failure(editor, "ratchet.revert", 1)
        assert error.message == (
            f"experiment 1 is {rows[1]['status']}, not a kept change; "
            "only kept experiments can be reverted"
        )

    # A steering note reaches the ledger the agent reads.
    assert (await editor.command("ratchet.note", "try a smaller width"))["noted"]
    assert "try a smaller width" in Ledger(root / ".ratchet").notes(tag)

    # Still alive, still answering.
    status = await editor.command("ratchet.status")
    assert status["state"] == "idle" and status["total"] == 2


async def test_a_second_window_attaches_to_the_running_loop(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    slow = TRAIN.replace(
        'print("training...")\n',
        textwrap.dedent(
            """\
            import time
            print("training...")
            if LR != 0.5 or WIDTH != 8:
                time.sleep(30)
            """
        ),
    )
    root = make_project(train=slow)
    first = await editors(root)
    second = await editors(root)
    second.open("train.py")
    await first.command("ratchet.start")
    await first.wait(
        lambda: first.statuses[-1]["running"] and first.statuses[-1]["running"][0]["id"] == 1,
        "exp 1 running",
    )
    # One loop per project: the second window is a second view of it, live.
    status = await second.wait(
        lambda: (
            second.statuses[-1]["loop"]
            and second.statuses[-1]["loop"]["attached"]
            and second.statuses[-1]["running"]
            and second.statuses[-1]
        ),
        "the second window attached, exp 1 running",
    )
    assert status["running"][0]["id"] == 1 and not status["offline"]
    assert status["loop"]["pid"] == first.status()["loop"]["pid"]
    error = await failure(second, "ratchet.start")
    assert error.code == -32803
    assert error.message == "the loop is already running; stop it first (ratchet.stop)"
    # Either window commands it; both follow what it records.
    await second.command("ratchet.stop")
    await first.wait(lambda: first.statuses[-1]["loop"] is None, "the loop gone in the first")
    rows = await first.command("ratchet.experiments")
    assert [r["status"] for r in rows] == ["kept", "interrupted"]
    assert [r["id"] for r in second.rows if r["status"] == "interrupted"] == [1]
    # The loop stopped and freed the project: either window may start one now.
    assert (await second.command("ratchet.start"))["state"] == "running"
    await first.wait(lambda: (first.statuses[-1]["loop"] or {}).get("attached"), "attached")
    await first.command("ratchet.stop")
