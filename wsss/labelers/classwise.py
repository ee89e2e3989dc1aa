"""The one form of a batch, for every task: images carry K entries each (-1 padded), ``labels``
N x K (the class whose heatmap an entry takes), ``classes`` N x K (the pixel class it paints,
value k + 1), heatmaps N x K x H x W and, from data that gives them, ``given_box`` N x K x 4
(-1s where the data gives none). One class per image is K = 1 painting class 0 (value 1, the
one foreground) with the image's class as its label; images of several classes paint their own
classes. A box-based generator (box, GrabCut, the mix, SAM2 by box or peaks) makes one {0, 1}
mask per entry, and ``paint`` merges them: a pixel one entry claims takes its class, a pixel
several claim goes to the class whose heatmap is highest there (the CAM says which animal the
pixel looks like) or, without heatmaps, to the smallest claimed region (a smaller object in
front of a larger one is the common overlap), and a pixel no entry claims is background. An
image with no box for any entry follows ``empty``: all background, or all ignore (255).
``Labeler.__call__`` turns the short form of one-class batches (``label``, N x H x W heatmaps)
into this one and back (``wsss.labelers.entries``).
"""

from __future__ import annotations

import numpy as np

from wsss.labelers.base import MASK_BACKGROUND, MASK_IGNORE, NO_BOX
from wsss.labelers.geometry import Component, boxes_from_heatmaps


def class_heatmaps(batch: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The batch's N x K x H x W heatmaps, checked against its images and labels."""
    heatmaps, labels = np.asarray(batch["heatmap"], np.float32), batch["labels"]
    expected = (len(labels), labels.shape[1], *batch["image"].shape[1:3])
    if heatmaps.shape != expected:
        raise ValueError(f"labeler {name!r}: heatmaps {heatmaps.shape}, expected {expected} "
                         f"(a map per class the image carries)")
    return heatmaps


def given_class_boxes(batch: dict[str, np.ndarray], name: str) -> np.ndarray:
    """N x K x 4 boxes the data gives per class of each image (``given_box``); a clear error
    when the data gives none."""
    labels = batch["labels"]
    if "given_box" not in batch:
        raise ValueError(f"labeler {name!r} has box_source: dataset but the batch carries no boxes: "
                         f"read a dataset that gives a box per class (csv `boxes` column, or coco)")
    boxes = np.asarray(batch["given_box"], np.int32)
    if boxes.shape != (*labels.shape, 4):
        raise ValueError(f"labeler {name!r}: given boxes {boxes.shape}, expected {(*labels.shape, 4)}")
    return np.where(labels[..., None] >= 0, boxes, -1).astype(np.int32)


def boxes_of_class_heatmaps(heatmaps: np.ndarray, labels: np.ndarray, threshold: float,
                            component: Component = "largest") -> np.ndarray:
    """N x K x 4 boxes of each class's thresholded heatmap (NO_BOX for padding and empty maps)."""
    count, width = labels.shape
    boxes = boxes_from_heatmaps(heatmaps.reshape(count * width, *heatmaps.shape[2:]), threshold,
                                component).reshape(count, width, 4)
    boxes[labels < 0] = NO_BOX
    return boxes


def paint(class_masks: np.ndarray, labels: np.ndarray, scores: np.ndarray | None = None,
          empty_ignore: np.ndarray | None = None, background: bool = True) -> np.ndarray:
    """N x H x W uint8 class maps from N x K x H x W per-class masks (1 where pixel class
    ``labels[n, k]`` is claimed: the batch's ``classes``): contested pixels go to the highest
    ``scores`` (N x K x H x W heatmaps) or, without them, to the smallest claimed region;
    ``empty_ignore`` (N bool) marks images whose map is all ignore. Without a background a
    pixel no entry claims is ignored (255), not background."""
    class_masks, labels = np.asarray(class_masks), np.asarray(labels, np.int64)
    claimed = (class_masks == 1) & (labels >= 0)[:, :, None, None]
    if scores is None:
        areas = claimed.reshape(*claimed.shape[:2], -1).sum(axis=2).astype(np.float32)
        scores = np.broadcast_to(-areas[:, :, None, None], claimed.shape)
    ranked = np.where(claimed, scores, -np.inf)
    winner = ranked.argmax(axis=1)
    flat = winner.reshape(len(labels), int(np.prod(winner.shape[1:])))
    values = np.take_along_axis(np.where(labels >= 0, labels + 1, 0), flat, axis=1).reshape(winner.shape)
    out = np.where(claimed.any(axis=1), values, MASK_BACKGROUND if background else MASK_IGNORE).astype(np.uint8)
    if empty_ignore is not None:
        out[np.asarray(empty_ignore, bool)] = MASK_IGNORE
    return out


def no_box_anywhere(boxes: np.ndarray) -> np.ndarray:
    """N bool: images none of whose classes has a box."""
    return ~(np.asarray(boxes)[..., 0] >= 0).any(axis=1)


def present(labels_row: np.ndarray) -> list[int]:
    """The column positions of a row of ``labels`` that hold a class (not -1 padding)."""
    return [k for k, value in enumerate(np.asarray(labels_row)) if value >= 0]
