"""A trained segmentation model on disk: the checkpoint payload read and written, the model
loaded from it, and the exported predictor. The networks themselves are ``wsss.models.segmentation``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.models.classifier import WeightsMissingError
from wsss.models.segmentation import create_model
from wsss.models.weights_files import CHECKPOINT_FORMAT, checkpoint_file
from wsss.storage import writing


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a ``wsss train`` checkpoint (its directory or file), tensors on the CPU."""
    import torch

    file = checkpoint_file(path)
    if not file.is_file():
        raise WeightsMissingError(f"segmentation checkpoint {file} not found; `wsss train` prints "
                                  f"the path of the checkpoint it tested")
    payload = torch.load(file, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{file} is not a wsss segmentation checkpoint")
    return payload


def load_segmentation(path: str | os.PathLike, device: str = "cpu"):
    """(model in eval mode on ``device``, checkpoint payload) of a ``wsss train`` checkpoint."""
    payload = read_checkpoint(path)
    model = create_model(payload["model_name"], "none", payload.get("classes", 1),
                         **payload.get("model_options", {}))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload


def export_model(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint's model without optimizer state (for MLflow and ``wsss predict``)."""
    import torch

    path = Path(path)
    slim = {k: v for k, v in payload.items() if k not in ("optimizer", "scheduler")}
    with writing(path) as temporary:
        torch.save(slim, temporary)
    return path


def mask_predictor(model: Any, image_size: int):
    """``model`` wrapped to take what a user has: N x H x W x 3 uint8 images (any H, W) in,
    N x H x W foreground probabilities out (N x (C+1) x H x W class probabilities for a model
    of several classes), resized to the training size and back inside.
    This is what the MLflow registry holds: ``mlflow.pytorch.load_model(uri)(images)``."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class MaskPredictor(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.image_size = model.eval(), image_size
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

        def forward(self, images):
            pixels = torch.as_tensor(images).permute(0, 3, 1, 2).float().div(255.0)
            size = pixels.shape[-2:]
            inputs = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
            logits = self.model((inputs - self.mean) / self.std)
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            if logits.shape[1] > 1:  # several classes: N x (C+1) x H x W class probabilities
                return torch.softmax(logits, dim=1)
            return torch.sigmoid(logits[:, 0])

    return MaskPredictor()
