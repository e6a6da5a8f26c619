"""Evaluators as functions or files (issue 23): the way OpenEvolve and ShinkaEvolve write them.

`[metric] evaluate = "evaluator.py:evaluate"`: Ratchet calls `evaluate(program_path)` in the
clean room, and reads the dict it returns (OpenEvolve: a dict, or an object with `.metrics`).
The call is made by a small driver, Ratchet's own code, run as the evaluator's command in the
judging sandbox: it imports nothing of the project itself, and calls the function in a nested
sandbox (`isolate.Worker`: its own PID namespace, every file read-only but a private /tmp),
where the evaluator imports the edited program. The answer comes back over the worker's pipe,
not its output; the driver prints the child's output, then one line naming a random token
that only it and Ratchet know (in its argv, which the nested child cannot read: it has no
/proc of the driver's). What the edited code prints, at exit or at any time, is never read as
the metric.

`[metric] file = "results/metrics.json"` (ShinkaEvolve: `metrics.json` and `correct.json` in
a results folder): the metric is `key` of that JSON file, read defensively after the
evaluator (or the command) ran, from the folder it ran in; `correct.json` beside it, when
there, must not say `"correct": false`.

Either way an `error` or `correct: false` is a failure with its reason, never a zero.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import shlex
import zlib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from .config import MetricConfig
from .experiment import Measurement
from .runners.safe_files import read_head

MARK = "ratchet-evaluate"  # the driver's result line: MARK TOKEN JSON
MAX_METRICS_FILE = 1 << 20  # bytes of a metrics file read; a larger one is a failure
CORRECT_FILE = "correct.json"

# The nested child: imports the evaluator file and answers each call with the numbers of the
# dict it returned (WORKER's protocol, isolate.py). A traceback goes to the child's output.
EVALUATE_WORKER = r"""
import importlib, json, math, os, sys, traceback
answers = os.fdopen(3, "w")
requests = sys.stdin
sys.stdin = open(os.devnull)
folder, name = os.path.split(sys.argv[1])
sys.path.insert(0, os.path.abspath(folder or "."))
def plain(result):
    metrics = result if isinstance(result, dict) else getattr(result, "metrics", None)
    if not isinstance(metrics, dict):
        raise TypeError("it returned %s, not a dict of metrics (or an object with .metrics)"
                        % type(result).__name__)
    out = {}
    for key, value in metrics.items():
        key = str(key)
        if isinstance(value, bool) or value is None:
            out[key] = value
        elif isinstance(value, str):
            out[key] = value[:2000]
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            out[key] = number if math.isfinite(number) else repr(number)
    return out
def say(answer):
    answers.write(json.dumps(answer) + "\n")
    answers.flush()
try:
    module = importlib.import_module(name[:-3] if name.endswith(".py") else name)
except BaseException:
    say({"error": traceback.format_exc(limit=-8)})
    sys.exit(1)
say({"ready": True})
for line in requests:
    request = json.loads(line)
    try:
        value = plain(getattr(module, request["function"])(*request["args"]))
        sys.stdout.flush()
        say({"id": request["id"], "value": value})
    except BaseException as error:
        traceback.print_exc()
        sys.stdout.flush()
        say({"id": request["id"], "error": "%s: %s" % (type(error).__name__, error)})
"""

# The driver, after isolate.py's text: `DRIVER TOKEN FILE:FUNCTION PROGRAM SECONDS`.
DRIVER = r"""

def _ratchet_evaluate(argv):
    token, target, program, limit = argv[0], argv[1], argv[2], float(argv[3])
    path, function = target.rsplit(":", 1)
    worker, answer, output = None, {}, ""
    try:
        worker = Worker(".", path, timeout_s=limit, script=EVALUATE_WORKER)
        value, seconds = worker.call(function, os.path.abspath(program))
        answer = {"metrics": value, "seconds": seconds}
    except CallFailed as error:
        text = str(error)
        if "before the deadline" in text:
            text = "%s ran past its limit of %.0fs (killed)" % (target, limit)
        answer = {"error": text}
    except IsolationError as error:
        answer = {"error": "no nested sandbox could be made for %s: %s" % (target, error)}
    finally:
        if worker is not None:
            worker.close()  # its output read to the end: what it printed before answering
            output = worker.output
    if output:
        sys.stdout.write(output if output.endswith("\n") else output + "\n")
    metrics = answer.get("metrics") or {}
    if metrics:
        print("---")
        for key, value in metrics.items():
            print("%s: %s" % (key, value))
    print("%s %s %s" % (MARK, token, json.dumps(answer)), flush=True)


