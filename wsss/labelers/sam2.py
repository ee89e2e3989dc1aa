"""SAM2 pseudo-masks from prompts: the image centre, Grad-CAM peaks, or a CAM box.

The study (Table 4) prompts SAM2 hiera small, not fine-tuned, with one point at the image
centre and keeps the largest of the multimask outputs; CAM peaks (the 3 points with the highest
CAM score) as prompts do worse. We add a CAM bounding-box prompt, negative points at CAM minima,
peaks spread apart (``peaks: spread``) and selection by predicted IoU.

SAM2 sees each image at its own size and aspect, as the study's SAM2 did (``original_size``):
when the batch carries the decoded ``original`` images, they are encoded instead of the
working-size squares, prompts found on the square heatmap are scaled to the original's pixels,
and the chosen mask comes back to the working size with nearest neighbour.

The three labelers share one ``Sam2Engine`` per process when their model, checkpoint and device
agree, so one image embedding serves every prompt kind (``label_with_shared_embedding``).
Outputs: ``mask`` N x H x W uint8 {0, 1}; ``prompts`` N x K x 3 float32 [x, y, label] (label 1
positive, 0 negative; rows of -1 pad); the box labeler adds ``box`` N x 4 int32 [x0, y0, x1, y1]
(pixel edges, end exclusive; -1s where the heatmap gave no box and the centre point was used).

Several classes per image: ``sam2_peaks`` and ``sam2_box`` prompt SAM2
once per class the image carries (that class's peaks or box; one embedding serves them all) and
merge the per-class masks (``wsss.labelers.classwise.paint``); the box labeler's ``box`` is then
N x K x 4. ``sam2_center`` has one prompt and no class to give it, so the config check refuses it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from wsss.data.arrays import resize_mask
from wsss.labelers import classwise
from wsss.labelers.base import INPUT_KEYS, NO_BOX, BackgroundParams, HeatmapRef, Labeler
from wsss.labelers.box import given_boxes
from wsss.labelers.geometry import boxes_from_heatmaps, has_box
from wsss.labelers.registry import register
from wsss.labelers.sam2_engine import EngineKey, Sam2Engine, checkpoint_hash, get_engine, resolve_checkpoint

POSITIVE, NEGATIVE, PADDING = 1.0, 0.0, -1.0


class Sam2Params(BackgroundParams):
    model: Literal["tiny", "small", "base_plus", "large"] = "small"
    checkpoint: str | None = Field(None, description="default: <models_dir>/sam2.1_hiera_<model>.pt")
    output: Literal["single", "multimask"] = "multimask"
    select: Literal["largest", "score"] = Field(
        "largest", description="of the multimask outputs: the largest, or the highest predicted IoU")
    image_size: int = Field(
        1024, ge=64, le=1024, multiple_of=64,
        description="encoder input size; SAM2's weights are trained at 1024 (smaller only for "
                    "smoke runs with random weights: a 256 encoder is several times faster on CPU)")
    original_size: bool = Field(True, description="encode each image at its own size and aspect "
                                                  "(the study's way), not the working-size square")
    precision: Literal["bf16", "fp32"] = Field(
        "bf16", description="autocast dtype on CUDA (sam2's own examples use bf16; CPU runs fp32)")


class Sam2PeaksParams(Sam2Params):
    heatmap: HeatmapRef = HeatmapRef()
    points: int = Field(3, ge=1, description="positive points at the heatmap's highest peaks")
    peaks: Literal["spread", "top"] = Field(
        "spread", description="spread: local maxima min_distance apart; top: the highest-scoring "
                              "pixels, as the study takes them")
    min_distance: int = Field(32, ge=0, description="pixels between two points of one kind (spread)")
    negative_points: int = Field(0, ge=0, description="negative points at the heatmap's minima")


class Sam2BoxParams(Sam2Params):
    box_source: Literal["cam", "dataset"] = Field(
        "cam", description="cam: the box of the largest CAM blob; dataset: the data's own box")
    heatmap: HeatmapRef = HeatmapRef()
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="box of the largest blob >= this")


# -- prompt geometry -------------------------------------------------------------------------


def spread_peaks(heatmap: np.ndarray, count: int, min_distance: int) -> np.ndarray:
    """Up to ``count`` local maxima, highest first, pairwise >= ``min_distance`` px apart.

    Returns P x 2 [x, y] pixel centres (index + 0.5). Plateaus at the global minimum are no
    peaks; a constant heatmap (or one without maxima) still gives its global maximum.
    """
    import cv2

    values = np.asarray(heatmap, dtype=np.float32)
    local_max = values >= cv2.dilate(values, np.ones((3, 3), np.uint8))
    candidates = np.where(local_max & (values > values.min()), values, -np.inf)
    rows, cols = np.mgrid[: values.shape[0], : values.shape[1]]
    chosen: list[tuple[int, int]] = []
    while len(chosen) < count and np.isfinite(candidates).any():
        row, col = np.unravel_index(int(np.argmax(candidates)), candidates.shape)
        chosen.append((int(row), int(col)))
        near = (rows - row) ** 2 + (cols - col) ** 2 < min_distance ** 2
        candidates[near] = -np.inf
        candidates[row, col] = -np.inf
    if not chosen:
        chosen.append(np.unravel_index(int(np.argmax(values)), values.shape))
    return np.array([(col + 0.5, row + 0.5) for row, col in chosen], dtype=np.float32)


def top_points(heatmap: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` highest-scoring pixels, highest first (ties: row-major order), as P x 2
    [x, y] pixel centres: the study's "3 points with the highest CAM score"."""
    values = np.asarray(heatmap, dtype=np.float32).ravel()
    order = np.argsort(-values, kind="stable")[:count]
    rows, cols = np.unravel_index(order, np.asarray(heatmap).shape)
    return np.column_stack([cols + 0.5, rows + 0.5]).astype(np.float32)


