"""Boxes from heatmaps, boxes as masks, and the crop around a box that box labelers work in.

A box is ``(x0, y0, x1, y1)`` int32 with exclusive ``x1``/``y1``; ``NO_BOX`` (all -1) means
the thresholded heatmap had no foreground pixel.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from wsss.labelers.base import NO_BOX

Component = Literal["largest", "all"]


def _boxes_of_all_foreground(binary: np.ndarray) -> np.ndarray:
    """Bounding box of every foreground pixel, per image, without a Python loop."""
    count, height, width = binary.shape
    rows, cols = binary.any(axis=2), binary.any(axis=1)
    boxes = np.tile(NO_BOX, (count, 1))
    present = rows.any(axis=1)
    boxes[present, 0] = cols[present].argmax(axis=1)
    boxes[present, 1] = rows[present].argmax(axis=1)
    boxes[present, 2] = width - cols[present, ::-1].argmax(axis=1)
    boxes[present, 3] = height - rows[present, ::-1].argmax(axis=1)
    return boxes


def _box_of_largest_component(binary: np.ndarray) -> np.ndarray:
    """Bounding box of the largest 8-connected component (ties: the lowest label)."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(binary.view(np.uint8), connectivity=8)
    if count <= 1:
        return NO_BOX.copy()
    x, y, w, h = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4]
    return np.array([x, y, x + w, y + h], dtype=np.int32)


def boxes_from_heatmaps(heatmaps: np.ndarray, threshold: float,
                        component: Component = "largest") -> np.ndarray:
    """N x 4 int32 boxes of ``heatmap >= threshold``: of its largest component, or of all of it."""
    binary = np.asarray(heatmaps) >= threshold
    if component == "all":
        return _boxes_of_all_foreground(binary)
    if component != "largest":
        raise ValueError(f"component {component!r}; allowed: largest, all")
    boxes = [_box_of_largest_component(b) for b in np.ascontiguousarray(binary)]
    return np.array(boxes, dtype=np.int32).reshape(-1, 4)


def box_masks(shape: tuple[int, int, int], boxes: np.ndarray) -> np.ndarray:
    """N x H x W uint8: 1 inside each box, 0 outside (all 0 for ``NO_BOX``)."""
    _, height, width = shape
    boxes = np.asarray(boxes, dtype=np.int64)
    ys, xs = np.arange(height), np.arange(width)
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])
    return (inside_y[:, :, None] & inside_x[:, None, :]).view(np.uint8)


def has_box(box: np.ndarray) -> bool:
    return bool(box[2] > box[0] and box[3] > box[1])


def crop_around(box: np.ndarray, height: int, width: int, margin: float | None,
                margin_px: int) -> tuple[int, int, int, int]:
    """The box grown by ``max(margin * side, margin_px)`` per side, clipped to the image.

    ``margin=None`` means the whole image (GrabCut's background model then sees all of it).
    """
    if margin is None:
        return 0, 0, width, height
    x0, y0, x1, y1 = (int(v) for v in box)
    grow_x = max(int(round(margin * (x1 - x0))), margin_px)
    grow_y = max(int(round(margin * (y1 - y0))), margin_px)
    return (max(0, x0 - grow_x), max(0, y0 - grow_y),
            min(width, x1 + grow_x), min(height, y1 + grow_y))