_ratchet_evaluate(sys.argv[1:])
"""


@cache
def _payload() -> str:
    """isolate.py, the worker and the driver, as one compressed `python -c` program."""
    isolate = (Path(__file__).parent / "isolate.py").read_text(encoding="utf-8")
    source = isolate + f"\nEVALUATE_WORKER = {EVALUATE_WORKER!r}\nMARK = {MARK!r}\n" + DRIVER
    packed = base64.b64encode(zlib.compress(source.encode(), 9)).decode()
    return f'import base64,zlib;exec(zlib.decompress(base64.b64decode("{packed}")))'


def new_token() -> str:
    return secrets.token_urlsafe(18)


def driver_limit(limit_s: float) -> float:
    """The nested call's own deadline: inside the evaluator's, so the driver can say why."""
    return max(1.0, limit_s * 0.9 - 1.0)


def evaluate_command(metric: MetricConfig, program: str, token: str, limit_s: float) -> str:
    """The evaluator's command line for `evaluate`: the driver, run by `[metric] python`."""
    python = metric.python or "python3"
    words = [_payload(), token, metric.evaluate or "", program, f"{driver_limit(limit_s):g}"]
    return f"{python} -I -c " + " ".join(shlex.quote(word) for word in words)


def describe_command(metric: MetricConfig, program: str) -> str:
    """How the evaluator's command reads in words (the real one holds the driver's code)."""
    return f"{metric.python or 'python3'} <ratchet driver> {metric.evaluate} {program}"


class EvaluateReader:
    """Fed the evaluator's output: reads only the driver's line with this run's token."""

    def __init__(self, config: MetricConfig, token: str) -> None:
        self._config = config
        self._prefix = f"{MARK} {token} "
        self._answer: dict[str, Any] | None = None

    def feed(self, line: str) -> None:
        if line.startswith(self._prefix) and self._answer is None:
            try:
                answer = json.loads(line[len(self._prefix) :])
            except ValueError:
                return
            if isinstance(answer, dict):
                self._answer = answer

    def result(self) -> Measurement:
        where = f"`{self._config.evaluate}`"
        if self._answer is None:
            return Measurement(None, {}, f"{where} gave no answer (the driver did not finish)")
        if "error" in self._answer:
            return Measurement(None, {}, f"{where} failed: {_short(self._answer['error'])}")
        metrics = self._answer.get("metrics")
        if not isinstance(metrics, dict):
            return Measurement(None, {}, f"{where} gave no metrics")
        return measured(self._config, metrics, where)


def measured(config: MetricConfig, metrics: dict[str, Any], where: str) -> Measurement:
    """The metric and the secondary numbers of an evaluator's dict; its `error` or
    `correct: false` is a failure with the reason, never a zero."""
    key = config.metric_key
    secondary = {
        str(k): float(v)
        for k, v in metrics.items()
        if k != key and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    error = metrics.get("error")
    if error not in (None, "", False):
        return Measurement(None, secondary, f"{where} reported an error: {_short(error)}")
    if metrics.get("correct") is False:
        return Measurement(
            None, secondary, f"{where} judged the program incorrect (correct: false)"
        )
    if key not in metrics:
        keys = ", ".join(sorted(str(k) for k in metrics)) or "nothing"
        return Measurement(None, secondary, f"{where} has no `{key}` (it has {keys})")
    value = metrics[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Measurement(None, secondary, f"{key} is {value!r}, not a finite number")
    return Measurement(float(value), secondary)


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 300 else text[:297] + "..."


def clear_metric_files(folder: Path, relative: str) -> None:
    """The metrics file and correct.json beside it, removed before the step that writes them
    (a committed or earlier one is not this run's). Never through a link."""
    from .cleanroom import remove_eval_only

    remove_eval_only(folder, (relative, correct_path(relative)))


def correct_path(relative: str) -> str:
    return str(PurePosixPath(relative).parent / CORRECT_FILE)


def read_metric_file(config: MetricConfig, folder: Path) -> Measurement:
    """`[metric] file` in `folder`, and correct.json beside it when there. A link, a FIFO or
    anything but a regular file raises UnsafeFile (the run is voided)."""
    relative = config.file or ""
    where = f"`{relative}`"
    correct = _json_file(folder, correct_path(relative))
    if isinstance(correct, dict) and correct.get("correct") is False:
        reason = correct.get("error") or "correct: false"
        return Measurement(
            None, {}, f"the evaluator judged the program incorrect ({_short(reason)})"
        )
    metrics = _json_file(folder, relative)
    if metrics is _ABSENT:
        return Measurement(None, {}, f"the evaluator wrote no {where}")
    if not isinstance(metrics, dict):
        return Measurement(None, {}, f"{where} is not a JSON object of metrics")
    return measured(config, metrics, where)


_ABSENT = object()


def _json_file(folder: Path, relative: str) -> Any:
    """The JSON in a file of `folder`; _ABSENT when there is none, None when it is not JSON."""
    try:
        data, more = read_head(relative, MAX_METRICS_FILE, root=folder)
    except (FileNotFoundError, NotADirectoryError):
        return _ABSENT
    if more:
        return f"over {MAX_METRICS_FILE} bytes"
    try:
        return json.loads(data.decode("utf-8", errors="replace"))
    except ValueError:
        return None
