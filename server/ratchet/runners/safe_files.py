"""Reading what a run left behind, defensively: the run is the adversary, its folder its weapon.

Every file Ratchet reads, hashes or copies out of a run folder goes through here. A path is
opened without following a link and without blocking (a FIFO or a device never hangs the
harness), must be a regular file, has its size checked before a byte is read, and is read in
bounded chunks under a deadline. Hashing streams; a locked file whose size differs from the
one expected is reported changed without reading it (a sparse 1 TiB file costs nothing).

Standard library only: the remote run wrapper ships this text to ssh hosts and Ray nodes, so a
locked file hashes the same, byte for byte, wherever it ran.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Mapping

CHUNK = 1 << 20
DEADLINE_S = 120.0  # one file, however slow its disk: past this it is reported, not waited on
MISSING = "missing"
FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC  # opens a folder, never a link


class UnsafeFile(Exception):
    """A path that is not a regular file of an acceptable size; the message says why."""


def kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(
    path: str | os.PathLike[str], dir_fd: int | None = None
) -> tuple[int, os.stat_result]:
    """An fd and its stat for `path`, a regular file: never a link's target, never blocking
    (O_NONBLOCK makes opening a FIFO return at once; it is refused by its type)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeFile(f"{os.fspath(path)} is a symbolic link") from None
        if error.errno == errno.ENXIO:  # a FIFO with no writer, or a socket
            raise UnsafeFile(f"{os.fspath(path)} is not a regular file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{os.fspath(path)} is {kind_of(info.st_mode)}, not a regular file")
    return fd, info


def open_parent(root: str | os.PathLike[str], relative: str) -> tuple[int, str]:
    """An fd of the folder holding `relative` inside `root`, and the last name of `relative`.
    Every folder on the way is opened without following a link, so a run that turned one
    into a link to /dev, /proc or the user's home leads nowhere: refused. The caller closes
    the fd."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or relative.startswith("/") or ".." in parts:
        raise UnsafeFile(f"{relative} is not a path inside the run folder")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, FOLDER, dir_fd=fd)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeFile(f"{relative}: {part} is not a folder (a link?)") from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def open_inside(root: str | os.PathLike[str], relative: str) -> tuple[int, os.stat_result]:
    """`open_regular` for `relative` inside `root`, no link followed on the way."""
    folder, name = open_parent(root, relative)
    try:
        return open_regular(name, dir_fd=folder)
    finally:
        os.close(folder)


def read_head(
    path: str | os.PathLike[str], limit: int, root: str | os.PathLike[str] | None = None
) -> tuple[bytes, bool]:
    """The first `limit` bytes of a regular file, and whether there was more. With `root`,
    `path` is relative to it and reached without following a link (`open_inside`)."""
    fd, info = open_regular(path) if root is None else open_inside(root, os.fspath(path))
    try:
        data = _read(fd, min(limit, info.st_size), os.fspath(path))
    finally:
        os.close(fd)
    return data, info.st_size > limit


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """A whole regular file, refused (before reading) when it is larger than `limit`."""
    fd, info = open_regular(path)
    try:
        if info.st_size > limit:
            raise UnsafeFile(
                f"{os.fspath(path)} is {info.st_size:,} bytes, over the limit of {limit:,}"
            )
        return _read(fd, info.st_size, os.fspath(path))
    finally:
        os.close(fd)


def _read(fd: int, size: int, name: str) -> bytes:
    deadline = time.monotonic() + DEADLINE_S
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
        if time.monotonic() > deadline:
            raise UnsafeFile(f"{name} could not be read within {DEADLINE_S:g}s")
    return b"".join(chunks)


# --- hashing -----------------------------------------------------------------------------------
#
# A digest is "<sha256 hex>/<bytes>" (the size it covered, so the next check can refuse a file
# of another size unread), "link:<sha256>" for a symbolic link (never followed), "special:<kind>"
# for anything else that is not a file or folder, or "missing".


def _size_of(digest: str | None) -> int | None:
    if not digest or "/" not in digest:
        return None
    raw = digest.rsplit("/", 1)[1]
    return int(raw) if raw.isdigit() else None


def _digest_file(path: str, expected_size: int | None) -> str:
    try:
        fd, info = open_regular(path)
    except UnsafeFile:
        return "special:" + kind_of(os.lstat(path).st_mode).replace(" ", "-")
    try:
        if expected_size is not None and info.st_size != expected_size:
            return f"size/{info.st_size}"
        digest = hashlib.sha256()
        deadline = time.monotonic() + DEADLINE_S
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
            if time.monotonic() > deadline:
                return "unreadable/slow"
        return f"{digest.hexdigest()}/{info.st_size}"
    finally:
        os.close(fd)


def _digest_folder(path: str, expected_size: int | None) -> str:
    """Every entry below `path`, in name order, links and special files by kind (never
    followed or opened), regular files by content; refused unread once the sizes add up to
    more than expected."""
    entries: list[tuple[str, os.stat_result]] = []
    total = 0
    for top, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(top, d))]):
            full = os.path.join(top, name)
            info = os.lstat(full)
            entries.append((full, info))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
        if expected_size is not None and total > expected_size:
            return f"size/{total}+"
    if expected_size is not None and total != expected_size:
        return f"size/{total}"
    digest = hashlib.sha256()
    for full, info in sorted(entries, key=lambda item: item[0]):
        digest.update(os.path.relpath(full, path).encode("utf-8", "surrogateescape") + b"\0")
        if stat.S_ISLNK(info.st_mode):
            digest.update(b"link:" + os.fsencode(os.readlink(full)))
        elif stat.S_ISREG(info.st_mode):
            digest.update(_digest_file(full, info.st_size).encode())
        else:
            digest.update(b"special:" + kind_of(info.st_mode).encode())
    return f"{digest.hexdigest()}/{total}"


def digest_path(path: str | os.PathLike[str], expected: str | None = None) -> str:
    """The digest of one locked path (file, folder, link or other); `expected` (an earlier
    digest of it) bounds what is read: a different size is reported without reading."""
    path = os.fspath(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return MISSING
    except OSError as error:
        return f"unreadable/{error.errno}"
    size = _size_of(expected)
    try:
        if stat.S_ISLNK(info.st_mode):
            target = os.fsencode(os.readlink(path))
            return "link:" + hashlib.sha256(b"link:" + target).hexdigest()
        if stat.S_ISREG(info.st_mode):
            return _digest_file(path, size)
        if stat.S_ISDIR(info.st_mode):
            return _digest_folder(path, size)
    except OSError as error:
        return f"unreadable/{error.errno}"
    return "special:" + kind_of(info.st_mode).replace(" ", "-")


def hash_files(
    root: str | os.PathLike[str], paths: Iterable[str], expected: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The digest of each path under `root`; with `expected`, each bounded by its expected size."""
    expected = expected or {}
    return {p: digest_path(os.path.join(os.fspath(root), p), expected.get(p)) for p in paths}


