"""The text of ratchet.toml: parsed, and where each table and key is written in it.

tomllib gives values without positions, so a light pass over the lines finds them; every
error then names `file:line:col` and the editor can put a diagnostic on the range.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from typing import Any

CONFIG_NAME = "ratchet.toml"


@dataclass(eq=False)
class ConfigError(Exception):
    """A mistake in ratchet.toml, located at 1-based line and column."""

    path: str
    line: int
    col: int
    message: str
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


@dataclass(frozen=True)
class Span:
    line: int  # 1-based
    col: int  # 1-based, first character
    end_col: int  # 1-based, one past the last character


_TABLE_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]")
_KEY_LINE = re.compile(r"^(\s*)([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*=\s*")


class Source:
    """Finds where a table or a key of ratchet.toml is written, for located errors."""

    def __init__(self, text: str, shown: str) -> None:
        self.shown = shown  # the file's name in messages
        self.tables: dict[str, Span] = {}
        self.keys: dict[tuple[str, str], Span] = {}
        self.values: dict[tuple[str, str], Span] = {}
        table = ""
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.split("#", 1)[0] if not line.lstrip().startswith(("'", '"')) else line
            if header := _TABLE_HEADER.match(stripped):
                table = header.group(1).strip().strip("\"'")
                start = line.index("[") + 1
                self.tables.setdefault(table, Span(number, start, len(line.rstrip()) + 1))
                continue
            if key := _KEY_LINE.match(line):
                name = key.group(2).strip("\"'")
                col = len(key.group(1)) + 1
                self.keys.setdefault((table, name), Span(number, col, col + len(key.group(2))))
                value_start = key.end() + 1
                value_text = line[key.end() :].split(" #", 1)[0].rstrip()
                self.values.setdefault(
                    (table, name), Span(number, value_start, value_start + max(1, len(value_text)))
                )

    def key(self, table: str, name: str) -> Span:
        return self.keys.get((table, name)) or self.table(table)

    def value(self, table: str, name: str) -> Span:
        return self.values.get((table, name)) or self.table(table)

    def table(self, table: str) -> Span:
        return self.tables.get(table) or Span(1, 1, 2)

    def error(self, span: Span, message: str) -> ConfigError:
        return ConfigError(self.shown, span.line, span.col, message, span.end_col)


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse_toml(source: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        line, col = (int(position.group(1)), int(position.group(2))) if position else (1, 1)
        plain = _TOML_POSITION.sub("", message).strip().rstrip(".")
        raise ConfigError(
            path, line, col, f"this is not valid TOML ({plain}); check quotes, brackets and '='"
        ) from None


def nearest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if close:
        return f'did you mean "{close[0]}"?'
    return "valid keys here are " + ", ".join(options)
