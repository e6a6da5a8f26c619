"""The loop outlives the editor: it runs in a process of its own, the language server
attaches to it through `.ratchet/control.sock` and detaches without stopping it. A server
killed, or whose client vanishes mid-stream, leaves the loop running (and its own log quiet);
a new server attaches and shows it live, pending proposal included; a terminal's
`ratchet run` and an editor are two views of one loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from conftest import CONFIG, TRAIN, MakeProject
from lsp_helpers import (
    CAPABILITIES,
    SHOWS_DOCUMENTS,
    Editor,
    plain,
    start_editor,
    stop_editor,
    stop_loops,
)
from lsprotocol import types
from ratchet.control import wire
from ratchet.control.spawn import STILL_RUNNING, how_it_ended, lock_holder
from ratchet.lockfile import LoopLock
from ratchet.lsp.loop import ATTACH_SAFETY_S

# The baseline is quick; a changed version prints a line every 20 ms for about 2 s.
STREAMING = TRAIN.replace(
    'print("training...")\n',
    textwrap.dedent(
        """\
        import time
        print("training...")
        steps = 1 if (LR, WIDTH) == (0.5, 8) else 100
        for step in range(steps):
            print(f"step {step} loss {score + 1 / (step + 1):.4f}", flush=True)
            time.sleep(0.02)
        """
    ),
)
REVIEWED = CONFIG.replace('budget = "10s"', 'budget = "10s"\nreview = "propose"')

OpenEditor = Callable[..., Awaitable[Editor]]


@pytest.fixture
async def editors() -> AsyncIterator[OpenEditor]:
    started: list[Editor] = []

    async def open_editor(
        root: Path, capabilities: types.ClientCapabilities = CAPABILITIES
    ) -> Editor:
        editor = await start_editor(root, capabilities)
        started.append(editor)
        return editor

    yield open_editor
    for editor in started:
        if editor.client._server is not None and editor.client._server.returncode is None:
            await stop_editor(editor)
    for editor in started:
        stop_loops(editor.root)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_loop_outlives_its_language_server(
    make_project: MakeProject, editors: OpenEditor, capfd: pytest.CaptureFixture[str]
) -> None:
    root = make_project(train=STREAMING, config=REVIEWED)
    first = await editors(root)
    await first.command("ratchet.start")
    status = await first.wait_state("awaiting_review")
    loop_pid = status["loop"]["pid"]
    assert status["loop"] == {"pid": loop_pid, "attached": True} and not status["offline"]
    assert loop_pid != first.client._server.pid  # type: ignore[union-attr]
    assert (root / ".ratchet" / "control.sock").stat().st_mode & 0o777 == 0o600

    # The language server is killed outright: the loop goes on, its proposal still waiting.
    first.client._server.kill()  # type: ignore[union-attr]
    await first.client._server.wait()  # type: ignore[union-attr]
    await asyncio.sleep(0.5)
    assert alive(loop_pid) and lock_holder(root) == loop_pid

    # A new server attaches and shows it live: the state, the pending proposal and its lens.
    second = await editors(root)
    second.open("train.py")
    status = await second.wait(
        lambda: (
            second.statuses and second.statuses[-1]["awaitingReview"] == [1] and second.statuses[-1]
        ),
        "the new server attached, exp 1 awaiting review",
    )
    assert status["loop"] == {"pid": loop_pid, "attached": True}
    assert status["state"] == "awaiting_review"
    await second.wait(
        lambda: [d for d in second.diagnostics("train.py") if d.code == "proposed"],
        "the pending proposal shown",
    )
    lenses = await second.wait_async(
        lambda: second.code_lenses("train.py"), lambda found: found, "the proposal's lenses"
    )
    assert lenses[0].command is not None and lenses[0].command.title == "Accept & Run exp 1"

    # Accepted from the new server: it runs, and its progress streams to it.
    assert (await second.command("ratchet.accept", 1))["accepted"] is True
    await second.wait(
        lambda: (
            second.statuses[-1]["running"]
            and second.statuses[-1]["running"][0]["lastLine"].startswith("step ")
        ),
        "exp 1 streaming",
    )

    # Its client vanishes mid-stream (a window closed, a connection dropped): the server
    # leaves quietly, nothing sent into the closed pipe, and the loop runs on.
    capfd.readouterr()
    server = second.client._server
    assert server is not None and server.stdin is not None
    server.stdin.close()
    await asyncio.wait_for(server.wait(), 15)
    await asyncio.sleep(0.3)
    said = capfd.readouterr().err
    assert "Traceback" not in said and "closed file" not in said, said[-2000:]
    assert len(said) < 4000, len(said)
    assert alive(loop_pid) and lock_holder(root) == loop_pid

    # A third server (a client that opens documents): attached, exp 1's result arrives, the
    # next proposal waits; it shows a diff as a document, then stops the loop.
    third = await editors(root, SHOWS_DOCUMENTS)
    await third.wait(
        lambda: third.statuses and third.statuses[-1]["awaitingReview"] == [2],
        "exp 1 judged, exp 2 waiting",
        timeout=30,
    )
    rows = await third.command("ratchet.experiments")
    assert rows[1]["status"] in ("kept", "discarded") and rows[1]["metric"] is not None
    shown = await third.command("ratchet.openDiff", 1)
    assert [d.uri for d in third.client.shown_documents] == [shown["shown"]]
    assert shown["shown"].endswith("/exp-1.diff")
    diff = (await third.command("ratchet.experiment", 1))["diff"]
    assert Path(shown["shown"].removeprefix("file://")).read_text() == diff
    asked = await third.client.protocol.send_request_async(
        "ratchet/diffText", {"uri": "ratchet:/exp/1.diff"}
    )
    assert plain(asked)["text"] == diff
    assert (await third.command("ratchet.stop"))["state"] == "idle"
    await third.wait(lambda: third.statuses[-1]["loop"] is None, "the loop gone")
    deadline = time.monotonic() + 10
    while alive(loop_pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert lock_holder(root) is None and not (root / ".ratchet" / "control.sock").exists()
    rows = await third.command("ratchet.experiments")
    assert rows[2]["status"] == "rejected"  # stopped before review
    await stop_editor(third)


async def test_a_terminal_and_an_editor_are_two_views_of_one_loop(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    slowish = TRAIN.replace(
        'print("training...")\n', 'import time\nprint("training...")\ntime.sleep(0.4)\n'
    )
    root = make_project(train=slowish)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    terminal = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "run", "--max-experiments", "6"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not wire.socket_path(root).exists():
            assert terminal.poll() is None, terminal.communicate()[0]
            assert time.monotonic() < deadline, "the terminal's loop never served its channel"
            await asyncio.sleep(0.05)
        editor = await editors(root)
        status = await editor.wait(
            lambda: (
                editor.statuses
                and (editor.statuses[-1]["loop"] or {}).get("attached")
                and editor.statuses[-1]
            ),
            "the editor attached to the terminal's loop",
        )
        assert status["loop"]["pid"] == terminal.pid
        # The editor commands the terminal's loop: pause, and nothing new starts.
        await editor.wait(lambda: editor.statuses[-1]["total"] >= 1, "a first result")
        assert (await editor.command("ratchet.pause"))["state"] == "paused"
        await asyncio.sleep(1.2)  # more than two experiments' time
        paused_total = (await editor.command("ratchet.status"))["total"]
        await asyncio.sleep(1.0)
        assert (await editor.command("ratchet.status"))["total"] <= paused_total + 1
        await editor.command("ratchet.resume")
        output, _ = await asyncio.to_thread(terminal.communicate, timeout=60)
        assert terminal.returncode == 0, output
        assert b"loop " in output and b"kept of 6" in output
        await editor.wait(lambda: editor.statuses[-1]["loop"] is None, "the loop gone")
        # Every experiment the terminal's loop finished after the editor attached reached it
        # as one delta row.
        rows = await editor.command("ratchet.experiments")
        assert [r["id"] for r in rows] == list(range(6))
        seen = {r["id"] for r in editor.rows if r["status"] not in ("running", "proposed")}
        assert set(range(paused_total, 6)) <= seen
    finally:
        if terminal.poll() is None:
            terminal.kill()
            terminal.wait()


async def test_an_open_editor_attaches_when_a_loop_begins_without_waiting_for_a_poll(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    """The watcher sees the loop's socket appear and wakes the attach loop: the editor is
    attached well inside the safety net's period (a poll would take up to ATTACH_SAFETY_S)."""
    slowish = TRAIN.replace(
        'print("training...")\n', 'import time\nprint("training...")\ntime.sleep(0.5)\n'
    )
    root = make_project(train=slowish)
    editor = await editors(root)
    await editor.wait(lambda: editor.statuses, "a first status")
    await asyncio.sleep(1.5)  # the attach loop has looked once and is waiting
    terminal = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "run", "--max-experiments", "4"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not wire.socket_path(root).exists():
            assert terminal.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.02)
        served = time.monotonic()
        await editor.wait(
            lambda: (editor.statuses[-1]["loop"] or {}).get("attached"),
            "the editor attached to the loop that began",
            timeout=ATTACH_SAFETY_S,
        )
        assert time.monotonic() - served < ATTACH_SAFETY_S / 2
    finally:
        if terminal.poll() is None:
            terminal.kill()
        terminal.wait()


