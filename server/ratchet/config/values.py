"""The checks of one value of ratchet.toml, each raising Invalid with how to fix it.

Each check takes what TOML gave and returns the typed value its field holds; model.py names
the check beside each field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Invalid(ValueError):
    """A value of the right key that is wrong; the message says how to fix it."""


# --- durations ------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """`90s`, `5m`, `1h`, `250ms` or a bare number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "90s", "5m" or "1h"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(
            f'{value!r} is not a duration: write a number and a unit, such as "90s", "5m" or "1h"'
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError('a duration must be more than zero, such as "90s" or "5m"')
    return seconds


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise Invalid(str(error)) from None


# --- strings ----------------------------------------------------------------------------


def string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("expected a non-empty string in quotes")
    return value


def string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (string(value),)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Invalid('expected a list of strings, such as ["prepare.py"]')
    return tuple(value)


def choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            listed = " or ".join(f'"{o}"' for o in options)
            raise Invalid(f"{value!r} is not allowed here; use {listed}")
        return str(value)

    return check


_FUNCTION = re.compile(r"([^:]+\.py):([A-Za-z_][A-Za-z0-9_]*)")


def function(value: Any) -> str:
    text = string(value).strip()
    if not _FUNCTION.fullmatch(text):
        raise Invalid(
            'expected a Python file and a function in it, such as "evaluator.py:evaluate"'
        )
    return text


def regex(value: Any) -> str:
    text = string(value)
    try:
        compiled = re.compile(text)
    except re.error as error:
        raise Invalid(f"not a valid regular expression ({error})") from None
    if compiled.groups != 1:
        raise Invalid(
            f"the pattern has {compiled.groups} capturing groups; it needs exactly one, around "
            "the number (write others as (?:...)), e.g. 'bpb=([0-9.]+)'"
        )
    return text


def host_list(value: Any) -> tuple[str, ...]:
    hosts = string_list(value)
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise Invalid(f'{host!r} is not host:port; write e.g. ["api.example.com:443"]')
    ports = [host.rpartition(":")[2] for host in hosts]
    shared = sorted({port for port in ports if ports.count(port) > 1})
    if shared:  # a run reaches each host at 127.0.0.1:<its port>, so one host per port
        raise Invalid(f"two hosts share port {shared[0]}; a run can reach one host per port")
    return hosts


# --- numbers ----------------------------------------------------------------------------


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Invalid("expected a finite number, such as 0.001")
    return float(value)


def non_negative(value: Any) -> float:
    checked = number(value)
    if checked < 0:
        raise Invalid("expected a number of zero or more")
    return checked


def positive(value: Any) -> float:
    checked = number(value)
    if checked <= 0:
        raise Invalid("expected a number greater than zero")
    return checked


def fraction(value: Any) -> float:
    checked = number(value)
    if not 0 <= checked < 1:
        raise Invalid("expected a fraction from 0 up to (not including) 1, such as 0.25")
    return checked


def integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(f"expected a whole number of at least {minimum}")
        return value

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("expected true or false (without quotes)")
    return value


def gpu_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise Invalid("expected a list of GPU indices, such as [0, 1], or [] for one CPU slot")
    if len(set(value)) != len(value):
        raise Invalid("a GPU is listed twice; list each GPU index once")
    return tuple(value)


# --- tables -----------------------------------------------------------------------------


def tables(value: Any) -> dict[str, Any]:
    """`[agent.space.NAME]` tables, checked key by key later (checks.space) to locate errors."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise Invalid("write one section per constant, such as [agent.space.LR] with low = 1e-4")
    return value


@dataclass(frozen=True)
class Guard:
    """`memory_gb = "<= 40"`: a secondary number a keep must hold, or it is discarded."""

    name: str
    op: str  # "<=" | "<" | ">=" | ">"
    limit: float

    def broken(self, secondary: dict[str, float]) -> str | None:
        """Why these numbers break the guard, in words; None when they hold it."""
        value = secondary.get(self.name)
        if value is None:
            return f"guard `{self}`: the run printed no `{self.name}`"
        held = {
            "<=": value <= self.limit,
            "<": value < self.limit,
            ">=": value >= self.limit,
            ">": value > self.limit,
        }[self.op]
        return None if held else f"guard `{self}` broken ({self.name} {value:.6g})"

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.limit:g}"


_GUARD = re.compile(r"\s*(<=|>=|<|>)\s*([-+0-9.eE_]+)\s*")


def guard_table(value: Any) -> tuple[Guard, ...]:
    if not isinstance(value, dict):
        raise Invalid('expected a table such as { memory_gb = "<= 40", num_steps = ">= 100" }')
    found = []
    for name, rule in value.items():
        match = _GUARD.fullmatch(rule) if isinstance(rule, str) else None
        try:
            limit = float(match.group(2).replace("_", "")) if match else None
        except ValueError:
            limit = None
        if match is None or limit is None or not math.isfinite(limit):
            raise Invalid(
                f'the guard on `{name}` must read like "<= 40" or ">= 100" '
                "(<=, <, >= or > and a number)"
            )
        found.append(Guard(name, match.group(1), limit))
    return tuple(found)
