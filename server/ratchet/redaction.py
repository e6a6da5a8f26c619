"""Secrets out of text: the agent's key, and anything shaped like an Anthropic key, replaced
before a trace, a log line or an agent's prompt is written. Stdlib only: everything that
writes text imports it, the runners included."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
_MIN_SECRET = 4  # shorter "secrets" would shred ordinary text
# Anything shaped like an Anthropic key is removed too, whichever variable it came from.
_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")


def redact_text(text: str, secrets: Iterable[str]) -> str:
    usable = [s for s in secrets if s and len(s) >= _MIN_SECRET]
    for secret in sorted(usable, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    if "sk-ant-" not in text:  # the common case, on every line of every log: no regex
        return text
    return _KEY_SHAPE.sub(REDACTED, text)


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of `value` (str, dict, list, tuple, scalars) with every secret replaced."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {redact_text(str(k), secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value), secrets)
