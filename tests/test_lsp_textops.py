"""The language server's pure text work: diff blocks, finding them by content, tracebacks,
the three-way merge that keeps the user's edits, and the smallest line edits."""

from __future__ import annotations

import difflib
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from ratchet.config import ConfigError
from ratchet.lsp.diagnostics import change_percent, config_diagnostic
from ratchet.lsp.textops import (
    Block,
    Lines,
    apply_edits,
    blocks_between,
    find_crash,
    line_edits,
    locate,
    parse_blocks,
)
from ratchet.merge import merge3

BASE = "import os\nLR = 0.5\nWIDTH = 8\n\ndef f():\n    return LR\n\nprint(f())\n"

lines = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "\n", "x = 1\n", "y = 2\n"]), max_size=12)


def edited(base: list[str], rng: random.Random) -> list[str]:
    out = list(base)
    for _ in range(rng.randint(0, 3)):
        at = rng.randint(0, len(out))
        kind = rng.choice("ird")
        if kind == "i":
            out.insert(at, f"new{rng.randint(0, 99)}\n")
        elif out and at < len(out):
            if kind == "r":
                out[at] = f"changed{rng.randint(0, 99)}\n"
            else:
                del out[at]
    return out


@settings(max_examples=300, deadline=None)
@given(lines, lines, st.booleans())
def test_line_edits_turn_one_text_into_the_other(a: list[str], b: list[str], cut: bool) -> None:
    old, new = "".join(a), "".join(b)
    if cut:
        old = old.rstrip("\n")
    assert apply_edits(old, line_edits(old, new)) == new


def rebuild(base: list[str], blocks: list[Block]) -> list[str]:
    """The new text, from the base and the blocks alone."""
    out, at = [], 0
    for block in blocks:
        out += base[at : block.old_start]
        assert [
            line.rstrip("\n") for line in base[block.old_start : block.old_start + len(block.old)]
        ] == list(block.old)
        out += [line + "\n" for line in block.new]
        at = block.old_start + len(block.old)
    return out + base[at:]


@settings(max_examples=300, deadline=None)
@given(lines, st.integers(0, 2**32))
def test_diff_blocks_rebuild_the_new_text(base: list[str], seed: int) -> None:
    new = edited(base, random.Random(seed))
    diff = "".join(difflib.unified_diff(base, new, "a/f", "b/f"))
    assert rebuild(base, parse_blocks(diff)) == new
    assert rebuild(base, blocks_between("".join(base), "".join(new))) == new


def test_merge_keeps_the_users_edits_and_refuses_a_clash() -> None:
    theirs = BASE.replace("LR = 0.5", "LR = 0.25")
    ours = BASE.replace("print(f())", "print('mine', f())")
    assert merge3(BASE, ours, theirs) == theirs.replace("print(f())", "print('mine', f())")
    assert merge3(BASE, BASE, theirs) == theirs
    assert merge3(BASE, theirs, theirs) == theirs  # already applied: nothing to do
    assert merge3(BASE, BASE.replace("LR = 0.5", "LR = 9"), theirs) is None
    rng = random.Random(7)
    base = [f"line {n}\n" for n in range(30)]
    for _ in range(200):  # disjoint edits on far-apart halves always merge, both kept
        top, bottom = edited(base[:14], rng), edited(base[16:], rng)
        ours, theirs_ = top + base[14:], base[:16] + bottom
        assert merge3("".join(base), "".join(ours), "".join(theirs_)) == "".join(
            top + base[14:16] + bottom
        )


def test_blocks_are_found_by_content_and_dropped_when_gone() -> None:
    new = BASE.replace("LR = 0.5", "LR = 0.25")
    (block,) = blocks_between(BASE, new)
    moved = "# a comment\n\n" + BASE
    where = locate(block, Lines(moved))
    assert where is not None and (where.start, where.end, where.applied) == (3, 4, False)
    where = locate(block, Lines(new))
    assert where is not None and (where.start, where.applied) == (1, True)
    assert locate(block, Lines(BASE.replace("LR = 0.5", "LR = 7"))) is None
    # Of several equal lines, the one nearest to where the change was wins.
    assert (where := locate(block, Lines(BASE + "\n" * 20 + BASE))) and where.start == 1
    assert (where := locate(block, Lines("\n" * 30 + BASE + BASE))) and where.start == 31


def test_the_innermost_traceback_line_in_the_editable_file() -> None:
    log = (
        "step 1\n"
        "Traceback (most recent call last):\n"
        '  File "/w/.ratchet/worktrees/cpu/train.py", line 9, in <module>\n'
        "    main()\n"
        '  File "/w/.ratchet/worktrees/cpu/train.py", line 5, in main\n'
        "    x = 1 / 0\n"
        '  File "/usr/lib/python3.11/somewhere.py", line 80, in helper\n'
        "    raise\n"
        "ZeroDivisionError: division by zero\n"
    )
    crash = find_crash(log, "train.py")
    assert crash is not None
    assert (crash.line, crash.message) == (5, "ZeroDivisionError: division by zero")
    assert find_crash(log, "model.py") is None
    assert find_crash("killed\n", "train.py") is None


def test_config_errors_land_on_their_exact_range_in_utf16_units() -> None:
    source = '[loop]\n# é😀\nbudget = "5 parsecs" # 😀\n'
    error = ConfigError("ratchet.toml", 3, 10, "not a duration", 21)
    diagnostic = config_diagnostic(error, source)
    assert (diagnostic.range.start.line, diagnostic.range.start.character) == (2, 9)
    assert diagnostic.range.end.character == 20
    emoji = config_diagnostic(ConfigError("ratchet.toml", 2, 4, "x", 5), source)
    assert (emoji.range.start.character, emoji.range.end.character) == (3, 5)  # 😀 is 2 units


def test_change_percent_uses_a_true_minus_sign() -> None:
    assert change_percent(0.9932, 0.9979) == "−0.47%"
    assert change_percent(1.1, 1.0) == "+10.00%"
    assert change_percent(1.0, 0.0) is None
