"""SAM2 on top of other evidence: refine one mask set of the study, or pick SAM2 proposals with a CAM.

``sam2_refine`` prompts SAM2 from a coarse mask (a CRF's, a CAM's, an agreement's): its bounding
box, points at the maxima of its distance transform (the most interior pixels, the safest
positives), optionally the mask itself as SAM2's low-resolution mask prompt and negative points
far from it; of SAM2's candidates it keeps the one that agrees best with the coarse mask.

``sam2_cam_select`` follows "Segment Anything Model (SAM) Enhanced Pseudo Labels for WSSS"
(Chen et al.): SAM2 proposes object-aware segments (one single-point prompt per node of a
lattice, or per CAM peak plus the CAM box), the CAM decides which belong to the object, and the
thresholded CAM stays wherever no kept segment speaks.

Both share the process's ``Sam2Engine`` with the other SAM2 labelers (one encoder pass per
batch) and, like them, encode each ``original`` image at its own size: prompts found at the
working size are scaled to it and masks come back to the working size with nearest neighbour.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from wsss.data.arrays import resize_image, resize_mask
from wsss.labelers.base import (
    MASK_BACKGROUND,
    MASK_FOREGROUND,
    MASK_IGNORE,
    NO_BOX,
    DerivedParams,
    HeatmapRef,
)
from wsss.labelers.geometry import boxes_from_heatmaps, has_box
from wsss.labelers.registry import register
from wsss.labelers.sam2 import (
    NEGATIVE,
    PADDING,
    POSITIVE,
    Sam2Labeler,
    Sam2Params,
    pad_prompts,
    scale_prompts,
    spread_peaks,
)

# A binary mask carries no confidence, and SAM2 was trained on its own logits as mask prompts:
# a firm but unsaturated logit (its outputs are clamped to +-32) reads as "fairly sure".
MASK_LOGIT = 10.0


# -- the encoder's view of a batch (shared by both labelers) --------------------------------


def encoder_view(batch: dict[str, np.ndarray], original_size: bool
                 ) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """The images SAM2 encodes and, per image, the (x, y) factors from working-size pixels to
    its pixels: each ``original`` at its own size when asked and present, else the squares."""
    images = batch["image"]
    originals = batch.get("original") if original_size else None
    if originals is None:
        return list(images), [(1.0, 1.0)] * len(images)
    seen = [np.asarray(original, np.uint8) for original in originals]
    return seen, [(o.shape[1] / images.shape[2], o.shape[0] / images.shape[1]) for o in seen]


def to_working_size(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """K x h x w masks at the encoded image's size -> K x H x W uint8 at the working size."""
    if len(masks) == 0:
        return np.zeros((0, *size), np.uint8)
    return np.stack([resize_mask(mask.astype(np.uint8), size) for mask in masks])


# -- sam2_refine -----------------------------------------------------------------------------


class Sam2RefineParams(Sam2Params, DerivedParams):
    select: Literal["iou", "largest", "score"] = Field(
        "iou", description="of the multimask outputs: the best IoU with the coarse mask, the "
                           "largest, or the highest predicted IoU")
    box: bool = Field(True, description="prompt with the coarse mask's bounding box")
    points: int = Field(3, ge=0, description="positive points at the coarse mask's distance-transform maxima")
    min_distance: int = Field(32, ge=0, description="pixels between two points of one kind")
    mask_prompt: bool = Field(False, description="the coarse mask as SAM2's low-resolution mask prompt")
    negative_points: int = Field(0, ge=0, description="negative points farthest from the coarse mask")

    @field_validator("sources")
    @classmethod
    def _one_source(cls, sources: list[str]) -> list[str]:
        if len(sources) != 1:
            raise ValueError(f"sam2_refine refines exactly one mask set, got {len(sources)}")
        return sources

    @model_validator(mode="after")
    def _some_prompt(self) -> Sam2RefineParams:
        if not (self.box or self.points or self.mask_prompt):
            raise ValueError("no prompt: set box, points > 0 or mask_prompt")
        return self


