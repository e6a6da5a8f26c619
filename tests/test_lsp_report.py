"""`ratchet.report` and `ratchet.finalize` from a real LSP client: a real loop run through the
server (three edits of the buffer, each judged), its report written and asked to open, its
keeps made into review branches in real git while the user's branch and file stay; a keep
left out, one that no longer applies, and bad arguments, each a plain sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TRAIN, MakeProject, git
from lsp_helpers import SHOWS_DOCUMENTS, Editor, start_editor, stop_editor, stop_loops
from pygls.exceptions import JsonRpcException

# Each buffer builds on the one before: 1 and 3 change different lines, 3 the line 2 wrote.
EDITS = [
    (TRAIN.replace("LR = 0.5", "LR = 0.25"), "LR 0.5 → 0.25"),
    (TRAIN.replace("LR = 0.5", "LR = 0.25").replace("WIDTH = 8", "WIDTH = 10"), "WIDTH 8 → 10"),
    (TRAIN.replace("LR = 0.5", "LR = 0.25").replace("WIDTH = 8", "WIDTH = 12"), "WIDTH 10 → 12"),
]


@pytest.fixture
async def editor(make_project: MakeProject) -> AsyncIterator[Editor]:
    root = make_project()
    started = await start_editor(root, SHOWS_DOCUMENTS)
    try:
        yield started
    finally:
        await stop_editor(started)
        stop_loops(root)


async def run_edits(editor: Editor) -> list[dict[str, Any]]:
    """The three edits run from the buffer, one after another: the baseline, then 1, 2, 3."""
    editor.open("train.py", TRAIN)
    for total, (text, description) in enumerate(EDITS, start=2):
        editor.change("train.py", text)
        await editor.command("ratchet.runBuffer", {"description": description})
        await _judged(editor, total)
    return list(await editor.command("ratchet.experiments"))


async def _judged(editor: Editor, total: int) -> None:
    last = editor.statuses
    await editor.wait(
        lambda: last[-1]["state"] == "idle" and last[-1]["total"] == total,
        f"{total} experiments judged",
        timeout=30,
    )


def rev(root: Path, name: str) -> str:
    return git(root, "rev-parse", name).strip()


def has_branch(root: Path, name: str) -> bool:
    found = subprocess.run(["git", "rev-parse", "--verify", "-q", name], cwd=root, check=False)
    return found.returncode == 0


async def test_the_report_and_review_branches_from_the_editor(editor: Editor) -> None:
    root = editor.root
    assert {"ratchet.report", "ratchet.finalize"} <= set(
        editor.capabilities.execute_command_provider.commands  # type: ignore[union-attr]
    )
    # Before any loop: a sentence, not a traceback or an empty page.
    assert "no loop has run here yet" in await editor.command_error("ratchet.report")
    assert "no loop has run here yet" in await editor.command_error("ratchet.finalize")

    rows = await run_edits(editor)
    assert [(r["id"], r["status"]) for r in rows] == [(n, "kept") for n in range(4)]
    tag = editor.status()["tag"]
    main_before = rev(root, "main")

    # The report: written under .ratchet/, the client asked to open it outside the editor.
    report = await editor.command("ratchet.report")
    path = Path(report["path"])
    assert path == (root / ".ratchet" / "report.html").resolve()
    page = path.read_text()
    assert page.lower().startswith("<!doctype html>")
    assert "score" in page and "WIDTH 10 → 12" in page and "<script" not in page.lower()
    assert report["shown"] is True and "3 keeps of 4 experiments" in report["message"]
    shown = editor.client.shown_documents
    assert [(d.uri, d.external) for d in shown] == [(report["uri"], True)]
    assert report["uri"] == path.as_uri()
    # A client that shows it itself (VS Code's webview) asks for the file only.
    assert (await editor.command("ratchet.report", {"show": False}))["shown"] is False
    assert len(editor.client.shown_documents) == 1

    # All keeps, one commit each, on a new branch; the user's branch and file stay.
    made = await editor.command("ratchet.finalize")
    assert made["branch"] == f"ratchet/{tag}-review" and made["carried"] == [1, 2, 3]
    assert rev(root, made["branch"]) == made["tip"] and made["base"] == main_before
    assert rev(root, "main") == main_before
    assert git(root, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert (root / "train.py").read_text() == TRAIN
    subjects = git(root, "log", "--format=%s", f"main..{made['branch']}").splitlines()
    assert subjects == ["WIDTH 10 → 12", "WIDTH 8 → 10", "LR 0.5 → 0.25"]
    assert f"branch {made['branch']}: keeps 1, 2, 3 on top of main" in made["message"]
    assert f"ratchet run --tag {tag}-check" in made["message"]

    # A keep left out, the rest squashed into one commit.
    left_out = await editor.command("ratchet.finalize", {"exclude": [1], "squash": True})
    assert left_out["branch"] == f"ratchet/{tag}-review-2" and left_out["carried"] == [2, 3]
    assert git(root, "rev-list", "--count", f"main..{left_out['branch']}").strip() == "1"
    tip_text = git(root, "show", f"{left_out['branch']}:train.py")
    assert "LR = 0.5" in tip_text and "WIDTH = 12" in tip_text
    assert rev(root, "main") == main_before

    # Without 2, keep 3 no longer applies: a plain stop that names it, and no branch.
    stop = await editor.command_error("ratchet.finalize", {"exclude": [2]})
    assert "exp 3" in stop and "no longer applies" in stop and "exclude" in stop
    assert "Traceback" not in stop and not has_branch(root, f"ratchet/{tag}-review-3")
    assert "not a keep" in await editor.command_error("ratchet.finalize", {"exclude": [0]})

    # A patch series in a folder of the project's: no branch.
    patches = await editor.command("ratchet.finalize", {"patch": "review-patches"})
    assert patches["branch"] is None and len(patches["patches"]) == 3
    assert Path(patches["patchDir"]) == (root / "review-patches").resolve()
    assert not has_branch(root, f"ratchet/{tag}-review-3")
    assert rev(root, "main") == main_before


BAD_ARGUMENTS = [
    ("ratchet.finalize", {"squash": "yes"}, "`squash` is true or false"),
    ("ratchet.finalize", {"exclude": ["two"]}, "`exclude` is a list of experiment numbers"),
    ("ratchet.finalize", {"exclude": [-1]}, "`exclude` is a list of experiment numbers"),
    ("ratchet.finalize", {"patch": ""}, "`patch` is the folder"),
    ("ratchet.finalize", "everything", "expected an object of options"),
    ("ratchet.report", {"show": "no"}, "`show` is true or false"),
]


async def test_bad_arguments_are_answered_with_what_is_wanted(editor: Editor) -> None:
    for command, arguments, words in BAD_ARGUMENTS:
        with pytest.raises(JsonRpcException) as caught:
            await editor.command(command, arguments)
        assert words in str(caught.value.message), (command, arguments)
    assert not (editor.root / ".ratchet" / "report.html").exists()


async def test_a_finished_loop_opens_in_an_editor_without_the_agents_key(
    make_project: MakeProject,
) -> None:
    root = make_project()
    done = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "-C", str(root), "run", "--max-experiments", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANTHROPIC_API_KEY": "sk-ant-from-the-terminal"},
    )
    assert done.returncode == 0, done.stderr
    # The loop ran from a terminal; the project now names the anthropic agent, and the
    # editor was started from a dock: no key in its environment.
    toml = root / "ratchet.toml"
    toml.write_text(toml.read_text().replace('kind = "mutate"', 'kind = "anthropic"'))
    folder = root / ".ratchet"

    def record() -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))
        }

    before = record()
    editor = await start_editor(root, without=("ANTHROPIC_API_KEY",))
    try:
        status = await editor.wait(
            lambda: editor.statuses and editor.statuses[-1].get("total") == 3 and editor.status(),
            "the finished loop's status",
        )
        assert status["state"] != "error" and not status.get("message"), status
        rows = await editor.command("ratchet.experiments")
        assert [row["id"] for row in rows] == [0, 1, 2]
        editor.open("train.py")
        hints = await editor.wait_async(
            lambda: editor.inlay_hints("train.py"), bool, "the history on the code"
        )
        assert {hint.data["experiment"] for hint in hints} <= {1, 2}
    finally:
        await stop_editor(editor)
        stop_loops(root)
    assert record() == before  # the editor read the record and wrote nothing
