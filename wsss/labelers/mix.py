"""GrabCut ∩ SLIC, the study's "mix" (Table 3, row 3): GrabCut's mask kept only where it agrees
with whole superpixels.

The study's text: SLIC "groups pixels of the bounding box into meaningful clusters" and the mix
is "the overlapping section of the two pseudo-masks". SLIC alone makes clusters, not a mask, so
we read the SLIC mask as the superpixels that are mostly GrabCut foreground: a superpixel is
foreground when more than ``ratio`` of its pixels are GrabCut foreground, and the mix is GrabCut
∩ those superpixels, background elsewhere. Where SLIC runs (``region``):

- ``crop`` (default): the crop GrabCut ran on, the box grown by the margin;
- ``box``: the box alone, as the study words it; GrabCut foreground outside the box is dropped.

SLIC (``skimage.segmentation.slic``, ``start_label=1``, deterministic) runs on that region,
shrunk to ``max_side`` first when set (labels brought back with nearest neighbour). Images
without a box keep their GrabCut mask (the ``empty`` policy). When the mix keeps no pixel of an
image that has a box, the raw box is the mask, as for GrabCut's empty result (a box-sized guess
beats an empty mask for an image known to hold a pet).

Each class the image carries (one, for one class per image) gets the mix of its GrabCut mask
in its box, merged by ``wsss.labelers.classwise.paint``. Computing GrabCut once for both
labelers: a pipeline that already holds GrabCut's per-class masks made with the same params
mixes them (``mix_classes``) instead of running GrabCut again
(``wsss.masks.stages.mix_from_donor``); ``mix_from_grabcut`` does the same for one-class masks.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from wsss.labelers import classwise
from wsss.labelers.geometry import crop_around, has_box
from wsss.labelers.grabcut import GrabCutLabeler, GrabCutParams, class_grabcut_masks, shrink_to
from wsss.labelers.registry import register


class MixParams(GrabCutParams):
    n_segments: int = Field(100, ge=1, description="SLIC superpixels per crop (approximate)")
    compactness: float = Field(10.0, gt=0.0, description="SLIC colour vs space trade-off")
    ratio: float = Field(0.5, ge=0.0, le=1.0,
                         description="superpixel is foreground above this GrabCut share")
    region: Literal["crop", "box"] = Field(
        "crop", description="where SLIC runs: GrabCut's crop (box + margin), or the box alone")


def superpixels(crop: np.ndarray, params: MixParams) -> np.ndarray:
    """SLIC labels (1..K) of an RGB crop, computed at most at ``max_side``."""
    import cv2
    from skimage.segmentation import slic

    small, _, _ = shrink_to(crop, params.max_side)
    labels = slic(small, n_segments=params.n_segments, compactness=params.compactness,
                  start_label=1, channel_axis=-1)
    if small is not crop:
        labels = cv2.resize(labels.astype(np.int32), crop.shape[1::-1],
                            interpolation=cv2.INTER_NEAREST)
    return labels


def superpixel_vote(labels: np.ndarray, grabcut: np.ndarray, ratio: float) -> np.ndarray:
    """{0, 1} mask: pixels whose superpixel is more than ``ratio`` GrabCut foreground."""
    flat = labels.ravel()
    sizes = np.bincount(flat)
    inside = np.bincount(flat, weights=(grabcut.ravel() == 1), minlength=sizes.size)
    share = np.divide(inside, sizes, out=np.zeros(sizes.size), where=sizes > 0)
    return (share > ratio).astype(np.uint8)[labels]


@register
class MixLabeler(GrabCutLabeler):
    name = "mix"
    description = "GrabCut ∩ SLIC: GrabCut kept on superpixels mostly inside it"
    Params = MixParams

    def mix_from_grabcut(self, images: np.ndarray, boxes: np.ndarray,
                         grabcut: np.ndarray) -> np.ndarray:
        """Mix masks from GrabCut masks made with this labeler's params (no GrabCut rerun)."""
        mixed = np.zeros(grabcut.shape, np.uint8)
        for index, box in enumerate(np.asarray(boxes)):
            mixed[index] = self.mix_one(images[index], box, grabcut[index])
        return mixed

    def mix_one(self, image: np.ndarray, box: np.ndarray, grabcut: np.ndarray) -> np.ndarray:
        """One image's mix (see the module docstring); its own call so a failure stays its own."""
        if not has_box(box):
            return grabcut
        height, width = image.shape[:2]
        margin = 0.0 if self.params.region == "box" else self.params.margin
        margin_px = 0 if self.params.region == "box" else self.params.margin_px
        x0, y0, x1, y1 = crop_around(box, height, width, margin, margin_px)
        inside = grabcut[y0:y1, x0:x1]
        vote = superpixel_vote(superpixels(image[y0:y1, x0:x1], self.params), inside, self.params.ratio)
        mixed = np.zeros(grabcut.shape, np.uint8)
        mixed[y0:y1, x0:x1] = np.where(inside == 1, vote, 0)
        if not mixed.any():  # an empty mix for an image with a box: the raw box, as GrabCut does
            bx0, by0, bx1, by1 = (int(v) for v in box)
            mixed[by0:by1, bx0:bx1] = 1
        return mixed

    def mix_classes(self, images: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                    class_masks: np.ndarray) -> np.ndarray:
        """N x K x H x W mixes of per-class GrabCut masks (each in its class's box)."""
        mixed = np.zeros_like(class_masks)
        for n, image in enumerate(images):
            for k in classwise.present(labels[n]):
                mixed[n, k] = self.mix_one(image, boxes[n, k], class_masks[n, k])
        return mixed

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        boxes = self.boxes(batch)
        class_masks = batch.get("class_masks")  # GrabCut's, given when called directly
        if class_masks is None:
            class_masks = class_grabcut_masks(batch["image"], boxes, batch["labels"], self.params,
                                              batch.get("heatmap"))
        mixed = self.mix_classes(batch["image"], boxes, batch["labels"], class_masks)
        return {"mask": self.paint_classes(batch, mixed, boxes), "box": boxes, "class_masks": class_masks}
