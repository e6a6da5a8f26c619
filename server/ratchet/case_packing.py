"""A run's case scores as one packed blob (the ledger's `cases.scores`): recording a run costs
one row whatever the number of cases (about 105 bytes for 1,000 pass/fail cases)."""

from __future__ import annotations

import sys
import zlib
from array import array
from itertools import accumulate

_FLOATS, _BITS = 0, 1  # how a blob holds its scores


def pack(scores: dict[int, float]) -> bytes:
    """Case numbers (the loop's dictionary) and scores as one compressed blob: a uint32 count,
    a byte for the scores' form, the numbers sorted as uint32 gaps from the one before (a run
    of consecutive cases compresses to almost nothing), then the scores in the same order: one
    bit each where every score is 0 or 1 (pass/fail, the common case), else float32. All
    little-endian."""
    numbers = sorted(scores)
    gaps = array("I", (n - p for n, p in zip(numbers, [0, *numbers], strict=False)))
    values = [scores[n] for n in numbers]
    binary = all(v in (0.0, 1.0) for v in values)
    if binary:  # bit i is case i's score: the digits read right to left
        digits = "".join("1" if v else "0" for v in reversed(values)) or "0"
        body = int(digits, 2).to_bytes((len(values) + 7) // 8, "little")
    else:
        floats = array("f", values)
        if sys.byteorder == "big":
            floats.byteswap()
        body = floats.tobytes()
    if sys.byteorder == "big":
        gaps.byteswap()
    head = len(numbers).to_bytes(4, "little") + bytes([_BITS if binary else _FLOATS])
    return zlib.compress(head + gaps.tobytes() + body)


def unpack(blob: bytes) -> dict[int, float]:
    raw = zlib.decompress(blob)
    count, form = int.from_bytes(raw[:4], "little"), raw[4]
    gaps = array("I")
    gaps.frombytes(raw[5 : 5 + 4 * count])
    if sys.byteorder == "big":
        gaps.byteswap()
    body = raw[5 + 4 * count :]
    if form == _BITS:
        digits = format(int.from_bytes(body, "little"), f"0{count}b")[::-1]
        values = [1.0 if digit == "1" else 0.0 for digit in digits[:count]]
    else:
        floats = array("f")
        floats.frombytes(body[: 4 * count])
        if sys.byteorder == "big":
            floats.byteswap()
        values = list(floats)
    return dict(zip(accumulate(gaps), values, strict=True))
