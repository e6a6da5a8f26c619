"""ratchet.toml → Config: every mistake is located at file:line:col with a plain fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from ratchet.config import ConfigError, load_config, parse_config, parse_duration

GOOD = """\
[loop]
editable = "train.py"
locked   = ["prepare.py"]
command  = "python train.py"
budget   = "5m"

[metric]
name = "val_bpb"
goal = "minimize"
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("LR = 1\n")
    (tmp_path / "prepare.py").write_text("# locked\n")
    return tmp_path


def error_of(source: str, root: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(source, root)
    return caught.value


def test_a_good_config_is_typed(root: Path) -> None:
    config = parse_config(GOOD, root)
    assert config.loop.editable == "train.py"
    assert config.loop.locked == ("prepare.py",)
    assert config.loop.budget_s == 300
    assert config.loop.timeout_s == 600  # 2 x budget by default
    assert config.metric.lower_is_better
    assert config.runner.kind == "local" and config.slots == 1


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600), ("250ms", 0.25), (42, 42)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_unknown_key_names_the_nearest(root: Path) -> None:
    error = error_of(GOOD.replace("budget   =", "budjet   ="), root)
    assert (error.line, error.col) == (5, 1)
    assert 'did you mean "budget"' in error.message
    assert str(error).startswith("ratchet.toml:5:1: unknown key `budjet` in [loop]")


def test_unknown_section(root: Path) -> None:
    error = error_of(GOOD + "\n[metrics]\nx = 1\n", root)
    assert error.line == 11
    assert 'did you mean "metric"' in error.message


def test_missing_required_key(root: Path) -> None:
    error = error_of(GOOD.replace('command  = "python train.py"\n', ""), root)
    assert error.line == 1
    assert "needs `command`" in error.message


def test_mistyped_value_points_at_the_value(root: Path) -> None:
    error = error_of(GOOD.replace('locked   = ["prepare.py"]', "locked   = [1, 2]"), root)
    assert (error.line, error.col) == (3, 12)
    assert "list of strings" in error.message


def test_bad_duration(root: Path) -> None:
    error = error_of(GOOD.replace('"5m"', '"5 minutes"'), root)
    assert error.line == 5
    assert "not a duration" in error.message and '"90s"' in error.message


def test_two_sandbox_hosts_on_one_port_are_refused_where_written(root: Path) -> None:
    hosts = '\n[sandbox]\nhosts = ["api.example.com:443", "other.example.com:443"]\n'
    error = error_of(GOOD + hosts, root)
    assert error.line == 12
    assert "share port 443" in error.message and "one host per port" in error.message


def test_bad_goal(root: Path) -> None:
    error = error_of(GOOD.replace('"minimize"', '"lower"'), root)
    assert error.line == 9
    assert '"minimize" or "maximize"' in error.message


def test_timeout_shorter_than_budget(root: Path) -> None:
    error = error_of(GOOD.replace('budget   = "5m"', 'budget   = "5m"\ntimeout  = "1m"'), root)
    assert error.line == 6
    assert "shorter than the budget" in error.message


def test_editable_missing(root: Path) -> None:
    error = error_of(GOOD.replace('"train.py"', '"nope.py"'), root)
    assert error.line == 2
    assert "does not exist" in error.message


def test_editable_also_locked(root: Path) -> None:
    error = error_of(GOOD.replace('["prepare.py"]', '["prepare.py", "train.py"]'), root)
    assert error.line == 3
    assert "both editable and locked" in error.message


def test_path_outside_the_repository(root: Path) -> None:
    error = error_of(GOOD.replace('["prepare.py"]', '["../secret.py"]'), root)
    assert error.line == 3
    assert "outside the repository" in error.message


def test_broken_toml_is_located(root: Path) -> None:
    error = error_of(GOOD.replace('name = "val_bpb"', 'name = "val_bpb'), root)
    assert error.line == 8
    assert "not valid TOML" in error.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert "ratchet init" in str(caught.value)


def test_command_agent_needs_run(root: Path) -> None:
    error = error_of(GOOD + '\n[agent]\nkind = "command"\n', root)
    assert error.line == 12 and "needs `run`" in error.message


def test_a_byte_order_mark_is_not_a_key(root: Path) -> None:
    (root / "ratchet.toml").write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_config(root).metric.name == "val_bpb"


def test_a_pattern_needs_exactly_one_group(root: Path) -> None:
    two = GOOD + "pattern = 'bpb=([0-9.]+) (ms|s)'\n"
    error = error_of(two, root)
    assert error.line == 10 and "has 2 capturing groups; it needs exactly one" in str(error)
    one = GOOD + "pattern = 'bpb=([0-9.]+) (?:ms|s)'\n"
    assert parse_config(one, root).metric.pattern == "bpb=([0-9.]+) (?:ms|s)"


def test_keys_written_apart_from_their_fields_land_on_them(root: Path) -> None:
    source = GOOD.replace('budget   = "5m"', 'budget   = "5m"\ngrace = "30s"') + (
        'eval_timeout = "2m"\n\n[agent]\ntimeout = "90s"\nrepair_window = "1m"\n'
    )
    config = parse_config(source, root)
    assert (config.loop.budget_s, config.loop.timeout_s, config.loop.grace_s) == (300, 600, 30)
    assert config.metric.eval_timeout_s == 120
    assert (config.agent.timeout_s, config.agent.repair_window_s) == (90, 60)


def test_a_missing_required_key_suggests_its_line(root: Path) -> None:
    error = error_of(GOOD.replace('name = "val_bpb"\n', ""), root)
    assert (error.line, error.col) == (7, 1)
    assert error.message == '[metric] needs `name`; add a line such as name = "val_bpb"'