def scale_prompts(points: np.ndarray | None, box: np.ndarray | None, scale_x: float,
                  scale_y: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Prompts found at the working size in the pixels of an image ``scale`` times larger."""
    factors = np.array([scale_x, scale_y], np.float32)
    if points is not None:
        points = np.column_stack([points[:, :2] * factors, points[:, 2:]]).astype(np.float32)
    if box is not None:
        box = (np.asarray(box, np.float32) * np.tile(factors, 2)).astype(np.float32)
    return points, box


def spread_minima(heatmap: np.ndarray, count: int, min_distance: int) -> np.ndarray:
    """Up to ``count`` points at the lowest heatmap values, pairwise >= ``min_distance`` apart."""
    return spread_peaks(-np.asarray(heatmap, dtype=np.float32), count, min_distance)


def centre_point(height: int, width: int) -> np.ndarray:
    return np.array([[width / 2.0, height / 2.0, POSITIVE]], dtype=np.float32)


def pad_prompts(prompts: list[np.ndarray], rows: int) -> np.ndarray:
    """Stack per-image K_i x 3 prompts into N x rows x 3, padding with -1."""
    out = np.full((len(prompts), rows, 3), PADDING, dtype=np.float32)
    for index, points in enumerate(prompts):
        out[index, : len(points)] = points
    return out


# -- labelers --------------------------------------------------------------------------------


class Sam2Labeler(Labeler):
    """Base: subclasses say which prompts each image gets; the base decodes and picks a mask."""

    Params = Sam2Params
    stage: ClassVar[str] = "sam2"

    def prompts(self, batch: dict[str, np.ndarray]) -> tuple[list[np.ndarray | None], list | None]:
        """Per image: K x 3 points [x, y, label] or None, and a box or None (or no boxes)."""
        raise NotImplementedError

    def prompt_table(self, points: list[np.ndarray | None]) -> np.ndarray:
        """The ``prompts`` output: N x 1 x 3, -1s where an image got no point."""
        return pad_prompts([np.zeros((0, 3), np.float32) if p is None else p for p in points], 1)

    def engine_key(self) -> EngineKey:
        checkpoint = resolve_checkpoint(self.params.model, self.params.checkpoint, self.context)
        seed = self.context.seed if checkpoint is None else 0  # the seed only draws random weights
        return EngineKey(self.params.model, checkpoint, self.context.device, seed, self.params.image_size,
                         self.params.precision)

    @property
    def engine(self) -> Sam2Engine:
        """The process-wide engine this labeler decodes with (shared with its siblings)."""
        return get_engine(self.engine_key())

    def weights_id(self) -> str:
        key = self.engine_key()
        if key.checkpoint is None:
            return f"random-{key.model}-seed{key.seed}"
        return checkpoint_hash(key.checkpoint)

    def select(self, masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """One mask of the C candidates: the largest, or the highest predicted IoU."""
        if self.params.select == "score":
            return masks[int(np.argmax(scores))]
        return masks[int(np.argmax(masks.reshape(len(masks), -1).sum(axis=1)))]

    def decode(self, batch: dict[str, np.ndarray], points: list[np.ndarray | None],
               boxes: list | None) -> np.ndarray:
        """N x H x W {0, 1} masks of SAM2 on the batch's images for one prompt set per image
        (the embedding is computed once per batch and kept for the next prompt set)."""
        images = batch["image"]
        originals = batch.get("original") if self.params.original_size else None
        if originals is None:
            seen, asked = list(images), (points, boxes)
        else:
            seen = [np.asarray(image, np.uint8) for image in originals]
            scaled = [scale_prompts(p, None if boxes is None else boxes[i], o.shape[1] / images.shape[2],
                                    o.shape[0] / images.shape[1])
                      for i, (p, o) in enumerate(zip(points, seen))]
            asked = ([p for p, _ in scaled], None if boxes is None else [b for _, b in scaled])
        engine = self.engine
        engine.embed(seen)
        masks, scores = engine.predict(*asked, self.params.output == "multimask")
        size = images.shape[1:3]
        return np.stack([resize_mask(self.select(m, s).astype(np.uint8), size) for m, s in zip(masks, scores)])

    def label_entries(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One prompt set per image (the short form: ``heatmap`` N x H x W, ``given_box`` N x 4):
        its mask, prompts and (box prompts) boxes."""
        images = batch["image"]
        if self.heatmap_ref() is not None and batch["heatmap"].shape != images.shape[:3]:
            raise ValueError(f"labeler {self.name!r}: heatmap {batch['heatmap'].shape} does not "
                             f"match images {images.shape[:3]}")
        points, boxes = self.prompts(batch)
        output = {"mask": self.decode(batch, points, boxes), "prompts": self.prompt_table(points)}
        if boxes is not None:
            output["box"] = np.stack([NO_BOX if b is None else b.astype(np.int32) for b in boxes])
        return output

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """SAM2 prompted per entry (that class's heatmap or box), the per-entry masks merged by
        ``classwise.paint`` (contested pixels to the higher CAM, or the smaller mask). One
        embedding per image serves every class."""
        labels = batch["labels"]
        heatmaps = classwise.class_heatmaps(batch, self.name) if self.heatmap_ref() is not None else None
        entries = []
        for k in range(labels.shape[1]):
            view = {key: value for key, value in batch.items() if key not in ("labels", "classes")}
            view["label"] = labels[:, k]
            if heatmaps is not None:
                view["heatmap"] = heatmaps[:, k]
            if "given_box" in batch:
                view["given_box"] = np.asarray(batch["given_box"])[:, k]
            entries.append(self.label_entries(view))
        output = {"mask": classwise.paint(np.stack([e["mask"] for e in entries], axis=1), batch["classes"],
                                          heatmaps, background=self.params.background),
                  "prompts": np.stack([e["prompts"] for e in entries], axis=1)}
        if "box" in entries[0]:
            boxes = np.stack([e["box"] for e in entries], axis=1)
            output["box"] = np.where(labels[..., None] >= 0, boxes, -1).astype(np.int32)
        return output


@register
class Sam2Center(Sam2Labeler):
    name = "sam2_center"
    description = "SAM2 prompted with one point at the image centre"

    def prompts(self, batch: dict[str, np.ndarray]) -> tuple[list[np.ndarray | None], None]:
        height, width = batch["image"].shape[1:3]
        return [centre_point(height, width) for _ in range(len(batch["image"]))], None

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.label_entries(batch)  # one-class masks: the image's centre names no class


@register
class Sam2Peaks(Sam2Labeler):
    name = "sam2_peaks"
    description = "SAM2 prompted with CAM peaks (and optional negative points at CAM minima)"
    Params = Sam2PeaksParams
    per_class = True  # prompted per class from that class's map

    def prompt_table(self, points: list[np.ndarray | None]) -> np.ndarray:
        """N x (points + negative_points) x 3: positives first, negatives in the last rows."""
        positives = [p[p[:, 2] == POSITIVE] for p in points]
        table = pad_prompts(positives, self.params.points + self.params.negative_points)
        for row, image_points in zip(table, points):
            negatives = image_points[image_points[:, 2] == NEGATIVE]
            row[self.params.points : self.params.points + len(negatives)] = negatives
        return table

    def prompts(self, batch: dict[str, np.ndarray]) -> tuple[list[np.ndarray | None], None]:
        points = []
        for heatmap in batch["heatmap"]:
            if self.params.peaks == "top":
                peaks = top_points(heatmap, self.params.points)
            else:
                peaks = spread_peaks(heatmap, self.params.points, self.params.min_distance)
            chosen = [np.column_stack([peaks, np.full(len(peaks), POSITIVE, np.float32)])]
            if self.params.negative_points:
                minima = spread_minima(heatmap, self.params.negative_points, self.params.min_distance)
                chosen.append(np.column_stack([minima, np.full(len(minima), NEGATIVE, np.float32)]))
            points.append(np.concatenate(chosen).astype(np.float32))
        return points, None


@register
class Sam2Box(Sam2Labeler):
    name = "sam2_box"
    description = "SAM2 prompted with the box of the largest CAM blob (centre point without one)"
    Params = Sam2BoxParams
    per_class = True  # prompted per class with that class's box

    def heatmap_ref(self) -> HeatmapRef | None:
        return None if self.params.box_source == "dataset" else super().heatmap_ref()

    def prompts(self, batch: dict[str, np.ndarray]) -> tuple[list[np.ndarray | None], list]:
        height, width = batch["image"].shape[1:3]
        points, boxes = [], []
        found_boxes = (given_boxes(batch, self.name) if self.params.box_source == "dataset" else
                       boxes_from_heatmaps(batch["heatmap"], self.params.threshold, "largest"))
        for box in found_boxes:
            found = has_box(box)
            points.append(None if found else centre_point(height, width))
            boxes.append(box if found else None)
        return points, boxes


def _engine_group(labeler: Labeler) -> tuple[int, str]:
    if isinstance(labeler, Sam2Labeler):
        return 1, repr(labeler.engine_key())
    return 0, ""


def label_with_shared_embedding(labelers: list[Labeler], batch: dict[str, np.ndarray]
                                ) -> dict[int, dict[str, np.ndarray]]:
    """Outputs of every labeler on ``batch``, keyed by the labeler's position in ``labelers``.

    SAM2 labelers run grouped by engine, so each image is encoded once per engine however many
    prompt kinds use it; a heatmap missing from the batch is computed once per heatmap kind.
    Ground truth (trimaps, head boxes) never reaches a labeler.
    """
    visible = {key: batch[key] for key in INPUT_KEYS if key in batch}
    heatmaps: dict[str, np.ndarray] = {}
    outputs: dict[int, dict[str, np.ndarray]] = {}
    for index in sorted(range(len(labelers)), key=lambda i: _engine_group(labelers[i])):
        labeler, inputs = labelers[index], visible
        ref = labeler.heatmap_ref()
        if ref is not None and "heatmap" not in visible:
            if ref.key() not in heatmaps:
                heatmaps[ref.key()] = labeler.heatmap_source()(visible)["heatmap"]
            inputs = {**visible, "heatmap": heatmaps[ref.key()]}
        outputs[index] = labeler(inputs)
    return {index: outputs[index] for index in range(len(labelers))}
