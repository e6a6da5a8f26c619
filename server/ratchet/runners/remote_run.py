"""The run wrapper's entry on an ssh host or a Ray node: `BOOT` loads the shipped modules
(wrapper.py and its stdlib-only imports) from their text, then `main` makes the run's folder
afresh, runs `wrapper.execute` in it, and reports.

The report protocol, one for every runner: JSON lines `<marker> <kind> <json>` (kinds:
start, end, fail), each at most once. The marker is made per run by Ratchet and reaches the
wrapper on stdin (ssh) or in an environment variable it removes at once (Ray); the sandboxed
command never sees the wrapper (its own PID namespace). On ssh the reports go to stderr, a
channel the command never holds; on Ray, to the job's log (its only channel), each on a line
of its own. Ratchet reads them with output.Reports.

Standard library only (shipped as text).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from .artefacts import carry_artefacts
from .processes import PidsCgroup, kill_tree
from .wrapper import Control, RunSpec, execute

# The modules shipped, in load order (each imports only those before it).
MODULES = (
    "safe_files", "artefacts", "processes", "host_private", "sandbox", "sandbox_init", "wrapper",
    "remote_run",
)  # fmt: skip
FAILED = 97  # the wrapper could not ready the run (the report says why)

# Run with `python3 -c BOOT <mode> <token>`; ssh sends {"modules", "request"} on stdin, Ray
# puts them in RATCHET_MODULES and RATCHET_RUN. The token in argv lets a later run find this
# process by its command line (a lost run is ended by the next on its slot).
BOOT = r"""
import json, os, sys, types
if sys.argv[1] == "ray":
    texts, request = os.environ.pop("RATCHET_MODULES"), os.environ.pop("RATCHET_RUN")
    os.environ.pop("RATCHET_BOOT", None)
    texts, request = json.loads(texts), json.loads(request)
else:
    data = json.loads(sys.stdin.buffer.read())
    texts, request = data["modules"], data["request"]
package = types.ModuleType("ratchet_remote")
package.__path__ = []
sys.modules[package.__name__] = package
for name, text in texts:
    module = types.ModuleType("ratchet_remote." + name)
    module.__package__ = "ratchet_remote"
    sys.modules[module.__name__] = module
    exec(compile(text, "ratchet_remote/%s.py" % name, "exec"), module.__dict__)
