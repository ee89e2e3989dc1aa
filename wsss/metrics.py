"""Binary segmentation metrics from confusion counts: Dice, IoU, accuracy, precision, recall.

Two aggregations, both always reported and named:

- ``micro``: confusion counts summed over every pixel of the dataset, then the ratios;
- ``per_image``: the ratios computed per image, then averaged over images.

Conventions (documented once, tested):

- Target value 255 is ignored: those pixels count nowhere.
- A ratio whose denominator is zero is 1.0 when the image has nothing to get wrong for that
  ratio, else 0.0. So an empty prediction on an empty target scores 1.0 everywhere; an empty
  prediction on a non-empty target has precision 1.0 (it claimed nothing false) and recall,
  Dice and IoU 0.0.
- An image whose target is entirely ignored adds nothing to ``micro`` and is left out of the
  ``per_image`` mean (counted in ``images_ignored``).
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


def confusion(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[tp, fp, fn, tn] of one image; ``prediction`` bool or {0,1}, ``target`` {0, 1, 255}."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} != target shape {target.shape}")
    valid = target != IGNORE
    pred = prediction.astype(bool) & valid
    truth = (target == 1) & valid
    tp = np.count_nonzero(pred & truth)
    fp = np.count_nonzero(pred & ~truth)
    fn = np.count_nonzero(~pred & truth & valid)
    tn = np.count_nonzero(valid) - tp - fp - fn
    return np.array([tp, fp, fn, tn], dtype=np.int64)


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
    """Accumulates micro counts and per-image score sums; merges across processes."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))
    score_sums: np.ndarray = field(default_factory=lambda: np.zeros(len(METRIC_NAMES)))
    images: int = 0
    images_ignored: int = 0

    def update(self, prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Add one image; returns its [tp, fp, fn, tn]."""
        counts = confusion(prediction, target)
        if counts.sum() == 0:
            self.images_ignored += 1
            return counts
        self.counts += counts
        per_image = scores(counts)
        self.score_sums += np.array([per_image[name] for name in METRIC_NAMES])
        self.images += 1
        return counts

    def update_batch(self, predictions: np.ndarray, targets: np.ndarray) -> None:
        for prediction, target in zip(predictions, targets):
            self.update(prediction, target)

    def merge(self, other: "SegmentationMeter") -> None:
        self.counts += other.counts
        self.score_sums += other.score_sums
        self.images += other.images
        self.images_ignored += other.images_ignored

    def as_vector(self) -> np.ndarray:
        """Everything the meter holds in one float64 vector (one all-reduce merges it)."""
        return np.concatenate(
            [self.counts.astype(np.float64), self.score_sums, [self.images, self.images_ignored]]
        )

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> "SegmentationMeter":
        vector = np.asarray(vector, dtype=np.float64)
        n = len(METRIC_NAMES)
        return cls(
            counts=np.rint(vector[:4]).astype(np.int64),
            score_sums=vector[4 : 4 + n].copy(),
            images=int(round(vector[4 + n])),
            images_ignored=int(round(vector[5 + n])),
        )

    def reduce_from_all_processes(self) -> "SegmentationMeter":
        """Sum this meter over every torch.distributed rank with one all-reduce (no-op alone)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor(self.as_vector(), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return self.from_vector(tensor.cpu().numpy())

    def result(self) -> dict:
        """``{"micro": {...}, "per_image": {...}, "images": n, "images_ignored": m}``."""
        per_image = (
            {name: float(s / self.images) for name, s in zip(METRIC_NAMES, self.score_sums)}
            if self.images
            else {name: float("nan") for name in METRIC_NAMES}
        )
        return {
            "micro": scores(self.counts) if self.images else dict(per_image),
            "per_image": per_image,
            "images": self.images,
            "images_ignored": self.images_ignored,
        }


def flat_metrics(result: dict, prefix: str = "") -> dict[str, float]:
    """``{"<prefix>micro_dice": ..., "<prefix>per_image_dice": ...}`` for MLflow and Tune."""
    flat = {}
    for aggregation in ("micro", "per_image"):
        for name in METRIC_NAMES:
            flat[f"{prefix}{aggregation}_{name}"] = result[aggregation][name]
    return flat
