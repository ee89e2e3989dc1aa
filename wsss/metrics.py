"""Segmentation metrics of every task from one confusion matrix: one computation, two views.

Targets and predictions are class maps: 0 background, k the k-th class (1-based) of a dataset's
class list, 255 ignore (in the target; those pixels count nowhere). The binary study is the one
class case (C = 1). ``SegmentationMeter`` sums a (C+1) x (C+1) confusion matrix (rows truth,
columns prediction) over every pixel, as the PASCAL VOC benchmark does, and the per-image scores
of its foreground view. The views read the same counts:

- the binary view: Dice, IoU, accuracy, precision and recall of any class against background
  (for C = 1 of class 1 against the rest, the study's figures), in two aggregations, both named:
  ``micro`` (counts summed over every pixel of the dataset, then the ratios) and ``per_image``
  (the ratios per image, then averaged over images);
- the class view (``result(classes)``): per-class IoU, background included, and mIoU, the mean
  of the per-class IoUs over the classes that occur in the truth or the prediction (a class
  nobody saw or claimed is left out instead of counting as 0 or 1).

Conventions (documented once, tested):

- A ratio whose denominator is zero is 1.0 when the image has nothing to get wrong for that
  ratio, else 0.0. So an empty prediction on an empty target scores 1.0 everywhere; an empty
  prediction on a non-empty target has precision 1.0 (it claimed nothing false) and recall,
  Dice and IoU 0.0.
- An image whose target is entirely ignored adds nothing to the counts and is left out of the
  ``per_image`` mean (counted in ``images_ignored``).
- The meter merges across DDP ranks with one all-reduce (``reduce_from_all_processes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = 255
BORDER_POLICIES: tuple[str, ...] = ("ignore", "foreground", "background")
METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "accuracy", "precision", "recall")
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3


def trimap_to_target(trimap: np.ndarray, border_policy: str = "ignore") -> np.ndarray:
    """Trimap (1 pet, 2 background, 3 border) -> target {0, 1, 255} under a border policy."""
    if border_policy not in BORDER_POLICIES:
        raise ValueError(f"border_policy {border_policy!r}; allowed: {', '.join(BORDER_POLICIES)}")
    border_value = {"ignore": IGNORE, "foreground": 1, "background": 0}[border_policy]
    target = np.full(trimap.shape, IGNORE, dtype=np.uint8)
    target[trimap == TRIMAP_PET] = 1
    target[trimap == TRIMAP_BACKGROUND] = 0
    target[trimap == TRIMAP_BORDER] = border_value
    return target


def binarize_prediction(mask: np.ndarray) -> np.ndarray:
    """A predicted mask in {0, 1} or {0, 255} -> bool foreground."""
    return np.asarray(mask) > 0


def class_confusion(prediction: np.ndarray, target: np.ndarray, num_classes: int = 1) -> np.ndarray:
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


def foreground_counts(matrix: np.ndarray) -> np.ndarray:
    """[tp, fp, fn, tn] of any class against background (the binary view of a matrix)."""
    tn = int(matrix[0, 0])
    fn = int(matrix[1:, 0].sum())
    fp = int(matrix[0, 1:].sum())
    tp = int(matrix[1:, 1:].sum())
    return np.array([tp, fp, fn, tn], dtype=np.int64)


def confusion(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[tp, fp, fn, tn] of one image; ``prediction`` bool or {0,1}, ``target`` {0, 1, 255}."""
    return foreground_counts(class_confusion((np.asarray(prediction) > 0).astype(np.uint8), target))


def class_iou(matrix: np.ndarray) -> np.ndarray:
    """IoU per class (background first); NaN where a class is neither in truth nor predicted."""
    diagonal = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - diagonal
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, diagonal / np.maximum(union, 1), np.nan)


def _ratio(numerator: float, denominator: float, nothing_to_miss: bool) -> float:
    if denominator == 0:
        return 1.0 if nothing_to_miss else 0.0
    return float(numerator) / float(denominator)


def scores(counts: np.ndarray) -> dict[str, float]:
    """The five metrics from one [tp, fp, fn, tn] vector (see the module's conventions)."""
    tp, fp, fn, tn = (int(v) for v in counts)
    perfect = fp == 0 and fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, perfect),
        "iou": _ratio(tp, tp + fp + fn, perfect),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, True),
        "precision": _ratio(tp, tp + fp, fp == 0),
        "recall": _ratio(tp, tp + fn, fn == 0),
    }


