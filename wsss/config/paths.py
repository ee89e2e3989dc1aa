"""Path fields: ``LocalPath`` marks a field naming a local file or folder (or a URI), and
``resolve_paths`` finds every such field of a config dump, however deep, to make it absolute."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

NAMED_WEIGHTS = ("none", "imagenet", "coco_voc")  # weights fields name these or a path


class IsPath:
    """Marks a field that names a local file or folder (or a URI): ``StudyConfig.resolved``
    makes every such field absolute, so a new path field cannot stay relative on Ray workers."""


LocalPath = Annotated[str, IsPath()]


def absolute_path(value: str | None, base: Path) -> str | None:
    """``value`` made absolute from ``base``; None, URIs and named weights stay as they are."""
    if value is None or "://" in value or value in NAMED_WEIGHTS:
        return value
    return str((base / value).resolve()) if not Path(value).is_absolute() else value


def is_path(info: Any) -> bool:
    """Whether a pydantic field is typed ``LocalPath`` (alone, optional, or annotated)."""
    found = [*info.metadata]
    stack = [info.annotation]
    while stack:
        annotation = stack.pop()
        found += getattr(annotation, "__metadata__", ())
        stack += typing.get_args(annotation)
    return any(isinstance(item, IsPath) for item in found)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config model inside a field's type (``X``, ``X | None``, ``list[X]``), if any."""
    stack = [annotation]
    while stack:
        candidate = stack.pop()
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        stack += typing.get_args(candidate)
    return None


def resolve_paths(model: type[BaseModel], data: dict[str, Any], absolute) -> None:
    """Apply ``absolute`` in place to every ``LocalPath`` value of ``data`` (a dump of ``model``)."""
    for name, info in model.model_fields.items():
        value = data.get(name)
        if value is None:
            continue
        if is_path(info):
            data[name] = absolute(value)
            continue
        section = _section_model(info.annotation)
        for item in value if isinstance(value, list) else [value]:
            if section is not None and isinstance(item, dict):
                resolve_paths(section, item, absolute)
