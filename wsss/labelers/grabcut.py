"""GrabCut inside the CAM box (Table 3, row 2), run on a crop around the box and pasted back.

Per image: the box of the thresholded heatmap (see ``box``), grown by ``max(margin * side,
margin_px)`` per side and clipped to the image, is the crop GrabCut runs on
(``GC_INIT_WITH_RECT``, the box as the rectangle, ``iterations`` rounds); ``margin: null``
runs on the whole image instead. Outside the crop the mask is background. The default margin
is wide (1.0: the box's own width and height on each side) because GrabCut's background model
is learnt from the ring around the box: when a CAM box cuts through the pet, a thin ring is
mostly pet and GrabCut then erases the pet (synthetic 256 px, tight boxes: Dice 0.79 whole
image or margin 1.0, 0.77 at 0.5, 0.72 at 0.15). Cropping saves little time either (GrabCut's
cost sits in the undecided box, not in the fixed background).

With ``max_side`` the crop is first shrunk (area interpolation) so its longest side is at most
``max_side``, and GrabCut's mask is brought back with nearest neighbour: 4-5x faster at half
size, but not free: GrabCut's smoothness term weighs more at low resolution (region terms
grow with area, boundary terms with perimeter), so some images collapse to an empty or a
box-like mask (synthetic 256 -> 128 px: Dice 0.79 -> 0.70-0.76). ``cv2.setRNGSeed(seed)``
before every image makes reruns give identical masks (GrabCut's GMMs start from k-means).

Degenerate inputs never raise; each has one defined outcome (``grabcut_masks`` reports it):

- ``no_box``: nothing passes the threshold -> mask follows ``empty`` (all 0, or all 255).
- ``tiny_box``: box under 2 px wide or high -> the raw box is the mask.
- ``framed``: the rectangle leaves no pixel of the crop outside it (the box covers the whole
  image, i.e. touches all four borders; or margin and margin_px are 0; or the ring vanished
  when shrinking to ``max_side``), so GrabCut has no background sample ->
  ``GC_INIT_WITH_MASK`` where a frame along the crop's edge (``FRAME_FRACTION`` of
  each side, at least ``FRAME_MIN_PX``) is probable background and the rest probable
  foreground.
- ``failed``: OpenCV raises anyway -> the raw box.
- ``empty_result``: GrabCut keeps no foreground pixel -> the raw box (a box-sized guess
  beats an empty mask for an image known to hold a pet).
- ``grabcut``: the normal case.

``init: seeds`` (beyond the study) runs GrabCut on the whole image from the CAM itself instead
of a rectangle: ``seed_labels`` and ``seeded_grabcut_into`` say how, and why real photos need
it (outcome ``seeds``; degenerate seeds fall back to the box path above).

GrabCut runs once per class the image carries (one, for one class per image), in that class's
box (or from that class's seeds, where another class's sure seeds, higher than this class's
map, count as sure background), and the per-class masks are merged by
``wsss.labelers.classwise.paint``; the labeler also returns them (``class_masks``) so the mix
reuses them.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from wsss.labelers import classwise
from wsss.labelers.box import BoxLabeler, BoxParams, apply_empty_policy
from wsss.labelers.geometry import crop_around, has_box
from wsss.labelers.registry import register

FRAME_FRACTION, FRAME_MIN_PX = 0.03, 2
MIN_BOX_SIDE = 2


class GrabCutParams(BoxParams):
    iterations: int = Field(5, ge=1, le=100)
    init: Literal["box", "seeds"] = Field(
        "box", description="box: GrabCut in the CAM box (the study); seeds: GrabCut on the whole "
                           "image from the CAM's own seeds (see seeds, sure_background)")
    seeds: tuple[float, float] = Field(
        (0.3, 0.7), description="init seeds: heatmap >= lo probable pet, >= hi sure pet")
    sure_background: float = Field(
        0.05, ge=0.0, le=1.0, description="init seeds: heatmap below this is sure background")
    margin: float | None = Field(
        1.0, ge=0.0, description="crop = box grown by this fraction of its side; null: image")
    margin_px: int = Field(8, ge=0, description="lower bound of the margin, in pixels")
    max_side: int | None = Field(
        None, ge=8, description="shrink the crop to this longest side first (fast path)")
    seed: int = 0

    @model_validator(mode="after")
    def _seeds_need_a_heatmap(self) -> GrabCutParams:
        lo, hi = self.seeds
        if not self.sure_background <= lo <= hi <= 1.0:
            raise ValueError(f"seeds {list(self.seeds)} with sure_background {self.sure_background}: "
                             "need sure_background <= lo <= hi <= 1")
        if self.init == "seeds" and self.box_source == "dataset":
            raise ValueError("init: seeds reads the CAM's seeds; box_source: dataset gives boxes "
                             "only (use init: box)")
        return self


def seed_labels(heatmap: np.ndarray, params: GrabCutParams) -> np.ndarray:
    """GrabCut's initial labels from a heatmap: sure background where it is below
    ``sure_background``, probable pet from ``seeds[0]``, sure pet from ``seeds[1]``, probable
    background elsewhere."""
    import cv2

    lo, hi = params.seeds
    labels = np.full(heatmap.shape, cv2.GC_PR_BGD, np.uint8)
    labels[heatmap >= lo] = cv2.GC_PR_FGD
    labels[heatmap >= hi] = cv2.GC_FGD
    labels[heatmap < params.sure_background] = cv2.GC_BGD
    return labels


def seeded_grabcut_into(mask: np.ndarray, image: np.ndarray, heatmap: np.ndarray, box: np.ndarray,
                        params: GrabCutParams) -> str:
    """GrabCut on the whole image from the heatmap's seeds (``init: seeds``), into ``mask``.

    A CAM box cuts the pet wherever the CAM misses a leg or the head, and GrabCut's rectangle
    mode never labels pet outside it; seeds let GrabCut grow the pet anywhere the colours
    carry it, and keep sure background where the classifier saw none of the class. Degenerate
    seeds (no pet seed, or nothing but pet) fall back to the box path's outcomes.
    """
    import cv2

    if not has_box(box):
        return "no_box"
    labels = seed_labels(heatmap, params)
    odd = labels & 1
    if odd.all() or not odd.any():
        return grabcut_into(mask, image, box, params.model_copy(update={"init": "box"}))
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(params.seed)
    try:
        cv2.grabCut(np.ascontiguousarray(image), labels, None, background, foreground,
                    params.iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return grabcut_into(mask, image, box, params.model_copy(update={"init": "box"}))
    if not (labels & 1).any():
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[y0:y1, x0:x1] = 1
        return "empty_result"
    mask[:] = labels & 1
    return "seeds"


def frame_mask(height: int, width: int) -> np.ndarray:
    """GC_PR_FGD everywhere but a frame of GC_PR_BGD along the edge."""
    import cv2

    mask = np.full((height, width), cv2.GC_PR_FGD, np.uint8)
    frame_y = max(FRAME_MIN_PX, round(FRAME_FRACTION * height))
    frame_x = max(FRAME_MIN_PX, round(FRAME_FRACTION * width))
    mask[:frame_y], mask[-frame_y:] = cv2.GC_PR_BGD, cv2.GC_PR_BGD
    mask[:, :frame_x], mask[:, -frame_x:] = cv2.GC_PR_BGD, cv2.GC_PR_BGD
    return mask


def _run_grabcut(crop: np.ndarray, rect: tuple[int, int, int, int],
                 params: GrabCutParams) -> tuple[np.ndarray, str]:
    """{0, 1} mask of ``crop`` from GrabCut on ``rect`` (x0, y0, x1, y1 in crop pixels)."""
    import cv2

    height, width = crop.shape[:2]
    x0, y0, x1, y1 = rect
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(params.seed)
    if (x0, y0, x1, y1) == (0, 0, width, height):
        labels, outcome = frame_mask(height, width), "framed"
        cv2.grabCut(crop, labels, None, background, foreground, params.iterations,
                    cv2.GC_INIT_WITH_MASK)
    else:
        labels, outcome = np.zeros((height, width), np.uint8), "grabcut"
        cv2.grabCut(crop, labels, (x0, y0, x1 - x0, y1 - y0), background, foreground,
                    params.iterations, cv2.GC_INIT_WITH_RECT)
    return labels & 1, outcome  # GC_FGD = 1, GC_PR_FGD = 3: odd means foreground


def shrink_to(crop: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float, float]:
    """``crop`` resized (area) so its longest side is <= ``max_side``; x and y scale factors."""
    import cv2

    height, width = crop.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return crop, 1.0, 1.0
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA), size[0] / width, size[1] / height


def _segment_crop(crop: np.ndarray, rect: tuple[int, int, int, int],
                  params: GrabCutParams) -> tuple[np.ndarray, str]:
    """GrabCut on the (possibly shrunk) crop; the mask comes back at the crop's size."""
    import cv2

    small, scale_x, scale_y = shrink_to(crop, params.max_side)
    if small is not crop:  # widen the rectangle outwards so the box never loses pixels
        height, width = small.shape[:2]
        x0, y0, x1, y1 = rect
        rect = (math.floor(x0 * scale_x), math.floor(y0 * scale_y),
                min(width, math.ceil(x1 * scale_x)), min(height, math.ceil(y1 * scale_y)))
    labels, outcome = _run_grabcut(small, rect, params)
    if small is not crop:
        labels = cv2.resize(labels, crop.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    return labels, outcome


def grabcut_into(mask: np.ndarray, image: np.ndarray, box: np.ndarray,
                 params: GrabCutParams) -> str:
    """Write one image's GrabCut mask into the zeroed ``mask`` (H x W); returns the outcome."""
    import cv2

    if not has_box(box):
        return "no_box"
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        mask[y0:y1, x0:x1] = 1
        return "tiny_box"
    cx0, cy0, cx1, cy1 = crop_around(box, *image.shape[:2], params.margin, params.margin_px)
    try:
        labels, outcome = _segment_crop(image[cy0:cy1, cx0:cx1],
                                        (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0), params)
    except cv2.error:
        labels, outcome = None, "failed"
    if labels is not None and not labels.any():
        labels, outcome = None, "empty_result"
    if labels is None:
        mask[y0:y1, x0:x1] = 1
    else:
        mask[cy0:cy1, cx0:cx1] = labels
    return outcome


def grabcut_masks(images: np.ndarray, boxes: np.ndarray, params: GrabCutParams,
                  heatmaps: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """N x H x W uint8 GrabCut masks for the boxes (or, with ``init: seeds``, the heatmaps'
    seeds), and each image's outcome (module doc)."""
    masks = np.zeros(images.shape[:3], np.uint8)
    if params.init == "seeds":
        if heatmaps is None:
            raise ValueError("GrabCut with init: seeds needs the heatmaps")
        outcomes = [seeded_grabcut_into(mask, image, heatmap, box, params)
                    for mask, image, heatmap, box in zip(masks, images, heatmaps, boxes)]
    else:
        outcomes = [grabcut_into(mask, image, box, params)
                    for mask, image, box in zip(masks, images, boxes)]
    return apply_empty_policy(masks, np.asarray(boxes), params.empty), outcomes


def class_seed_map(heatmaps: np.ndarray, k: int, others: list[int], sure: float) -> np.ndarray:
    """Class ``k``'s heatmap of one image (K x H x W), zero (sure background) where one of the
    ``others`` is sure (>= ``sure``) and higher than class ``k`` there."""
    own = heatmaps[k].copy()
    if others:
        rival = heatmaps[others].max(axis=0)
        own[(rival >= sure) & (rival > own)] = 0.0
    return own


def class_grabcut_masks(images: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                        params: GrabCutParams, heatmaps: np.ndarray | None = None) -> np.ndarray:
    """N x K x H x W {0, 1} GrabCut masks, one per class each image carries (``labels`` N x K,
    boxes N x K x 4, heatmaps N x K x H x W for ``init: seeds``)."""
    if params.init == "seeds" and heatmaps is None:
        raise ValueError("GrabCut with init: seeds needs the heatmaps")
    masks = np.zeros((*labels.shape, *images.shape[1:3]), np.uint8)
    for n, image in enumerate(images):
        classes = classwise.present(labels[n])
        for k in classes:
            if params.init == "seeds":
                seeds = class_seed_map(heatmaps[n], k, [j for j in classes if j != k], params.seeds[1])
                seeded_grabcut_into(masks[n, k], image, seeds, boxes[n, k], params)
            else:
                grabcut_into(masks[n, k], image, boxes[n, k], params)
    return masks


@register
class GrabCutLabeler(BoxLabeler):
    name = "grabcut"
    description = "GrabCut initialised with the CAM box, on a crop around it"
    Params = GrabCutParams

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        boxes = self.boxes(batch)
        class_masks = class_grabcut_masks(batch["image"], boxes, batch["labels"], self.params, batch.get("heatmap"))
        return {"mask": self.paint_classes(batch, class_masks, boxes), "box": boxes, "class_masks": class_masks}
