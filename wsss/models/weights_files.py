"""Weights files a segmentation model loads: a ``wsss train`` checkpoint (the whole model) or a
backbone state dict, given as a file or as a checkpoint directory."""

from __future__ import annotations

import os
from pathlib import Path

from wsss.models.classifier import WeightsMissingError

CHECKPOINT_FORMAT = "wsss-segmentation-v1"
CHECKPOINT_FILE = "state.pt"  # as wsss.train.common.STATE_FILE: a Train checkpoint dir works too


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The model file of a checkpoint given as its directory or as the file itself."""
    path = Path(path)
    return path / CHECKPOINT_FILE if path.is_dir() else path


def _backbone_module(model):
    """The module a backbone state dict loads into (None for the from-scratch UNet)."""
    inner = getattr(model, "network", None)
    if inner is not None:
        return inner.backbone
    return getattr(model, "encoder", None)


def load_weights_file(model, path: str | os.PathLike) -> None:
    """Load a ``wsss train`` checkpoint (whole model) or a backbone state dict into ``model``."""
    import torch

    file = checkpoint_file(path)
    if not file.is_file():
        raise WeightsMissingError(f"weights file {file} not found; give a checkpoint written by "
                                  f"`wsss train`, a backbone state dict, or weights: none|imagenet")
    payload = torch.load(file, map_location="cpu", weights_only=False)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        model.load_state_dict(payload["model"])
        return
    target = _backbone_module(model)
    if target is None or not isinstance(payload, dict):
        raise ValueError(f"{file} is neither a wsss segmentation checkpoint nor a backbone "
                         f"state dict this model can use")
    state = payload.get("state_dict", payload)
    result = target.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")},
                                    strict=False)
    if result.missing_keys:
        raise ValueError(f"{file}: backbone state dict lacks {len(result.missing_keys)} keys "
                         f"(e.g. {result.missing_keys[:3]})")


