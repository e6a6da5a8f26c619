"""A run's output as every runner handles it: bytes in, whole lines out, to the log file
(secrets removed, its size capped), the tail and the engine; and the wrapper's reports
(remote_run.py's protocol) taken out of the stream before any of that."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..traces import redact_text

TAIL_LINES = 200
MAX_LOG_BYTES = 64 << 20  # a run that prints more still runs; its log stops growing here
CHUNK = 1 << 16
REPORT_KINDS = ("start", "end", "fail")

OnLine = Callable[[str], None]


class LineSplitter:
    """Bytes in, whole decoded lines out; a carriage return (progress bars) keeps its last part."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        if len(self._pending) > CHUNK:  # a line with no end: flush it in pieces
            lines.append(self._pending)
            self._pending = b""
        return [self._decode(line) for line in lines]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [self._decode(rest)] if rest else []

    @staticmethod
    def _decode(raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1]
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
    ) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._on_line = on_line
        self._splitter = LineSplitter()
        self._log = LogWriter(log_path, secrets, limit)
        self._reports = reports
        self.received = 0  # bytes fed so far

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        for line in self._splitter.feed(chunk):
            self._line(line)
        self._log.flush()

    def say(self, line: str) -> None:
        """Ratchet's own line about the run (`[ratchet] lost: ...`)."""
        self._line(line)
        self._log.flush()

    def _line(self, line: str) -> None:
        if self._reports is not None and self._reports.take(line):
            return
        clean = self._log.line(line)
        self.tail.append(clean)
        self._on_line(clean)

    def flush(self) -> None:
        """The last line, had it no end."""
        for line in self._splitter.flush():
            self._line(line)
        self._log.flush()

    def close(self) -> None:
        self.flush()
        self._log.close()
