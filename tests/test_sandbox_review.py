"""A security review's findings, each closed: a declared folder does not bring back the host's
private files, the agent's key never reaches a run even when named RATCHET_*, and a nested
worker's answer is its own question's, written after it was asked."""

from __future__ import annotations

import os
import select
import subprocess
from pathlib import Path

import pytest
from ratchet.runners import host_private
from ratchet.runners import sandbox as sandbox_module
from ratchet.runners.host_private import Private
from ratchet.runners.processes import TOKEN_VARIABLE
from ratchet.runners.sandbox import (
    Covers,
    SandboxSpec,
    build_argv,
    find_bwrap,
    host_covers,
    probe,
)
from ratchet.runners.wrapper import Control, RunSpec, SandboxRules, execute

needs_bwrap = pytest.mark.skipif(probe(find_bwrap()) is not None, reason="no bubblewrap here")
NOTHING_FOUND = Private((), (), (), complete=True)


def sandboxed(spec: SandboxSpec, script: str) -> str:
    """What `script` prints, run by bubblewrap under `spec` (through build_argv)."""
    argv = build_argv(spec, ["/bin/sh", "-c", script])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- 1. a declared folder does not bring back what the host's covers hide ----------------------


@needs_bwrap
@pytest.mark.skipif(not os.path.isfile("/etc/shadow"), reason="no /etc/shadow here")
def test_a_declared_read_of_etc_does_not_show_etc_shadow(tmp_path: Path) -> None:
    spec = SandboxSpec(bwrap=str(find_bwrap()), run_dir=str(tmp_path), read=("/etc",))
    said = sandboxed(spec, "cat /etc/shadow 2>/dev/null | wc -c; cat /etc/hostname | wc -c")
    assert said.split() == ["0", str(len(Path("/etc/hostname").read_bytes()))], said


@needs_bwrap
def test_private_paths_inside_a_declared_folder_are_covered_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private file and folder inside a declared read are hidden again; what is declared
    inside the private folder by name comes back (the user's to show)."""
    data = tmp_path / "data"
    (data / "vault" / "named").mkdir(parents=True)
    (data / "vault").chmod(0o700)
    (data / "vault" / "loose.txt").write_text("loose")
    (data / "vault" / "named" / "f.txt").write_text("named")
    (data / "key").write_text("secret")
    (data / "key").chmod(0o600)
    (data / "open.txt").write_text("open")
    found = Private((str(data / "vault"),), (str(data / "key"),), (), complete=True)
    monkeypatch.setattr(sandbox_module, "private_paths", lambda: found)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = SandboxSpec(
        bwrap=str(find_bwrap()),
        run_dir=str(run_dir),
        read=(str(data), str(data / "vault" / "named")),
        devices=(),
    )
    said = sandboxed(
        spec,
        f"cd {data}; cat open.txt; echo; cat key 2>/dev/null | wc -c; ls vault; cat vault/named/*",
    )
    assert said.split() == ["open", "0", "named", "named"], said


def test_the_known_private_files_are_covered_whatever_the_search_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "private_paths", lambda: NOTHING_FOUND)
    spec = SandboxSpec(bwrap="bwrap", run_dir=str(tmp_path), devices=())
    present = [p for p in ("/etc/shadow", "/etc/gshadow") if os.path.isfile(p)]
    assert set(present) <= set(host_covers(spec).files)
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    for name in ("ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_host_ed25519_key"):
        (ssh / name).write_text("k")
    monkeypatch.setattr(host_private, "KNOWN_PRIVATE", ("/etc/shadow", f"{ssh}/ssh_host_*_key"))
    files = host_covers(spec).files
    assert {str(ssh / "ssh_host_rsa_key"), str(ssh / "ssh_host_ed25519_key")} <= set(files)
    assert str(ssh / "ssh_host_rsa_key.pub") not in files


def test_a_declared_folder_is_followed_by_the_covers_of_what_lies_inside_it() -> None:
    """In the argv: /etc bound back, then /etc/shadow covered after it; a path declared by
    its own name is not covered again."""
    covers = Covers(folders=("/etc/ssl/private",), files=("/etc/shadow", "/srv/key"))
    read = ["/etc", "/srv/key"]
    argv = sandbox_module._bind_back(read, ()) + sandbox_module._cover_again(covers, read, ())
    joined = " ".join(argv)
    assert joined.index("--ro-bind-try /etc /etc") < joined.index("/dev/null /etc/shadow")
    assert "--tmpfs /etc/ssl/private" in joined and "/dev/null /srv/key" not in joined