def interior_distance(coarse: np.ndarray) -> np.ndarray:
    """Distance of each foreground pixel to the nearest pixel that is not foreground (ignore
    included) or to the image edge: its maxima are the mask's most interior points."""
    import cv2

    foreground = np.pad((coarse == MASK_FOREGROUND).astype(np.uint8), 1)
    return cv2.distanceTransform(foreground, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def background_distance(coarse: np.ndarray) -> np.ndarray:
    """Distance of each sure-background pixel to the nearest foreground or ignore pixel (the
    image edge does not count): its maxima are the surest places for negative points."""
    import cv2

    background = (coarse == MASK_BACKGROUND).astype(np.uint8)
    return cv2.distanceTransform(background, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def refine_prompts(coarse: np.ndarray, params: Sam2RefineParams
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Points (K x 3 [x, y, label], positives first) and box of a coarse mask, at its size;
    (None, None) for a mask without foreground: there is nothing to refine."""
    foreground = coarse == MASK_FOREGROUND
    if not foreground.any():
        return None, None
    box = boxes_from_heatmaps(foreground[None].astype(np.float32), 0.5, "all")[0] if params.box else None
    chosen = []
    if params.points:
        peaks = spread_peaks(interior_distance(coarse), params.points, params.min_distance)
        chosen.append(np.column_stack([peaks, np.full(len(peaks), POSITIVE, np.float32)]))
    if params.negative_points and (coarse == MASK_BACKGROUND).any():
        far = spread_peaks(background_distance(coarse), params.negative_points, params.min_distance)
        chosen.append(np.column_stack([far, np.full(len(far), NEGATIVE, np.float32)]))
    points = np.concatenate(chosen).astype(np.float32) if chosen else None
    return points, box


def mask_logits(coarse: np.ndarray, side: int) -> np.ndarray:
    """The coarse mask as SAM2's mask prompt: 1 x side x side logits, +MASK_LOGIT on foreground,
    -MASK_LOGIT on background, 0 (undecided) on ignore. SAM2 squeezes every image into its
    square input, so the working-size square maps onto it whatever the original's aspect."""
    logits = np.where(coarse == MASK_FOREGROUND, MASK_LOGIT,
                      np.where(coarse == MASK_IGNORE, 0.0, -MASK_LOGIT)).astype(np.float32)
    return resize_image(logits, side)[None]


def iou_with_coarse(candidates: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """IoU of each of C candidate masks with the coarse foreground; ignore pixels count in
    neither intersection nor union (the coarse mask has no opinion there)."""
    foreground = coarse == MASK_FOREGROUND
    counted = candidates.astype(bool) & (coarse != MASK_IGNORE)
    intersection = (counted & foreground).sum(axis=(1, 2))
    union = (counted | foreground).sum(axis=(1, 2))
    return intersection / np.maximum(union, 1)


@register
class Sam2Refine(Sam2Labeler):
    name = "sam2_refine"
    description = "SAM2 prompted from one coarse mask set (its box, interior points, optionally the mask)"
    Params = Sam2RefineParams

    def coarse_masks(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """The source set's N x H x W masks at the working size."""
        images, sources = batch["image"], np.asarray(batch["source_masks"])
        expected = (len(images), 1, *images.shape[1:3])
        if sources.shape != expected:
            raise ValueError(f"labeler {self.name!r}: source_masks {sources.shape}, expected {expected}")
        return sources[:, 0]

    def prompts(self, batch: dict[str, np.ndarray]) -> tuple[list[np.ndarray | None], list]:
        found = [refine_prompts(coarse, self.params) for coarse in self.coarse_masks(batch)]
        return [points for points, _ in found], [box for _, box in found]

    def prompt_table(self, points: list[np.ndarray | None]) -> np.ndarray:
        """N x max(1, points + negative_points) x 3: positives first, negatives from row ``points``."""
        rows = max(1, self.params.points + self.params.negative_points)
        table = np.full((len(points), rows, 3), PADDING, np.float32)
        for row, image_points in zip(table, points):
            if image_points is not None:
                positives = image_points[image_points[:, 2] == POSITIVE]
                negatives = image_points[image_points[:, 2] == NEGATIVE]
                row[: len(positives)] = positives
                row[self.params.points : self.params.points + len(negatives)] = negatives
        return table

    def choose(self, candidates: np.ndarray, scores: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """One of the C working-size candidates: by IoU with the coarse mask, or as ``select``."""
        if self.params.select == "iou":
            return candidates[int(np.argmax(iou_with_coarse(candidates, coarse)))]
        return self.select(candidates, scores)

    def decode(self, batch: dict[str, np.ndarray], points: list, boxes: list, coarse: np.ndarray
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """SAM2's candidates per image (C x H x W uint8 at the working size) and their scores."""
        seen, factors = encoder_view(batch, self.params.original_size)
        scaled = [scale_prompts(p, b, *f) for p, b, f in zip(points, boxes, factors)]
        engine = self.engine
        engine.embed(seen)
        mask_inputs = None
        if self.params.mask_prompt:
            side = engine.predictor.model.sam_prompt_encoder.mask_input_size[0]
            mask_inputs = [mask_logits(image_coarse, side) for image_coarse in coarse]
        masks, scores = engine.predict([p for p, _ in scaled], [b for _, b in scaled],
                                       self.params.output == "multimask", mask_inputs)
        return [to_working_size(m, batch["image"].shape[1:3]) for m in masks], scores

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        coarse = self.coarse_masks(batch)
        points, boxes = self.prompts(batch)
        pseudo = np.zeros(coarse.shape, np.uint8)  # an empty coarse mask stays empty
        refined = np.flatnonzero((coarse == MASK_FOREGROUND).any(axis=(1, 2)))
        if len(refined):
            candidates, scores = self.decode(batch, points, boxes, coarse)
            for index in refined:
                pseudo[index] = self.choose(candidates[index], scores[index], coarse[index])
        output = {"mask": pseudo, "prompts": self.prompt_table(points)}
        if self.params.box:
            output["box"] = np.stack([NO_BOX if b is None else b.astype(np.int32) for b in boxes])
        return output


# -- sam2_cam_select -------------------------------------------------------------------------


class Sam2CamSelectParams(Sam2Params):
    select: Literal["largest", "score"] = Field(
        "score", description="of each proposal's multimask outputs (the largest is often the "
                             "whole scene, which the cover rule would keep)")
    heatmap: HeatmapRef = HeatmapRef()
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="the CAM region: heatmap >= threshold")
    proposals: Literal["grid", "cam"] = Field(
        "grid", description="grid: a single-point prompt per lattice node; cam: one per CAM peak "
                            "plus the box of the largest CAM blob")
    grid: int = Field(8, ge=1, le=64, description="grid x grid lattice of proposal points")
    points: int = Field(3, ge=1, description="cam proposals: CAM peaks, spread apart")
    min_distance: int = Field(32, ge=0, description="pixels between two CAM peaks")
    inside: float = Field(0.5, ge=0.0, le=1.0, description="keep a proposal more than this share "
                                                          "of which lies in the CAM region")
    cover: float = Field(0.5, ge=0.0, le=1.0, description="... or which covers more than this "
                                                        "share of the CAM region")


def grid_points(height: int, width: int, grid: int) -> np.ndarray:
    """The centres of a grid x grid partition of the image, row by row, as P x 2 [x, y]."""
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    columns, rows = np.meshgrid(xs, ys)
    return np.column_stack([columns.ravel(), rows.ravel()]).astype(np.float32)


def keep_proposals(proposals: np.ndarray, region: np.ndarray, inside: float, cover: float) -> np.ndarray:
    """P bools: the proposal lies mostly in the CAM region (a part of the object) or covers most
    of it (the object itself). An empty proposal or an empty region keeps nothing."""
    proposals = proposals.astype(bool)
    area = proposals.sum(axis=(1, 2))
    overlap = (proposals & region).sum(axis=(1, 2))
    return (overlap > inside * area) | (overlap > cover * region.sum())


@register
class Sam2CamSelect(Sam2Labeler):
    name = "sam2_cam_select"
    description = "SAM2 proposals (lattice points or CAM peaks and box) kept where the CAM agrees"
    Params = Sam2CamSelectParams

    def prompts(self, batch: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list | None]:
        """Per image the proposal points (P x 2 [x, y]) and, for cam proposals, the CAM box."""
        count, height, width = batch["image"].shape[:3]
        if self.params.proposals == "grid":
            lattice = grid_points(height, width, self.params.grid)
            return [lattice] * count, None
        peaks = [spread_peaks(h, self.params.points, self.params.min_distance) for h in batch["heatmap"]]
        boxes = boxes_from_heatmaps(batch["heatmap"], self.params.threshold, "largest")
        return peaks, [box if has_box(box) else None for box in boxes]

    def proposals_of(self, batch: dict[str, np.ndarray], points: list[np.ndarray], boxes: list | None
                     ) -> list[np.ndarray]:
        """Per image P x H x W uint8 proposals at the working size: one per point, then the box."""
        seen, factors = encoder_view(batch, self.params.original_size)
        scaled = [scale_prompts(p, b, *f) for p, b, f in zip(points, boxes or [None] * len(seen), factors)]
        engine, multimask = self.engine, self.params.output == "multimask"
        engine.embed(seen)
        masks, scores = engine.predict_proposals([p for p, _ in scaled], multimask)
        if boxes is not None:
            box_masks, box_scores = engine.predict([None] * len(seen), [b for _, b in scaled], multimask)
            for index in (i for i, box in enumerate(boxes) if box is not None):
                masks[index] = np.concatenate([masks[index], box_masks[index][None]])
                scores[index] = np.concatenate([scores[index], box_scores[index][None]])
        size = batch["image"].shape[1:3]
        return [self.chosen(image_masks, image_scores, size) for image_masks, image_scores
                in zip(masks, scores)]

    def chosen(self, masks: np.ndarray, scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """P x C x h x w candidates -> one mask per proposal (``select``), P x H x W at the working size."""
        picked = [self.select(candidates, scored) for candidates, scored in zip(masks, scores)]
        return to_working_size(np.array(picked, bool).reshape(len(picked), *masks.shape[2:]), size)

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images, heatmaps = batch["image"], batch["heatmap"]
        if heatmaps.shape != images.shape[:3]:
            raise ValueError(f"labeler {self.name!r}: heatmap {heatmaps.shape} does not match "
                             f"images {images.shape[:3]}")
        regions = heatmaps >= self.params.threshold
        points, boxes = self.prompts(batch)
        pseudo, kept_points = [], []
        for region, proposals, image_points in zip(regions, self.proposals_of(batch, points, boxes), points):
            kept = keep_proposals(proposals, region, self.params.inside, self.params.cover)
            pseudo.append(np.where(proposals[kept].any(axis=0), MASK_FOREGROUND, region).astype(np.uint8))
            table = np.column_stack([image_points, np.full(len(image_points), POSITIVE, np.float32)])
            kept_points.append(np.where(kept[: len(image_points), None], table, PADDING))
        rows = self.params.grid ** 2 if self.params.proposals == "grid" else self.params.points
        output = {"mask": np.stack(pseudo), "prompts": pad_prompts(kept_points, rows)}
        if boxes is not None:
            output["box"] = np.stack([NO_BOX if b is None else b.astype(np.int32) for b in boxes])
        return output