sys.exit(sys.modules["ratchet_remote.remote_run"].main(sys.argv[1], request))
"""


@functools.cache
def module_texts() -> list[tuple[str, str]]:
    """What is shipped: each module's name and text (read on Ratchet's machine)."""
    folder = Path(__file__).parent
    return [(name, (folder / f"{name}.py").read_text(encoding="utf-8")) for name in MODULES]


class Reporter:
    """Writes the run's output and its reports; on a shared stream (Ray), every report on a
    line of its own."""

    def __init__(self, marker: str, out: IO[bytes], reports: IO[bytes]) -> None:
        self.marker, self.out, self.reports = marker, out, reports
        self.lock = threading.Lock()
        self.at_line_start = True

    def emit(self, chunk: bytes) -> None:
        with self.lock, contextlib.suppress(OSError):  # Ratchet gone: the run goes on unread
            self.out.write(chunk)
            self.out.flush()
            self.at_line_start = chunk.endswith(b"\n")

    def send(self, kind: str, value: dict[str, Any]) -> None:
        line = f"{self.marker} {kind} {json.dumps(value)}\n".encode()
        with self.lock, contextlib.suppress(OSError):
            if self.reports is self.out and not self.at_line_start:
                self.out.write(b"\n")
            self.reports.write(line)
            self.reports.flush()
            self.at_line_start = True


def main(mode: str, request: dict[str, Any]) -> int:
    out = sys.stdout.buffer
    reporter = Reporter(request.get("marker", ""), out, out if mode == "ray" else sys.stderr.buffer)
    if mode == "end":
        end_run(_expand(request["prefix"]), request["token"])
        return 0
    PidsCgroup.sweep()  # the process limits of wrappers that were killed (lost runs)
    control = Control()
    for signum in (signal.SIGTERM, signal.SIGINT):  # a stop: the run is killed, then reported
        signal.signal(signum, lambda *_: control.stop())
    runs = run_on_ray if mode == "ray" else run_on_ssh
    try:
        return runs(request, reporter, control)
    except Exception as error:  # the run's outcome is unknown: said, then lost
        reporter.send("fail", {"message": f"{type(error).__name__}: {error}"})
        return FAILED


def _report_run(spec: RunSpec, reporter: Reporter, control: Control, start: dict[str, Any]) -> int:
    reporter.send("start", start)
    end = execute(spec, reporter.emit, control)
    reporter.send("end", end)
    code = end["exit"]
    return 126 if code is None else (code if code >= 0 else 128 - code)


# --- ssh: the slot's folder, made afresh from the host's base copy -----------------------------


def run_on_ssh(request: dict[str, Any], reporter: Reporter, control: Control) -> int:
    root = _expand(request["root"])
    slot, token = request["slot"], request["token"]
    folder, prefix = f"{root}/slots/{slot}", f"{root}/run/{slot}"
    own = f"{prefix}.{token}"  # this run's files: its wrapper's PID and its process group
    os.makedirs(f"{root}/run", exist_ok=True)
    os.makedirs(f"{root}/slots", exist_ok=True)
    old = _read(f"{prefix}.token")
    if old and old != token:  # a run this slot lost earlier may still be going: end it
        end_run(prefix, old)
    Path(f"{prefix}.token").write_text(token)
    Path(f"{own}.wrapper").write_text(str(os.getpid()))

    def started(pid: int) -> None:  # its process group: what end_run kills
        Path(f"{own}.pgid").write_text(str(pid))

    control.on_start = started
    try:
        workdir = folder if request["carry"] is None else f"{folder}.eval"
        fresh_copy(f"{root}/base", workdir, request["drop"])
        if request["editable"]:
            Path(workdir, request["editable"]).write_text(request["editable_text"], "utf-8")
        # As the local clean room does, under the same caps. The notes are dropped: a name the
        # run chose must not reach the evaluator's output, which the metric is read from.
        carry_artefacts(Path(folder), request["carry"] or (), Path(workdir))
        spec = RunSpec.from_dict({**request["spec"], "run_dir": workdir})
        spec.hide = [root, *spec.hide]
        return _report_run(spec, reporter, control, {})
    finally:
        for name in (f"{own}.wrapper", f"{own}.pgid"):
            with contextlib.suppress(OSError):
                os.remove(name)
        if _read(f"{prefix}.token") == token:
            with contextlib.suppress(OSError):
                os.remove(f"{prefix}.token")


def end_run(prefix: str, token: str) -> None:
    """Ends a lost run (by its token): its wrapper, if that process is still the one with
    the token in its command line, then everything carrying the token or in its group."""
    own = f"{prefix}.{token}"
    wrapper = _read(f"{own}.wrapper")
    if wrapper.isdigit():
        with contextlib.suppress(OSError):
            if token.encode() in Path(f"/proc/{wrapper}/cmdline").read_bytes():
                os.kill(int(wrapper), signal.SIGKILL)
    group = _read(f"{own}.pgid")
    kill_tree(int(group) if group.isdigit() else None, token)
    for name in (f"{own}.wrapper", f"{own}.pgid"):
        with contextlib.suppress(OSError):
            os.remove(name)


def fresh_copy(source: str, target: str, drop: list[str]) -> None:
    """`target` made anew as a copy of `source` (links copied as links), less `drop`."""
    shutil.rmtree(target, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(target)  # a link or file left where the folder goes
    shutil.copytree(source, target, symlinks=True)
    for path in drop:
        doomed = Path(target, path)
        if doomed.is_dir() and not doomed.is_symlink():
            shutil.rmtree(doomed)
        elif os.path.lexists(doomed):
            doomed.unlink()


# --- Ray: the job's working_dir, copied afresh --------------------------------------------------


def run_on_ray(request: dict[str, Any], reporter: Reporter, control: Control) -> int:
    # Every run in a fresh copy: Ray reuses one unpacked working_dir for jobs of the same
    # content, so a run writing there would reach the next (a repeat, or the evaluator).
    shipped = os.getcwd()
    work = tempfile.mkdtemp(prefix="ratchet-run-")
    try:
        fresh_copy(shipped, work, request["drop"])
        for path, target in request["links"].items():  # Ray's upload followed them
            link = Path(work, path)
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            elif os.path.lexists(link):
                link.unlink()
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        spec = RunSpec.from_dict({**request["spec"], "run_dir": work})
        spec.hide = [shipped, *spec.hide]
        if request["gpu"]:  # the GPU Ray gave this job, and no other
            spec.variables["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
            if not spec.variables["CUDA_VISIBLE_DEVICES"]:
                reporter.emit(b"[ratchet] Ray set no CUDA_VISIBLE_DEVICES for this job\n")
        return _report_run(spec, reporter, control, {"hardware": hardware(request["gpu"])})
    finally:
        os.chdir(shipped)
        shutil.rmtree(work, ignore_errors=True)


def hardware(gpu: bool) -> dict[str, Any]:
    """The node's facts for the ledger: host, CPU, and the GPU this job sees."""
    info: dict[str, Any] = {"host": socket.gethostname(), "cpus": os.cpu_count() or 1}
    info.update(cpu="", gpu=None, gpu_count=0, driver=None)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    info["cuda_visible_devices"] = visible
    if gpu:
        gpus = _gpus(visible)
        if gpus:
            info.update(gpu=gpus[0][0], gpu_count=len(gpus), driver=gpus[0][1])
    return info


def _gpus(visible: str | None) -> list[tuple[str, str]]:
    query = ["nvidia-smi", "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"]
    try:
        rows = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    wanted = [v.strip() for v in visible.split(",")] if visible else None
    found = []
    for row in rows.strip().splitlines():
        index, uid, name, driver = [part.strip() for part in row.split(",")][:4]
        if wanted is None or index in wanted or uid in wanted:
            found.append((name, driver))
    return found


def _expand(path: str) -> str:
    return os.path.expanduser(path)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
