"""The raw box as a pseudo-mask: the bounding box of the thresholded CAM, filled (Table 3, row 1).

The box is taken over ``heatmap >= threshold`` (a band has no meaning for a box and is
refused): the bounding box of its largest 8-connected component (``component: largest``,
the default) or of every foreground pixel (``component: all``). Mask: 1 inside the box,
0 outside. When nothing passes the threshold there is no box (``box`` = -1 x 4) and the mask
follows ``empty``: all background (default) or all ignore (255).

Several classes per image: a box per class the image carries, from
that class's heatmap or the data's box for it, filled with the class and merged as
``wsss.labelers.classwise.paint`` says (contested pixels to the higher CAM, or the smaller box).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from wsss.labelers import classwise
from wsss.labelers.base import MASK_IGNORE, HeatmapRef, Labeler, ThresholdParams
from wsss.labelers.geometry import Component, box_masks
from wsss.labelers.registry import register


class BoxParams(ThresholdParams):
    """A box from a thresholded heatmap, or the dataset's own; shared by every box labeler."""

    box_source: Literal["cam", "dataset"] = Field(
        "cam", description="cam: the box of the thresholded heatmap; dataset: the box the data "
                           "gives (csv box column, COCO bbox), no classifier needed")
    heatmap: HeatmapRef = HeatmapRef()
    component: Component = Field("largest", description="box of the largest component, or of all")
    empty: Literal["background", "ignore"] = Field(
        "background", description="mask when the thresholded heatmap is empty (no box)")

    @model_validator(mode="after")
    def _no_band(self) -> BoxParams:
        if self.band is not None:
            raise ValueError(f"band {self.band}: box labelers cut heatmap >= threshold; "
                             "set threshold instead")
        return self


def given_boxes(batch: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The dataset's boxes of a batch (``given_box``); a clear error when the data gives none."""
    if "given_box" not in batch:
        raise ValueError(f"labeler {name!r} has box_source: dataset but the batch carries no boxes: "
                         f"read a dataset that gives them (data.format csv with a box column, or coco)")
    return np.asarray(batch["given_box"], np.int32).reshape(-1, 4)


def apply_empty_policy(masks: np.ndarray, boxes: np.ndarray, empty: str) -> np.ndarray:
    """Set the masks of images without a box to all ignore when ``empty == 'ignore'``."""
    if empty == "ignore":
        masks[boxes[:, 0] < 0] = MASK_IGNORE
    return masks


@register
class BoxLabeler(Labeler):
    name = "box"
    description = "raw box: bounding box of the thresholded CAM, filled as the mask"
    Params = BoxParams
    stage = "cpu"
    per_class = True  # a box per class the image carries

    def heatmap_ref(self) -> HeatmapRef | None:
        return None if self.params.box_source == "dataset" else super().heatmap_ref()

    def boxes(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """N x K x 4 int32 boxes, one per entry (x0, y0, x1, y1; exclusive ends; -1 when empty):
        of each entry's heatmap, or the data's given ones."""
        if self.params.box_source == "dataset":
            return classwise.given_class_boxes(batch, self.name)
        return classwise.boxes_of_class_heatmaps(classwise.class_heatmaps(batch, self.name), batch["labels"],
                                                 self.params.threshold, self.params.component)

    def class_scores(self, batch: dict[str, np.ndarray]) -> np.ndarray | None:
        """What settles a pixel several classes claim: their heatmaps, or (data boxes) None."""
        return None if self.params.box_source == "dataset" else np.asarray(batch["heatmap"], np.float32)

    def paint_classes(self, batch: dict[str, np.ndarray], class_masks: np.ndarray,
                      boxes: np.ndarray) -> np.ndarray:
        """One class map per image from N x K x H x W per-entry masks (``classwise.paint``)."""
        empty = classwise.no_box_anywhere(boxes) if self.params.empty == "ignore" else None
        return classwise.paint(class_masks, batch["classes"], self.class_scores(batch), empty, self.params.background)

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        boxes = self.boxes(batch)
        count, width = boxes.shape[:2]
        masks = box_masks((count * width, *batch["image"].shape[1:3]), boxes.reshape(-1, 4))
        masks = masks.reshape(count, width, *masks.shape[1:])
        return {"mask": self.paint_classes(batch, masks, boxes), "box": boxes}
