"""ratchet.toml → a validated Config: each table read by walking its declared fields."""

from __future__ import annotations

from dataclasses import MISSING, Field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from .checks import checked, space
from .model import SECTIONS, Config, Key
from .source import CONFIG_NAME, ConfigError, Source, nearest, parse_toml
from .values import Invalid


def load_config(root: Path, config_path: Path | None = None) -> Config:
    """Reads and validates ratchet.toml in `root`; raises ConfigError on any mistake."""
    path = config_path or root / CONFIG_NAME
    shown = path.name
    if not path.is_file():
        raise ConfigError(
            shown, 1, 1, f"no {CONFIG_NAME} in {root}: run `ratchet init` there to write one"
        )
    try:
        source = path.read_text(encoding="utf-8-sig")  # a BOM (some Windows editors) is no key
    except UnicodeDecodeError:
        raise ConfigError(shown, 1, 1, "the file is not UTF-8 text; save it as UTF-8") from None
    return parse_config(source, root, shown)


def parse_config(source: str, root: Path, shown: str = CONFIG_NAME) -> Config:
    """Validates the text of a ratchet.toml whose folder is `root`."""
    data = parse_toml(source, shown)
    where = Source(source, shown)
    for table, value in data.items():
        if table not in SECTIONS:
            message = f"unknown section [{table}]; {nearest(table, list(SECTIONS))}"
            raise where.error(where.table(table), message)
        if not isinstance(value, dict):
            message = f"`{table}` must be a section written [{table}], not a single value"
            raise where.error(where.key("", table), message)
    for table in ("loop", "metric"):
        if table not in data:
            message = f"the [{table}] section is missing; add it (see `ratchet init`)"
            raise ConfigError(shown, 1, 1, message)
    read = {table: _read(table, data.get(table, {}), where) for table in SECTIONS}
    loop = read["loop"]
    loop.setdefault("timeout_s", 2 * loop["budget_s"])  # the timeout's default: 2 x budget
    tables = read["agent"].pop("space")  # checked last, as ever: the first mistake named stays
    sections = {table: kind(**read[table]) for table, kind in SECTIONS.items()}
    config = checked(Config(root=root, source=source, **sections), where)
    return replace(config, agent=replace(config.agent, space=space(tables, where)))


def _read(table: str, given: dict[str, Any], where: Source) -> dict[str, Any]:
    """One table's values by field name: each checked, or its default."""
    keys = _KEYS[table]
    for name in given:
        if name not in keys:
            message = f"unknown key `{name}` in [{table}]; {nearest(name, list(keys))}"
            raise where.error(where.key(table, name), message)
    values: dict[str, Any] = {}
    for name, (spec, key) in keys.items():
        if name in given:
            try:
                values[spec.name] = key.check(given[name])
            except Invalid as problem:
                raise where.error(where.value(table, name), f"`{name}`: {problem}") from None
        elif spec.default is not MISSING:
            values[spec.name] = spec.default
        elif spec.default_factory is not MISSING:
            values[spec.name] = spec.default_factory()
        elif key.example:  # required; no default and no example: derived (parse_config)
            message = f"[{table}] needs `{name}`; add a line such as {key.example}"
            raise where.error(where.table(table), message)
    return values


def _keys(section: type[Any]) -> dict[str, tuple[Field[Any], Key]]:
    """The section's fields by their key in ratchet.toml, each with its Key."""
    hints = get_type_hints(section, include_extras=True)
    keys = {}
    for spec in fields(section):
        key = next(m for m in hints[spec.name].__metadata__ if isinstance(m, Key))
        keys[key.name or spec.name] = (spec, key)
    return keys


_KEYS = {table: _keys(kind) for table, kind in SECTIONS.items()}