async def test_a_loop_it_cannot_reach_is_shown_offline(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    """A loop that holds the project's lock but serves no channel (an older Ratchet, say):
    the status names its pid, not attached, offline; starting another is refused in words."""
    root = make_project()
    (root / ".ratchet").mkdir()
    lock = LoopLock(root / ".ratchet")
    lock.acquire()
    try:
        editor = await editors(root)
        status = await editor.wait(
            lambda: editor.statuses and editor.statuses[-1]["offline"] and editor.statuses[-1],
            "the loop shown offline",
        )
        assert status["loop"] == {"pid": os.getpid(), "attached": False}
        error = await editor.command_error("ratchet.start")
        assert error.startswith("a Ratchet loop is already running on this project"), error
    finally:
        lock.release()
    status = await editor.wait(
        lambda: not editor.statuses[-1]["offline"] and editor.statuses[-1], "back online"
    )
    assert status["loop"] is None


async def test_a_loop_killed_is_said_and_the_next_start_resumes(
    make_project: MakeProject, editors: OpenEditor
) -> None:
    root = make_project(train=STREAMING)
    editor = await editors(root)
    await editor.command("ratchet.start")
    status = await editor.wait(
        lambda: (
            editor.statuses[-1]["running"]
            and editor.statuses[-1]["running"][0]["id"] == 1
            and editor.statuses[-1]
        ),
        "exp 1 running",
    )
    os.kill(status["loop"]["pid"], 9)
    status = await editor.wait(
        lambda: editor.statuses[-1]["loop"] is None and editor.statuses[-1], "the loop gone"
    )
    # Told once its process is asked how it ended (killed): no "idle" in between.
    assert status["state"] == "error" and "ended without a word" in status["message"]
    assert any("ended without a word" in m.message for m in editor.client.messages)
    # Started again: it resumes, the killed experiment recorded interrupted (and re-run).
    assert (await editor.command("ratchet.start", 1))["state"] == "running"
    await editor.wait(
        lambda: editor.statuses[-1]["loop"] is None and editor.statuses[-1]["total"] >= 3,
        "the resumed run ended",
        30,
    )
    rows = await editor.command("ratchet.experiments")
    assert rows[1]["status"] == "interrupted" and rows[2]["rerun_of"] == 1
    # No status says "running" beside "no loop": the last one of the ended loop is idle.
    assert not [s for s in editor.statuses if s["loop"] is None and s["state"] == "running"]
    assert editor.statuses[-1]["state"] == "idle" and not editor.statuses[-1]["message"], (
        [(s["state"], s["message"], s["loop"], s["total"]) for s in editor.statuses[-6:]],
        wire.log_path(root).read_text()[-3000:],
    )


def test_a_closed_channel_is_told_apart_by_how_the_loop_process_ended() -> None:
    """A channel that closes with no word from the loop: a clean exit whose last words were
    lost, a kill, a loop still running (only the channel dropped), or one gone that no one
    here started (nothing known)."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    clean = subprocess.Popen([sys.executable, "-c", "pass"])
    assert how_it_ended(clean.pid, clean, 10.0) == 0
    killed = subprocess.Popen(sleeper)
    try:
        assert how_it_ended(killed.pid, killed, 0.2) == STILL_RUNNING
        assert how_it_ended(killed.pid, None, 0.2) == STILL_RUNNING  # another's: by its pid
        killed.kill()
        assert how_it_ended(killed.pid, None, 10.0) is None  # a zombie, not reaped: gone
        assert how_it_ended(killed.pid, killed, 10.0) == -9
    finally:
        killed.kill()
        killed.wait(10)
    assert how_it_ended(killed.pid, None, 0.2) is None  # gone, and reaped: no one can say


def test_run_detach_returns_and_the_loop_runs_on(make_project: MakeProject) -> None:
    root = make_project()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "run", "--detach", "--max-experiments", "3"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "loop running in the background (pid " in done.stdout
    pid = int(done.stdout.split("(pid ")[1].split(")")[0])
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 60
    # The loop frees the lock, then prints its last line and exits: wait for the exit.
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock_holder(root) is None
    log = (root / ".ratchet" / "loop.log").read_text()
    assert "kept of 3" in log, log[-2000:]


def test_a_send_after_the_client_has_gone_is_dropped_without_a_word(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pygls reports a failed send by sending a message, which fails, and so on: one
    notification after exit once wrote 11 MB of tracebacks. Here: nothing, and no more sends."""
    import io
    import logging

    from lsprotocol import types
    from pygls.io_ import StdoutWriter
    from ratchet.lsp.server import make_server

    server = make_server()
    stdout = io.BytesIO()
    server.protocol.set_writer(StdoutWriter(stdout))
    server.protocol.notify("ratchet/status", {"state": "idle"})
    assert stdout.getvalue()  # a live client gets it
    stdout.close()  # what pygls's exit does to stdout
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            server.protocol.notify("ratchet/status", {"state": "idle"})
            server.window_show_message(
                types.ShowMessageParams(type=types.MessageType.Info, message="hello")
            )
    assert server.protocol.gone  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]

    # A pipe whose reader went away: the first failed write ends all sending, quietly.
    class BrokenPipe(io.RawIOBase):
        writes = 0

        def write(self, data: object) -> int:
            BrokenPipe.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

    server = make_server()
    server.protocol.set_writer(StdoutWriter(BrokenPipe()))  # type: ignore[arg-type]
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            server.protocol.notify("ratchet/status", {"state": "idle"})
    assert server.protocol.gone and BrokenPipe.writes == 1  # type: ignore[attr-defined]
    assert len([r for r in caplog.records if r.exc_info]) <= 1  # pygls's own one line


def test_a_server_held_by_a_stuck_thread_still_leaves_after_exit() -> None:
    """Python's exit waits for every worker thread; the server's exit does not wait for ever:
    it leaves within its grace, and says what held it when it was one of its own workers."""
    script = textwrap.dedent(
        """\
        import asyncio, sys, threading
        from ratchet.lsp.server import _leave_after

        async def main():
            threading.Thread(target=_leave_after, args=(0.5, 0), daemon=True).start()
            if sys.argv[1] == "worker":  # a to_thread call that never returns
                asyncio.get_running_loop().run_in_executor(None, threading.Event().wait)
            else:  # a reader of a stdin nobody closes (pygls's, on some clients)
                threading.Thread(target=threading.Event().wait).start()
            await asyncio.sleep(0.1)
            sys.exit(0)

        asyncio.run(main())
        """
    )
    for held in ("worker", "reader"):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", script, held], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0 and time.monotonic() - started < 15, (held, done.stderr)
        said = "still here 0.5s after exit" in done.stderr
        assert said == (held == "worker"), (held, done.stderr)
        assert ("most recent call first" in done.stderr) == (held == "worker")
