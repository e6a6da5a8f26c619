"""A nested sandbox for a locked evaluator to run the edited code in (standard library only).

An evaluator that imports the code it scores, or runs it as a plain child, shares its
process tree with it: the code can open the evaluator's output through
`/proc/<pid>/fd/1`, stop the evaluator, rewrite its clock, or leave a daemon that prints
`accuracy: 1.0` after the evaluator's last line. Here the code runs instead in namespaces
of its own, made with `unshare(2)` (no bubblewrap needed: inside Ratchet's sandbox a
nested bubblewrap cannot map its user, while an unmapped user namespace works):

- its own PID namespace: no process outside is visible or can be signalled, and all it
  starts die with it (when its first process ends, at the deadline, or with the evaluator);
- no /proc of the evaluator's (an empty folder with a few machine-wide files bound back:
  cpuinfo, meminfo, ...), so no `/proc/<pid>/fd` of anything outside;
- every file read-only but a private /tmp; its own IPC and (unless `network=True`)
  network namespace; no descriptor of the evaluator's but the pipes given to it;
- a deadline, and output read only up to a size.

`run_isolated(argv, ...)` runs a program so and returns its exit code and output.
`Worker(folder, module)` imports one module in such a child and calls its functions with
JSON arguments; the answers come back over a pipe the evaluator owns, each naming its
question's random id (one written before its question, or naming another, is refused), and
each call's wall time is measured here, around a child that cannot touch this process's clock.

Linux only. Run by hand where user namespaces are off, `IsolationError` says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_OUTPUT = 16 << 20  # bytes of a child's output kept; the rest is read and dropped
PROC_FILES = ("cpuinfo", "meminfo", "stat", "loadavg", "uptime", "version", "driver")

# Run as `python -I -S -c BOOT SPEC ARGV...` (single-threaded, as unshare(CLONE_NEWUSER)
# needs): it leaves the evaluator's namespaces, forks the new PID namespace's first process,
# which execs ARGV, and waits for it. Its own death kills that process (PR_SET_PDEATHSIG),
# and that process's end kills every process in the namespace.
BOOT = r"""
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        error = ctypes.get_errno()
        sys.stderr.write("ratchet.isolate: %s failed: %s\n" % (what, os.strerror(error)))
        os._exit(125)
def mount(source, target, kind, flags):
    check(libc.mount(source, target, kind, ctypes.c_ulong(flags), None), "mount " + target.decode())
check(libc.prctl(1, 9, 0, 0, 0), "PR_SET_PDEATHSIG")
if os.getppid() != spec["parent"]:
    os._exit(125)
check(libc.unshare(spec["flags"]), "unshare")
mount(None, b"/", None, (1 << 14) | (1 << 18))  # MS_REC | MS_PRIVATE: nothing leaks back
scratch, cwd, BIND, REC = spec["scratch"], spec["cwd"], 4096, 16384
def bind(source, target, flags=0):
    mount(source.encode(), target.encode(), None, BIND | flags)
for kept in spec["keep"]:  # its folder and interpreter, brought back under the private /tmp
    os.makedirs(scratch + kept, exist_ok=True)
    bind(kept, scratch + kept, REC)
for name in spec["proc"]:
    bind("/proc/" + name, scratch + "/proc/" + name, REC)
bind(scratch + "/proc", "/proc", REC)
bind(scratch + "/shm", "/dev/shm")
bind(scratch + "/tmp", "/tmp", REC)
class Attr(ctypes.Structure):
    _fields_ = [("set", ctypes.c_uint64), ("clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns", ctypes.c_uint64)]
def setattr_(path, flags, attr):  # mount_setattr(2), syscall 442, AT_FDCWD
    size = ctypes.sizeof(attr)
    check(libc.syscall(442, -100, path, flags, ctypes.byref(attr), size), "mount_setattr")
setattr_(b"/", 0x8000, Attr(1 | 2, 0, 0, 0))  # AT_RECURSIVE: every mount read-only, nosuid
for path in (b"/tmp", b"/dev/shm"):  # but these two (their submounts stay read-only)
    setattr_(path, 0, Attr(0, 1, 0, 0))
for fd, target in spec["fds"]:
    if fd != target:
        os.dup2(fd, target)
        os.close(fd)
