"""Semantic (several-class) segmentation metrics from one confusion matrix: per-class IoU, mIoU.

Targets and predictions are class-indexed maps: 0 background, k the k-th class (1-based) of a
dataset's class list, 255 ignore (in the target; those pixels count nowhere). The meter sums a
(C+1) x (C+1) confusion matrix (rows truth, columns prediction) over every pixel, as the
PASCAL VOC benchmark does, so:

- per-class IoU = diagonal / (row sum + column sum - diagonal), background included;
- mIoU is the mean of the per-class IoUs over the classes that occur (in the truth or the
  prediction): a class nobody saw or claimed is left out instead of counting as 0 or 1;
- the binary metrics on foreground (any class against background) come from the same matrix,
  so the study's Dice and IoU stay comparable for a several-class run.

The matrix merges across DDP ranks with one all-reduce, like ``metrics.SegmentationMeter``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsss.metrics import IGNORE, scores


def class_confusion(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """(C+1) x (C+1) int64 counts (rows truth, columns prediction) of one image or a batch."""
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} != target shape {target.shape}")
    size = num_classes + 1
    valid = target != IGNORE
    truth, predicted = target[valid].astype(np.int64), prediction[valid].astype(np.int64)
    if truth.size and (truth.max() >= size or predicted.max() >= size):
        bad = truth.max() if truth.max() >= size else predicted.max()
        raise ValueError(f"class value {bad} outside 0..{num_classes} (and 255 ignore)")
    return np.bincount(truth * size + predicted, minlength=size * size).reshape(size, size)


def class_iou(matrix: np.ndarray) -> np.ndarray:
    """IoU per class (background first); NaN where a class is neither in truth nor predicted."""
    diagonal = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - diagonal
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, diagonal / np.maximum(union, 1), np.nan)


def foreground_counts(matrix: np.ndarray) -> np.ndarray:
    """[tp, fp, fn, tn] of any class against background (the binary task's view)."""
    tn = int(matrix[0, 0])
    fn = int(matrix[1:, 0].sum())
    fp = int(matrix[0, 1:].sum())
    tp = int(matrix[1:, 1:].sum())
    return np.array([tp, fp, fn, tn], dtype=np.int64)


@dataclass
class ClassMeter:
    """Accumulates a class confusion matrix over images; merges across processes."""

    num_classes: int
    matrix: np.ndarray = field(default=None)
    images: int = 0

    def __post_init__(self) -> None:
        if self.matrix is None:
            self.matrix = np.zeros((self.num_classes + 1,) * 2, dtype=np.int64)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        """Add one image (HxW) or a batch (NxHxW)."""
        self.matrix += class_confusion(prediction, target, self.num_classes)
        self.images += 1 if np.ndim(target) == 2 else len(target)

    def merge(self, other: "ClassMeter") -> None:
        self.matrix += other.matrix
        self.images += other.images

    def reduce_from_all_processes(self) -> "ClassMeter":
        """Sum over every torch.distributed rank with one all-reduce (no-op alone)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        vector = np.concatenate([self.matrix.ravel(), [self.images]]).astype(np.float64)
        tensor = torch.tensor(vector, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        merged = np.rint(tensor.cpu().numpy()).astype(np.int64)
        return ClassMeter(self.num_classes, merged[:-1].reshape(self.matrix.shape), int(merged[-1]))

    def result(self, classes: list[str]) -> dict:
        """``{"miou", "iou": {name: ...}, "pixel_accuracy", "foreground": {dice, iou, ...},
        "images"}``; ``classes`` names classes 1..C (background is named "background")."""
        if len(classes) != self.num_classes:
            raise ValueError(f"{len(classes)} class names for a {self.num_classes}-class meter")
        iou = class_iou(self.matrix)
        total = self.matrix.sum()
        return {
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "iou": {name: float(value) for name, value in zip(["background", *classes], iou)},
            "pixel_accuracy": float(np.trace(self.matrix) / total) if total else float("nan"),
            "foreground": scores(foreground_counts(self.matrix)),
            "images": self.images,
        }


SCORE_BINS = 200  # multi-label scores are binned so ranks merge them with one all-reduce


def score_histograms(probabilities: np.ndarray, targets: np.ndarray, bins: int = SCORE_BINS) -> np.ndarray:
    """2 x C x bins counts of scores in [0, 1]: [0] of the images that carry each class,
    [1] of those that do not. Summed over batches and ranks, they give AP (``average_precision``)."""
    probabilities, targets = np.asarray(probabilities, np.float64), np.asarray(targets) > 0.5
    index = np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)
    classes = probabilities.shape[1]
    counts = np.zeros((2, classes, bins), np.int64)
    for k in range(classes):
        counts[0, k] = np.bincount(index[targets[:, k], k], minlength=bins)
        counts[1, k] = np.bincount(index[~targets[:, k], k], minlength=bins)
    return counts


def average_precision(histograms: np.ndarray) -> np.ndarray:
    """AP per class from ``score_histograms`` (thresholds at the bin edges, highest first):
    sum over thresholds of recall gained times the precision there; NaN for a class no image
    carries (its AP is undefined, and mAP leaves it out)."""
    positives = histograms[0, :, ::-1].cumsum(axis=1).astype(np.float64)
    negatives = histograms[1, :, ::-1].cumsum(axis=1).astype(np.float64)
    total = positives[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(positives + negatives > 0, positives / np.maximum(positives + negatives, 1), 1.0)
        recall = positives / np.maximum(total, 1)
    gained = np.diff(np.concatenate([np.zeros_like(recall[:, :1]), recall], axis=1), axis=1)
    return np.where(total[:, 0] > 0, (gained * precision).sum(axis=1), np.nan)


def multilabel_f1(counts: np.ndarray) -> np.ndarray:
    """F1 per class from C x [tp, fp, fn] counts (1.0 where a class was neither claimed nor carried)."""
    tp, fp, fn = (counts[:, i].astype(np.float64) for i in range(3))
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 1.0)
