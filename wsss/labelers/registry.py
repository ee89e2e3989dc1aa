"""Registry of pseudo-mask generators: ``{name: Labeler subclass}``; a leaf module.

Labeler modules register themselves with ``@register``; the package's ``__init__`` imports every
one of them, so the registry is complete once ``wsss.labelers`` is imported (which importing this
module does). Labelers import heavy stacks (torch, cv2, skimage, sam2) lazily, so loading the
registry is cheap enough for config validation.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a Labeler subclass available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"labeler name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def list_labelers() -> dict[str, str]:
    """``{name: one-line description}`` of every registered labeler, sorted by name."""
    return {name: cls.description for name, cls in sorted(_REGISTRY.items())}


def cam_methods() -> tuple[str, ...]:
    """The registered heatmap methods (CAM, Grad-CAM, ...), in registration order."""
    return tuple(name for name, cls in _REGISTRY.items() if cls.stage == "heatmap")


def reference_cam_methods() -> tuple[str, ...]:
    """The heatmap methods pytorch-grad-cam also has: the ones the fast engine is checked and
    benchmarked against (``imagenet_cam``'s top-k target has no reference)."""
    return tuple(name for name in cam_methods() if getattr(_REGISTRY[name], "has_reference", True))


def get_labeler_class(name: str) -> type:
    """The labeler class registered as ``name``; the error lists the known names."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise KeyError(f"unknown labeler {name!r}; known labelers: {known}")
    return _REGISTRY[name]


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