@dataclass
class SegmentationMeter:
    """Accumulates a class confusion matrix and per-image foreground scores; merges across
    processes. ``num_classes`` is C (1 for the binary study)."""

    num_classes: int = 1
    matrix: np.ndarray | None = None
    score_sums: np.ndarray = field(default_factory=lambda: np.zeros(len(METRIC_NAMES)))
    images: int = 0
    images_ignored: int = 0

    def __post_init__(self) -> None:
        if self.matrix is None:
            self.matrix = np.zeros((self.num_classes + 1,) * 2, dtype=np.int64)

    @property
    def counts(self) -> np.ndarray:
        """[tp, fp, fn, tn] of any class against background, summed over every image."""
        return foreground_counts(self.matrix)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Add one image's class maps; returns its foreground [tp, fp, fn, tn]. With one class a
        prediction is a mask: any nonzero value (1, or a pseudo-mask's 255) claims class 1."""
        prediction = np.asarray(prediction)
        if self.num_classes == 1 or prediction.dtype == bool:
            prediction = prediction > 0
        matrix = class_confusion(prediction.astype(np.uint8), target, self.num_classes)
        counts = foreground_counts(matrix)
        if counts.sum() == 0:
            self.images_ignored += 1
            return counts
        self.matrix += matrix
        per_image = scores(counts)
        self.score_sums += np.array([per_image[name] for name in METRIC_NAMES])
        self.images += 1
        return counts

    def update_batch(self, predictions: np.ndarray, targets: np.ndarray) -> None:
        for prediction, target in zip(predictions, targets):
            self.update(prediction, target)

    def merge(self, other: SegmentationMeter) -> None:
        self.matrix += other.matrix
        self.score_sums += other.score_sums
        self.images += other.images
        self.images_ignored += other.images_ignored

    def as_vector(self) -> np.ndarray:
        """Everything the meter holds in one float64 vector (one all-reduce merges it)."""
        return np.concatenate([self.matrix.ravel().astype(np.float64), self.score_sums,
                               [self.images, self.images_ignored]])

    @classmethod
    def from_vector(cls, vector: np.ndarray, num_classes: int = 1) -> SegmentationMeter:
        vector = np.asarray(vector, dtype=np.float64)
        cells, n = (num_classes + 1) ** 2, len(METRIC_NAMES)
        return cls(num_classes=num_classes,
                   matrix=np.rint(vector[:cells]).astype(np.int64).reshape(num_classes + 1, -1),
                   score_sums=vector[cells:cells + n].copy(),
                   images=int(round(vector[cells + n])), images_ignored=int(round(vector[cells + n + 1])))

    def reduce_from_all_processes(self) -> SegmentationMeter:
        """Sum this meter over every torch.distributed rank with one all-reduce (no-op alone)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(self.as_vector(), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return self.from_vector(tensor.cpu().numpy(), self.num_classes)

    def result(self, classes: list[str] | None = None, background: bool = True) -> dict:
        """The binary view ``{"micro": {...}, "per_image": {...}, "images": n, "images_ignored":
        m}``; with ``classes`` (the names of classes 1..C) the class view too (``class_view``)."""
        per_image = (
            {name: float(s / self.images) for name, s in zip(METRIC_NAMES, self.score_sums)}
            if self.images
            else {name: float("nan") for name in METRIC_NAMES}
        )
        result = {"micro": scores(self.counts) if self.images else dict(per_image),
                  "per_image": per_image, "images": self.images, "images_ignored": self.images_ignored}
        return {**result, **self.class_view(classes, background)} if classes is not None else result

    def class_view(self, classes: list[str], background: bool = True) -> dict:
        """Of the summed matrix: ``miou`` (mean IoU over the classes the data has: background
        and 1..C, or 1..C alone for data without a background, classes absent from truth and
        prediction left out), ``class_iou`` ({name: IoU}), ``pixel_accuracy`` (global) and
        ``class_accuracy`` (the mean over the classes in the truth of each one's pixels
        predicted right: the two accuracies the MSRC literature reports)."""
        if len(classes) != self.num_classes:
            raise ValueError(f"{len(classes)} class names for a {self.num_classes}-class meter")
        first = 0 if background else 1
        iou = class_iou(self.matrix)[first:]
        truth = self.matrix.sum(1)[first:]
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(truth > 0, np.diag(self.matrix)[first:] / np.maximum(truth, 1), np.nan)
        total = self.matrix.sum()
        names = ["background", *classes][first:]
        return {"miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
                "class_iou": {name: float(value) for name, value in zip(names, iou)},
                "pixel_accuracy": float(np.trace(self.matrix) / total) if total else float("nan"),
                "class_accuracy": float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")}


def flat_metrics(result: dict, prefix: str = "") -> dict[str, float]:
    """``{"<prefix>micro_dice": ..., "<prefix>per_image_dice": ...}`` for MLflow and Tune."""
    flat = {}
    for aggregation in ("micro", "per_image"):
        for name in METRIC_NAMES:
            flat[f"{prefix}{aggregation}_{name}"] = result[aggregation][name]
    return flat
