"""Registry of pseudo-mask generators: ``{name: Labeler subclass}``.

Labeler modules register themselves on import; they import heavy stacks (torch, cv2,
skimage, sam2) lazily, so loading the registry is cheap enough for config validation.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

_REGISTRY: dict[str, type] = {}
# Modules that define labelers; imported once, on the first registry lookup.
LABELER_MODULES: tuple[str, ...] = (
    "wsss.labelers.cam",
    "wsss.labelers.gradcam",
    "wsss.labelers.gradcampp",
    "wsss.labelers.box",
    "wsss.labelers.grabcut",
    "wsss.labelers.mix",
    "wsss.labelers.baselines",
    "wsss.labelers.sam2",
)
_loaded = False


def register(cls: type) -> type:
    """Class decorator: make a Labeler subclass available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"labeler name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> dict[str, type]:
    global _loaded
    if not _loaded:
        for module in LABELER_MODULES:
            importlib.import_module(module)
        _loaded = True
    return _REGISTRY


def list_labelers() -> dict[str, str]:
    """``{name: one-line description}`` of every registered labeler, sorted by name."""
    return {name: cls.description for name, cls in sorted(_load().items())}


def get_labeler_class(name: str) -> type:
    """The labeler class registered as ``name``; the error lists the known names."""
    registry = _load()
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none registered"
        raise KeyError(f"unknown labeler {name!r}; known labelers: {known}")
    return registry[name]


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the labeler's own parameter model; return them with defaults."""
    try:
        cls = get_labeler_class(name)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    try:
        return cls.Params.model_validate(params).model_dump()
    except ValidationError as error:
        problems = "; ".join(
            f"params.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in error.errors()
        )
        raise ValueError(f"labeler {name!r}: {problems}") from None
