"""From YAML (and ``--set`` overrides) to a validated ``StudyConfig``; every error names the
field's dotted path, the value given and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from wsss.config.base import ConfigError
from wsss.config.study import StudyConfig


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: dotted field path, the value given, and what is allowed."""
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see `wsss config show` for the fields)"
        lines.append(f"  {path}: {message}{given(item.get('input'))}")
    return "\n".join(lines)


def given(value: Any) -> str:
    """`` (got VALUE)`` for a field's value; nothing for a whole section (a check across fields
    fails on the section, and its every field would bury the message)."""
    if isinstance(value, (dict, list)) and len(repr(value)) > 80:
        return ""
    return f" (got {value!r})"


def parse_config(data: dict[str, Any], source: str = "config") -> StudyConfig:
    """Validate a mapping as a StudyConfig, raising ConfigError with readable messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a YAML study config; ``overrides`` maps dotted paths to values (``train.epochs``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return parse_config(data, str(path))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted == 'a.b'``, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a mapping")
    node[leaf] = value


def parse_overrides(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["train.epochs=3", ...]`` -> ``{"train.epochs": 3}`` (values read as YAML); every
    KEY=VALUE flag of the command line (``--set``, ``--param``, ``--model-option``) uses it."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: expected dotted.key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