def changed_files(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


# --- copying an artefact out of a run ------------------------------------------------------------


def copy_regular(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    cap: int,
    dir_fd: int | None = None,
) -> int:
    """Copies a regular file of at most `cap` bytes (refused before copying when larger),
    keeping its holes: a sparse file stays sparse, and only its data is read. `dir_fd`: the
    folder `source` is relative to. Returns the file's size."""
    fd, info = open_regular(source, dir_fd=dir_fd)
    try:
        if info.st_size > cap:
            raise UnsafeFile(f"{os.fspath(source)} is {info.st_size:,} bytes, over {cap:,}")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            _copy_data(fd, out, info.st_size)
            os.ftruncate(out, info.st_size)
        except BaseException:
            os.unlink(target)  # half a file is worse than none: never left for a reader
            raise
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return info.st_size


def _copy_data(fd: int, out: int, size: int) -> None:
    offset = 0
    deadline = time.monotonic() + DEADLINE_S
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # only a hole is left
                return
            start = offset  # a file system without SEEK_DATA: copy it all
        try:
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError:
            end = size
        os.lseek(fd, start, os.SEEK_SET)
        os.lseek(out, start, os.SEEK_SET)
        while start < end:
            chunk = os.read(fd, min(CHUNK, end - start))
            if not chunk:
                return
            os.write(out, chunk)
            start += len(chunk)
            if time.monotonic() > deadline:
                raise UnsafeFile(f"copying took longer than {DEADLINE_S:g}s")
        offset = end


# --- what git leaves behind ------------------------------------------------------------------


def remove_special_files(root: str | os.PathLike[str]) -> list[str]:
    """Removes every FIFO, socket and device below `root` (no link followed): git's clean
    never lists them, so one run's would wait in the reused folder for the next run.
    Returns their paths, relative to `root`."""
    removed = []
    for top, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            full = os.path.join(top, name)
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(full).st_mode
                if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode)):
                    os.unlink(full)
                    removed.append(os.path.relpath(full, root))
    return removed
