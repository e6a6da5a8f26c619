"""A run's output as every runner handles it: bytes in, whole lines out, to the log file
(secrets removed, its size capped), the tail and the engine; and the wrapper's reports
(remote_run.py's protocol) taken out of the stream before any of that."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..redaction import redact_text

TAIL_LINES = 200
MAX_LOG_BYTES = 64 << 20  # a run that prints more still runs; its log stops growing here
CHUNK = 1 << 16
REPORT_KINDS = ("start", "end", "fail")

OnLine = Callable[[str], None]


_ENDS = re.compile(rb"\r\n|\n|\r")
CARRIAGE_LOG_S = 1.0  # a progress line ended by a bare \r is logged at most this often


class LineSplitter:
    """Bytes in, whole decoded lines out. A line ends with \n, \r\n or a bare \r: a progress
    bar or `print(f"\\rstep {n}", end="")` redraws its line with \r and may write no \n for
    minutes, and each redraw is a line for live progress and the metric's curve."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        return [text for text, _ in self.feed_marked(chunk)]

    def feed_marked(self, chunk: bytes) -> list[tuple[str, bool]]:
        """The lines completed by this chunk, each with whether a bare \r ended it."""
        data = self._pending + chunk
        lines: list[tuple[str, bool]] = []
        start = 0
        for end in _ENDS.finditer(data):
            if end.group() == b"\r" and end.end() == len(data):
                break  # perhaps the first half of \r\n: wait for the next chunk
            segment = data[start : end.start()]
            start = end.end()
            carriage = end.group() == b"\r"
            if segment or not carriage:  # `\rstep 1`: nothing before the first \r
                lines.append((self._decode(segment), carriage))
        self._pending = data[start:]
        if len(self._pending) > CHUNK:  # a line with no end: flush it in pieces
            lines.append((self._decode(self._pending), False))
            self._pending = b""
        return lines

    def flush(self) -> list[str]:
        rest, self._pending = self._pending.rstrip(b"\r"), b""
        return [self._decode(rest)] if rest else []

    @staticmethod
    def _decode(raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        return text.replace("\0", "\ufffd")  # binary junk: no NUL reaches the ledger


class LogWriter:
    """A run's log file, line by line, with every secret removed, and no larger than
    `limit` bytes (a huge output fills no disk)."""

    def __init__(
        self, log_path: Path, secrets: tuple[str, ...] = (), limit: int = MAX_LOG_BYTES
    ) -> None:
        self._log = open(log_path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self._secrets = secrets
        self._limit = limit
        self._written = 0

    def redact(self, text: str) -> str:
        return redact_text(text, self._secrets)

    def line(self, text: str) -> str:
        clean = redact_text(text, self._secrets)
        if self._written <= self._limit:
            self._written += len(clean) + 1
            self._log.write(clean + "\n")
            if self._written > self._limit:
                self._log.write(f"... (log cut at {self._limit >> 20} MiB)\n")
        return clean

    def flush(self) -> None:
        """After each chunk read: whoever tails the log (the editor, a person) sees it live."""
        self._log.flush()

    def close(self) -> None:
        self._log.close()


class Reports:
    """The wrapper's reports, found by the run's marker: each kind at most once, valid JSON
    objects only. Anything else under the marker (a second `end`, say) is a forgery, and the
    run's result is not believed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.found: dict[str, dict[str, Any]] = {}
        self.forged: str | None = None

    def take(self, line: str) -> bool:
        """True when `line` is a report (kept here, never shown as output)."""
        if not line.startswith(self.marker + " "):
            return False
        kind, _, value = line[len(self.marker) + 1 :].partition(" ")
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if kind not in REPORT_KINDS or not isinstance(data, dict) or kind in self.found:
            self.forged = f"the run's report was forged (a second or malformed `{kind}`)"
        else:
            self.found[kind] = data
        return True

    def get(self, kind: str) -> dict[str, Any] | None:
        return self.found.get(kind)


class OutputSink:
    """One run's output: to its log, its tail and the engine; marker lines to `reports`."""

    def __init__(
        self,
        log_path: Path,
        on_line: OnLine,
        secrets: tuple[str, ...] = (),
        reports: Reports | None = None,
        limit: int = MAX_LOG_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._on_line = on_line
        self._splitter = LineSplitter()
        self._log = LogWriter(log_path, secrets, limit)
        self._reports = reports
        self.received = 0  # bytes fed so far
        self._clock = clock
        self._carriage_logged: float | None = None  # when a \r-ended line was last logged

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        for line, carriage in self._splitter.feed_marked(chunk):
            self._line(line, carriage)
        self._log.flush()

    def say(self, line: str) -> None:
        """Ratchet's own line about the run (`[ratchet] lost: ...`)."""
        self._line(line)
        self._log.flush()

    def _line(self, line: str, carriage: bool = False) -> None:
        if self._reports is not None and self._reports.take(line):
            return
        if carriage and not self._log_carriage():
            self._on_line(self._log.redact(line))  # live progress only: the log stays small
            return
        clean = self._log.line(line)
        self.tail.append(clean)
        self._on_line(clean)

    def _log_carriage(self) -> bool:
        """Whether a line redrawn by \r goes to the log and the tail too: one a second, so a
        progress bar redrawn a thousand times a second fills neither."""
        now = self._clock()
        if self._carriage_logged is not None and now - self._carriage_logged < CARRIAGE_LOG_S:
            return False
        self._carriage_logged = now
        return True

    def flush(self) -> None:
        """The last line, had it no end."""
        for line in self._splitter.flush():
            self._line(line)
        self._log.flush()

    def close(self) -> None:
        self.flush()
        self._log.close()
