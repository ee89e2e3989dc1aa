"""Sanity baselines every comparison carries: no heatmap, no model, same mask for every image.

- ``all_foreground``: every pixel is pet (recall 1; its precision is the pet's share).
- ``ellipse``: a centred ellipse with semi-axes ``fraction / 2`` of the width and of the
  height (default 0.7 -> 0.35 W, 0.35 H); a pixel is inside when its centre is
  (``((x + 0.5 - W/2) / a)^2 + ((y + 0.5 - H/2) / b)^2 <= 1``). Pets sit near the centre of
  most photos, so this is the "no information" bar every pseudo-mask must clear.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from wsss.labelers.base import Labeler, LabelerParams
from wsss.labelers.registry import register


def centred_ellipse(height: int, width: int, fraction: float) -> np.ndarray:
    """H x W uint8: 1 inside the centred ellipse with semi-axes fraction/2 of each side."""
    semi_x, semi_y = fraction * width / 2.0, fraction * height / 2.0
    xs = ((np.arange(width) + 0.5 - width / 2.0) / semi_x) ** 2
    ys = ((np.arange(height) + 0.5 - height / 2.0) / semi_y) ** 2
    return (ys[:, None] + xs[None, :] <= 1.0).view(np.uint8)


@register
class AllForeground(Labeler):
    name = "all_foreground"
    description = "baseline: every pixel foreground"
    stage = "cpu"

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"mask": np.ones(batch["image"].shape[:3], np.uint8)}


class EllipseParams(LabelerParams):
    fraction: float = Field(0.7, gt=0.0, le=1.0,
                            description="ellipse axes as a fraction of the image's width, height")


@register
class Ellipse(Labeler):
    name = "ellipse"
    description = "baseline: a centred ellipse covering a fraction of each axis"
    Params = EllipseParams
    stage = "cpu"

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count, height, width = batch["image"].shape[:3]
        ellipse = centred_ellipse(height, width, self.params.fraction)
        return {"mask": np.repeat(ellipse[None], count, axis=0)}