child = os.fork()
if child == 0:
    check(libc.prctl(1, 9, 0, 0, 0), "PR_SET_PDEATHSIG")
    check(libc.prctl(38, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    os.chdir(cwd)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as error:
        sys.stderr.write("ratchet.isolate: cannot run %s: %s\n" % (sys.argv[2], error))
        os._exit(127)
_, status = os.waitpid(child, 0)
os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000


class IsolationError(RuntimeError):
    """The nested sandbox could not be made here, or the child broke its protocol."""


@dataclass(frozen=True)
class Result:
    exit_code: int | None  # None: killed at the deadline
    output: bytes  # stdout and stderr, together, up to MAX_OUTPUT bytes
    timed_out: bool


class _Child:
    """One child in its nested sandbox: started, its output drained, killed at the end."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str] | None,
        network: bool,
        answers: bool,
    ) -> None:
        if not sys.platform.startswith("linux"):
            raise IsolationError("ratchet.isolate needs Linux (user and PID namespaces)")
        self.scratch = tempfile.mkdtemp(prefix="ratchet-isolate-")
        for name in ("proc", "shm", "tmp"):
            os.mkdir(os.path.join(self.scratch, name))
        proc = [n for n in PROC_FILES if os.path.exists(os.path.join("/proc", n))]
        for name in proc:  # the mount points of what /proc shows: empty files and folders
            target = Path(self.scratch, "proc", name)
            if os.path.isdir(os.path.join("/proc", name)):
                target.mkdir()
            else:
                target.touch()
        flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
        self.answers_fd: int | None = None
        fds: list[tuple[int, int]] = []
        if answers:
            self.answers_fd, write_end = os.pipe()
            fds.append((write_end, 3))
        spec = {
            "parent": os.getpid(),
            "flags": flags if network else flags | CLONE_NEWNET,
            "scratch": self.scratch,
            "proc": proc,
            "cwd": os.path.abspath(cwd),
            "keep": _under_tmp(os.path.abspath(cwd), sys.prefix, os.path.dirname(sys.executable)),
            "fds": fds,
        }
        child_env = dict(os.environ if env is None else env)
        child_env.update(TMPDIR="/tmp", PYTHONDONTWRITEBYTECODE="1")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", BOOT, json.dumps(spec), *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=self.scratch,
                pass_fds=[fd for fd, _ in fds],
                start_new_session=True,
            )
        except OSError as error:
            self.close()
            raise IsolationError(f"cannot start the isolated child: {error}") from error
        finally:
            for fd, _ in fds:
                os.close(fd)
        self._output = bytearray()
        assert self.process.stdout is not None
        self._drain = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._drain.start()

    def _read(self, stream: Any) -> None:
        while chunk := stream.read1(1 << 16):
            if len(self._output) < MAX_OUTPUT:
                self._output += chunk[: MAX_OUTPUT - len(self._output)]

    @property
    def output(self) -> bytes:
        return bytes(self._output)

    def wait(self, deadline: float) -> int | None:
        """The exit code, or None when it ran past the deadline (it is killed then)."""
        try:
            code = self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._drain.join(timeout=5)
        return code

    def kill(self) -> None:
        """Its first process and the boot process die: the namespace dies with them."""
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        process = getattr(self, "process", None)
        if process is not None:
            if process.poll() is None:
                self.kill()
            self._drain.join(timeout=5)
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        if self.answers_fd is not None:
            os.close(self.answers_fd)
            self.answers_fd = None
        shutil.rmtree(self.scratch, ignore_errors=True)


def _under_tmp(*paths: str) -> list[str]:
    """The folders of `paths` that lie under /tmp (which the child sees empty), outermost
    first and each once: bound back read-only."""
    kept: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths if p.startswith("/tmp/")}):
        if os.path.isdir(path) and not any(path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def run_isolated(
    argv: Sequence[str],
    *,
    timeout_s: float,
    input: bytes | None = None,
    cwd: str | os.PathLike[str] = ".",
    env: Mapping[str, str] | None = None,
    network: bool = False,
) -> Result:
    """Runs `argv` in a nested sandbox (see the module's text), `input` on its stdin, and
    returns its exit code and output; past `timeout_s` it is killed with all it started."""
    deadline = time.monotonic() + timeout_s
    child = _Child(argv, cwd=cwd, env=env, network=network, answers=False)
    try:
        assert child.process.stdin is not None
        feeder = threading.Thread(target=_feed, args=(child.process.stdin, input or b""))
        feeder.daemon = True
        feeder.start()
        code = child.wait(deadline)
        if code == 125 and b"ratchet.isolate:" in child.output:
            raise IsolationError(child.output.decode(errors="replace").strip().splitlines()[-1])
        return Result(code, child.output, code is None)
    finally:
        child.close()


def _feed(stream: Any, data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except OSError:  # the child stopped reading: its loss
        pass


# The worker: imports the module and answers one JSON line per request on fd 3, a pipe that
# only the evaluator reads; what the module prints goes to the child's output instead. An
# answer is JSON, and names the request's id; a dataclass is sent as its fields.
WORKER = r"""
import json, os, sys, traceback
answers = os.fdopen(3, "w")
requests = sys.stdin
sys.stdin = open(os.devnull)
sys.path.insert(0, "")
def plain(value):  # a dataclass answers with its fields
    if hasattr(value, "__dataclass_fields__"):
        return {name: getattr(value, name) for name in value.__dataclass_fields__}
    raise TypeError("%s is not JSON" % type(value).__name__)
def say(answer):
    answers.write(json.dumps(answer, default=plain) + "\n")
    answers.flush()
try:
    module = __import__(sys.argv[1])
except BaseException:
    say({"error": traceback.format_exc(limit=-8)})
    sys.exit(1)
say({"ready": True})
for line in requests:
    request = json.loads(line)
    try:
        say({"id": request["id"], "value": getattr(module, request["function"])(*request["args"])})
    except BaseException as error:
        say({"id": request["id"], "error": "%s: %s" % (type(error).__name__, error)})
"""


class CallFailed(Exception):
    """The function raised, or the child gave no valid answer (its message says which)."""


class Worker:
    """A module of `folder` imported in a nested sandbox; `call` runs one of its functions
    there and returns the answer (JSON) and the seconds it took, measured here."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        module: str,
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        network: bool = False,
        script: str = WORKER,
    ) -> None:
        """`script` (default WORKER) is the child's program, given `module` as its argument;
        another script must speak WORKER's protocol."""
        self.deadline = time.monotonic() + timeout_s  # for the worker's whole life
        argv = [sys.executable, "-u", "-c", script, module]
        self._child = _Child(argv, cwd=folder, env=env, network=network, answers=True)
        self._pending = b""
        try:
            first = self._answer()
        except CallFailed:
            self.close()
            raise
        if first != {"ready": True}:
            self.close()
            raise CallFailed(f"{module} did not start: {first.get('error', first)}")

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def output(self) -> str:
        """What the child printed so far (its own prints and tracebacks)."""
        return self._child.output.decode(errors="replace")

    def call(self, function: str, *args: Any) -> tuple[Any, float]:
        """`function(*args)` in the child: its JSON answer and the wall time from sending
        the request to reading the whole answer. CallFailed when it raised or gave none, or
        when its answer was written before the question or does not name the question's id
        (the code wrote it, not the worker: it would be timed as instant)."""
        stdin, fd = self._child.process.stdin, self._child.answers_fd
        if stdin is None or fd is None:
            raise CallFailed("the child was stopped")
        self._refuse_early_answer(fd)
        nonce = secrets.token_hex(8)
        request = {"id": nonce, "function": function, "args": list(args)}
        started = time.perf_counter()
        try:
            stdin.write((json.dumps(request) + "\n").encode())
            stdin.flush()
        except OSError as error:
            raise CallFailed(f"the child is gone: {error}") from error
        line = self._line()
        elapsed = time.perf_counter() - started  # its answer is all here: parsing not counted
        answer = self._parse(line)
        if answer.get("id") != nonce:
            self.close()
            raise CallFailed(f"an answer to another question: {str(answer)[:200]}")
        if "error" in answer:
            raise CallFailed(str(answer["error"]))
        if "value" not in answer:
            raise CallFailed(f"not an answer: {str(answer)[:200]}")
        return answer["value"], elapsed

    def _refuse_early_answer(self, fd: int) -> None:
        """What is on the answers pipe before a question was written by the code, not by the
        worker (an answer planted ahead of time, timed as instant): refused."""
        if not self._pending and select.select([fd], [], [], 0)[0]:
            self._pending = os.read(fd, 1 << 20)
            if not self._pending:
                raise CallFailed("the child ended without answering: " + self.output[-2000:])
        if self._pending:
            self.close()
            raise CallFailed("an answer was written before the question: refused")

    def _answer(self) -> dict[str, Any]:
        return self._parse(self._line())

    def _line(self) -> bytes:
        """The child's next line on the answers pipe, read until the worker's deadline."""
        fd = self._child.answers_fd
        if fd is None:
            raise CallFailed("the child was stopped")
        while b"\n" not in self._pending:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.close()
                raise CallFailed("no answer before the deadline (killed)")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self._child.wait(time.monotonic() + 5)  # its last output read, to be said
                raise CallFailed("the child ended without answering: " + self.output[-2000:])
            self._pending += chunk
            if len(self._pending) > MAX_OUTPUT:
                self.close()
                raise CallFailed(f"an answer longer than {MAX_OUTPUT} bytes")
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(line)
        except ValueError as error:
            raise CallFailed(f"not JSON: {line[:200]!r}") from error
        if not isinstance(answer, dict):
            raise CallFailed(f"not an answer: {line[:200]!r}")
        return answer

    def close(self) -> None:
        self._child.close()


def available() -> str | None:
    """Why no nested sandbox can be made here (None: it can); runs `true` in one."""
    try:
        result = run_isolated(["true"], timeout_s=20, cwd=Path.cwd())
    except IsolationError as error:
        return str(error)
    return None if result.exit_code == 0 else result.output.decode(errors="replace")[-500:]
