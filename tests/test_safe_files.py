"""runners/safe_files: whatever a run left where a file is expected (a FIFO, a socket, a link
to /dev/zero, a huge sparse file, a folder) is refused or bounded, never waited on."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from conftest import MakeProject
from ratchet import cleanroom
from ratchet.cleanroom import remove_eval_only
from ratchet.runners import artefacts, safe_files
from ratchet.runners.safe_files import (
    UnsafeFile,
    copy_regular,
    digest_path,
    hash_files,
    open_inside,
    read_bounded,
    read_head,
    remove_special_files,
)
from ratchet.traces import run_trace_tail
from ratchet.workspace import Workspace

pytestmark = pytest.mark.timeout(30)  # a regression that blocks fails here, it does not hang
TIB = 1 << 40


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    assert stat.S_ISFIFO(path.lstat().st_mode)
    return path


def sparse(path: Path, size: int = TIB) -> Path:
    path.write_bytes(b"")
    os.truncate(path, size)
    assert path.stat().st_size == size and path.stat().st_blocks < 64  # really sparse
    return path


def unix_socket(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    assert stat.S_ISSOCK(path.lstat().st_mode)
    return server


def test_reads_refuse_what_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "folder").mkdir()
    server = unix_socket(tmp_path / "sock")
    try:
        for name, why in (
            ("zero", "symbolic link"),
            ("folder", "folder"),
            ("sock", "not a regular file"),
            ("pipe", "named pipe"),
        ):
            if name == "pipe":
                fifo(tmp_path / name)
            with pytest.raises(UnsafeFile, match=why):
                read_head(tmp_path / name, 100)
            with pytest.raises(UnsafeFile):
                read_bounded(tmp_path / name, 100)
            with pytest.raises(UnsafeFile):
                copy_regular(tmp_path / name, tmp_path / "copy", 100)
    finally:
        server.close()
    assert not (tmp_path / "copy").exists()


def test_sizes_are_checked_before_a_byte_is_read(tmp_path: Path) -> None:
    big = sparse(tmp_path / "big")
    head, more = read_head(big, 10)
    assert head == b"\0" * 10 and more
    with pytest.raises(UnsafeFile, match="over the limit"):
        read_bounded(big, 1 << 20)
    with pytest.raises(UnsafeFile, match="over"):
        copy_regular(big, tmp_path / "copy", 1 << 30)
    (tmp_path / "small").write_bytes(b"abc")
    assert read_bounded(tmp_path / "small", 3) == b"abc"


def test_a_copy_keeps_holes(tmp_path: Path) -> None:
    source = sparse(tmp_path / "holey", 64 << 20)
    with open(source, "r+b") as handle:
        handle.seek(32 << 20)
        handle.write(b"data in the middle")
    assert copy_regular(source, tmp_path / "copy", 1 << 30) == 64 << 20
    copy = tmp_path / "copy"
    assert copy.stat().st_size == 64 << 20 and copy.stat().st_blocks < 1024  # still sparse
    with open(copy, "rb") as handle:
        handle.seek(32 << 20)
        assert handle.read(18) == b"data in the middle"


def test_a_copy_past_its_deadline_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slow").write_bytes(b"x" * (3 << 20))
    monkeypatch.setattr(safe_files, "DEADLINE_S", -1.0)  # every chunk comes too late
    with pytest.raises(UnsafeFile, match="longer than"):
        copy_regular(tmp_path / "slow", tmp_path / "copy", 1 << 30)
    assert not (tmp_path / "copy").exists()


def test_hashing_a_sparse_file_of_another_size_reads_nothing(tmp_path: Path) -> None:
    (tmp_path / "prepare.py").write_text("# locked\n")
    before = hash_files(tmp_path, ["prepare.py"])
    assert before["prepare.py"].endswith("/9")  # the size travels with the digest
    sparse(tmp_path / "prepare.py")
    after = hash_files(tmp_path, ["prepare.py"], before)
    assert after["prepare.py"] == f"size/{TIB}"
    os.unlink(tmp_path / "prepare.py")
    fifo(tmp_path / "prepare.py")
    assert digest_path(tmp_path / "prepare.py", before["prepare.py"]) == "special:a-named-pipe"


def test_inside_a_root_no_link_is_followed_on_the_way(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "out").mkdir(parents=True)
    (run / "out" / "trace.txt").write_text("case 1: wrong\n")
    fd, info = open_inside(run, "out/trace.txt")
    os.close(fd)
    assert info.st_size == 14
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "trace.txt").write_text("not the run's\n")
    (run / "away").symlink_to(outside)
    for relative in ("away/trace.txt", "../secret/trace.txt", "/etc/hostname"):
        with pytest.raises(UnsafeFile):
            read_head(relative, 100, root=run)


def test_the_trace_tail_names_what_it_refused(tmp_path: Path) -> None:
    fifo(tmp_path / "failures.txt")
    assert "named pipe" in run_trace_tail(tmp_path, "failures.txt")
    os.unlink(tmp_path / "failures.txt")
    (tmp_path / "failures.txt").symlink_to("/dev/urandom")
    assert "symbolic link" in run_trace_tail(tmp_path, "failures.txt")
    os.unlink(tmp_path / "failures.txt")
    sparse(tmp_path / "failures.txt")
    tail = run_trace_tail(tmp_path, "failures.txt", limit_chars=100)
    assert tail.startswith("\0" * 100) and "cut" in tail
    assert run_trace_tail(tmp_path, "missing.txt") == ""


def test_eval_only_files_are_removed_only_inside_the_run_folder(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "labels").mkdir(parents=True)
    (run / "labels" / "a.jsonl").write_text("{}\n")
    (run / "tasks.jsonl").write_text("{}\n")
    outside.mkdir()
    (outside / "keep.jsonl").write_text("{}\n")
    (run / "data").symlink_to(outside)
    remove_eval_only(run, ("labels", "tasks.jsonl", "data/keep.jsonl", "gone.txt"))
    assert not (run / "labels").exists() and not (run / "tasks.jsonl").exists()
    assert (outside / "keep.jsonl").exists()


def test_special_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "deep" / "er").mkdir(parents=True)
    fifo(tmp_path / "deep" / "er" / "pipe")
    server = unix_socket(tmp_path / "sock")
    server.close()
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "link").symlink_to("/dev/zero")
    (tmp_path / "outside").mkdir()
    fifo(tmp_path / "outside" / "theirs")
    (tmp_path / "deep" / "away").symlink_to(tmp_path / "outside")
    removed = remove_special_files(tmp_path / "deep")
    assert removed == ["er/pipe"] and (tmp_path / "outside" / "theirs").exists()
    assert sorted(remove_special_files(tmp_path)) == ["outside/theirs", "sock"]
    assert (tmp_path / "keep.txt").exists() and (tmp_path / "link").is_symlink()


def test_the_clean_room_carries_artefacts_within_one_allowance(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artefacts, "ARTEFACT_LIMIT", 1000)
    monkeypatch.setattr(artefacts, "ARTEFACT_DEPTH", 3)
    root = make_project()
    run = tmp_path / "run"
    (run / "ckpt" / "a" / "b" / "c").mkdir(parents=True)
    (run / "ckpt" / "weights").write_bytes(b"w" * 600)
    (run / "ckpt" / "a" / "b" / "c" / "deep.txt").write_text("too deep")
    (run / "second").write_bytes(b"s" * 600)  # within the limit alone, not with ckpt
    (run / "third").write_bytes(b"t" * 300)
    (run / "elsewhere").symlink_to(tmp_path)
    workspace = Workspace(root, "t")
    project, notes = cleanroom.build_clean_room(
        workspace,
        workspace.head() or "",
        tmp_path / "room",
        run,
        ("ckpt", "second", "third", "elsewhere/x", "../x", "absent"),
    )
    assert (project / "ckpt" / "weights").read_bytes() == b"w" * 600
    assert (project / "third").read_bytes() == b"t" * 300
    assert not (project / "second").exists() and not (project / "ckpt/a/b/c").exists()
    assert (project / "train.py").exists()  # the commit's own files
    said = "\n".join(notes)
    for words in ("second", "ckpt/a/b/c", "elsewhere/x", "../x", "absent was not made"):
        assert words in said, (words, said)
