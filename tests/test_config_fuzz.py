"""Bad input never crashes Ratchet: fuzzed ratchet.toml files always give a located error
(or a valid config), never a traceback. RATCHET_FUZZ_EXAMPLES sets how many are tried."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ratchet.config import Config, ConfigError, parse_config

EXAMPLES = int(os.environ.get("RATCHET_FUZZ_EXAMPLES", "1200"))

SECTIONS = ["loop", "metric", "judge", "agent", "runner", "metrics", "", "loop.x"]
KEYS = [
    "editable",
    "locked",
    "program",
    "command",
    "budget",
    "timeout",
    "review",
    "name",
    "goal",
    "pattern",
    "eval",
    "min_delta",
    "kind",
    "gpus",
    "hosts",
    "seed",
    "z",
    "baseline_runs",
    "max_runs",
    "progress",
    "abort_after",
    "model",
    "run",
    "budjet",
    "é",
]
VALUES = st.one_of(
    st.integers(min_value=-10, max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf")),
    st.sampled_from(
        [
            '"train.py"',
            '"prepare.py"',
            '"../x.py"',
            '"/etc/passwd"',
            '"5m"',
            '"0s"',
            '"-1s"',
            '"1h"',
            '"minimize"',
            '"maximize"',
            '"mutate"',
            '"ssh"',
            '"([0-9.]+)"',
            '"(unclosed"',
            '"nope"',
            "true",
            "[]",
            "[0, 1]",
            "[0, 0]",
            '["prepare.py"]',
            '["train.py"]',
            "{}",
            "{a = 1}",
            '"""x"""',
            "'lit'",
            '""',
            '[1, "a"]',
            "nan",
            "-inf",
            "1979-05-27",
        ]
    ),
    st.text(max_size=12).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.text(max_size=8),  # broken syntax
)
LINE = st.one_of(
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(KEYS), VALUES),
    st.sampled_from(SECTIONS).map(lambda s: f"[{s}]"),
    st.text(max_size=20),
)
VALID = (
    '[loop]\neditable = "train.py"\nlocked = ["prepare.py"]\ncommand = "python train.py"\n'
    '[metric]\nname = "score"\n'
).splitlines()


def _root(tmp_path_factory: object) -> Path:
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"ratchet-fuzz-{os.getpid()}"
    root.mkdir(exist_ok=True)
    (root / "train.py").write_text("LR = 1\n")
    (root / "prepare.py").write_text("# locked\n")
    return root


ROOT = _root(None)


def check(source: str) -> None:
    try:
        config = parse_config(source, ROOT)
    except ConfigError as error:
        assert error.line >= 1 and error.col >= 1
        assert str(error).startswith(f"ratchet.toml:{error.line}:{error.col}: ")
        assert len(error.message) > 10
        return
    assert isinstance(config, Config)
    assert config.loop.timeout_s >= config.loop.budget_s


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(LINE, max_size=14))
def test_random_files_give_a_located_error_or_a_config(lines: list[str]) -> None:
    check("\n".join(lines))


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(VALID)), LINE), min_size=1, max_size=4))
def test_a_valid_file_with_lines_inserted_or_replaced(edits: list[tuple[int, str]]) -> None:
    lines = list(VALID)
    for position, line in edits:
        if position < len(lines) and len(line) % 2:
            lines[position] = line
        else:
            lines.insert(position, line)
    check("\n".join(lines))