def test_the_search_sees_the_shallow_paths_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Breadth first: a bound spent on one deep folder would leave its siblings' keys unseen."""
    siblings = 3
    for n in range(siblings):
        (tmp_path / f"s{n}" / "deep").mkdir(parents=True)
        (tmp_path / f"s{n}" / "key").write_text("k")
        (tmp_path / f"s{n}" / "key").chmod(0o600)
        for m in range(50):
            (tmp_path / f"s{n}" / "deep" / f"f{m}").write_text("")
    # Enough for the top folder and each sibling's two entries, not for a deep one too.
    monkeypatch.setattr(host_private, "SEARCH_ENTRIES", 3 * siblings + 1)
    found = host_private._search(str(tmp_path))
    assert set(found.files) == {str(tmp_path / f"s{n}" / "key") for n in range(siblings)}
    assert not found.complete


# --- 2. the agent's key never reaches a run, whatever its name ---------------------------------


@needs_bwrap
def test_a_hidden_variable_named_ratchet_star_does_not_reach_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATCHET_AGENT_KEY", "sk-ant-review-hidden-0123456789")
    monkeypatch.setenv("RATCHET_SHOWN", "passed")  # RATCHET_* still passes: not vacuous
    spec = RunSpec(
        command="env",
        run_dir=str(tmp_path),
        token="review-token",
        timeout_s=60,
        variables={TOKEN_VARIABLE: "review-token"},
        sandbox=SandboxRules(),
        hidden_env=["RATCHET_AGENT_KEY"],
    )
    output = bytearray()
    report = execute(spec, output.extend, Control())
    said = output.decode(errors="replace")
    assert report["sandbox"] and report["exit"] == 0 and report["refused"] is None, said
    assert "RATCHET_SHOWN=passed" in said
    assert "RATCHET_AGENT_KEY" not in said and "review-hidden" not in said


# --- 3. a worker's answer is written after its question, and names it ---------------------------

MODULE = """\
import os, threading, __main__

def double(x):
    return 2 * x

def fail():
    raise ValueError("honest failure")

def plant():  # an answer on the pipe ahead of the next question
    threading.Timer(0.2, os.write, (3, b'{"value": 0.0}\\n')).start()
    return "planted"

def guess():  # an answer to a question it guesses
    os.write(3, b'{"id": "0123456789abcdef", "value": 0.0}\\n')
    return "guessed"

asked = []

def record():
    asked.append(__main__.request["id"])
    return "recorded"

def replay():  # an answer to the question before
    os.write(3, ('{"id": "%s", "value": 0.0}\\n' % asked[-1]).encode())
    return "replayed"
"""


@pytest.fixture
def worker_folder(tmp_path: Path) -> Path:
    pytest.importorskip("ratchet.isolate")
    from ratchet.isolate import available

    if (problem := available()) is not None:
        pytest.skip(f"no nested sandbox here: {problem}")
    (tmp_path / "forger.py").write_text(MODULE)
    return tmp_path


def test_an_honest_worker_answers_and_fails_honestly(worker_folder: Path) -> None:
    from ratchet.isolate import CallFailed, Worker

    with Worker(worker_folder, "forger", timeout_s=60) as worker:
        assert worker.call("double", 21)[0] == 42
        with pytest.raises(CallFailed, match="honest failure"):
            worker.call("fail")
        assert worker.call("double", 2)[0] == 4  # the worker goes on after a raise


def test_an_answer_written_before_its_question_is_refused(worker_folder: Path) -> None:
    from ratchet.isolate import CallFailed, Worker

    with Worker(worker_folder, "forger", timeout_s=60) as worker:
        assert worker.call("plant")[0] == "planted"
        fd = worker._child.answers_fd
        assert fd is not None and select.select([fd], [], [], 20)[0]  # the plant is there
        with pytest.raises(CallFailed, match="before the question"):
            worker.call("double", 1)


@pytest.mark.parametrize("function", ["guess", "replay"])
def test_an_answer_to_another_question_is_refused(worker_folder: Path, function: str) -> None:
    from ratchet.isolate import CallFailed, Worker

    with Worker(worker_folder, "forger", timeout_s=60) as worker:
        assert worker.call("record")[0] == "recorded"
        with pytest.raises(CallFailed, match="another question"):
            worker.call(function)
        with pytest.raises(CallFailed, match="stopped"):  # a forger is not asked again
            worker.call("double", 1)
