"""The classifier for several classes per image: a sigmoid per class.

The same Ray Train loop as the one-class classifier (``wsss.train.classifier``) with binary
cross-entropy against each image's class set, and per-class metrics merged across ranks with
the loop's one all-reduce: mAP from binned score histograms (``score_histograms``), macro F1 at
0.5, and exact-match accuracy (every class right). The best checkpoint is the one with the
highest validation mAP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss.data.transforms import batch_to_input
from wsss.train.common import autocast, eval_batches

SELECTION_METRIC = "val_map"
THRESHOLD = 0.5  # a class is claimed where its sigmoid passes this

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


def multilabel_loss(logits, targets):
    """Mean binary cross-entropy over images and classes."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def exact_matches(logits, targets) -> int:
    """Images whose claimed class set is exactly their label set."""
    return int(((logits.sigmoid() > THRESHOLD) == (targets > 0.5)).all(dim=1).sum().item())


def eval_sums(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """One batch's sums as a flat vector: score histograms, then C x [tp, fp, fn]."""
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    claimed, carried = probabilities > THRESHOLD, targets > 0.5
    counts = np.stack([(claimed & carried).sum(0), (claimed & ~carried).sum(0),
                       (~claimed & carried).sum(0)], axis=1)
    return np.concatenate([score_histograms(probabilities, targets).ravel(), counts.ravel()]).astype(np.float64)


def scores_from_sums(sums: np.ndarray, num_classes: int) -> dict[str, float]:
    """mAP and macro F1 from ``eval_sums`` added over batches and ranks."""
    split = 2 * num_classes * SCORE_BINS
    ap = average_precision(np.asarray(sums[:split]).reshape(2, num_classes, SCORE_BINS))
    f1 = multilabel_f1(np.asarray(sums[split:]).reshape(num_classes, 3))
    return {"map": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"),
            "f1": float(f1.mean())}


def evaluate(model, dataset_name: str, batch_size: int, device, num_classes: int) -> list[float]:
    """This rank's [loss sum, exact matches, images, *eval_sums] on an unsharded dataset."""
    import torch

    model.eval()
    totals = [0.0, 0.0, 0.0]
    sums = np.zeros(2 * num_classes * SCORE_BINS + 3 * num_classes)
    with torch.no_grad():
        for batch in eval_batches(dataset_name, batch_size, device):
            targets = batch["targets"]
            with autocast(device):
                logits = model(batch_to_input(batch["image"], train=False)).float()
            totals[0] += multilabel_loss(logits, targets).item() * len(targets)
            totals[1] += exact_matches(logits, targets)
            totals[2] += len(targets)
            sums += eval_sums(logits.cpu().numpy(), targets.cpu().numpy())
    return totals + sums.tolist()


def history_row(epoch: int, train: list[float], val: list[float], num_classes: int) -> dict[str, Any]:
    """One epoch's metrics from the reduced train [loss, matches, images] and val sums."""
    loss, matches, seen = train
    val_loss, val_matches, val_seen, *rest = val
    scores = scores_from_sums(np.asarray(rest), num_classes)
    return {"epoch": epoch, "train_loss": loss / max(seen, 1), "train_accuracy": matches / max(seen, 1),
            "val_loss": val_loss / max(val_seen, 1), "val_accuracy": val_matches / max(val_seen, 1),
            "val_map": scores["map"], "val_f1": scores["f1"]}


def test_scores(model, images: np.ndarray, targets: np.ndarray, batch_size: int,
                device: str = "cpu") -> dict[str, float]:
    """{"map", "f1", "accuracy"} of ``model`` on N x S x S x 3 uint8 images and N x C targets."""
    import torch

    model.to(device).eval()
    sums = np.zeros(2 * targets.shape[1] * SCORE_BINS + 3 * targets.shape[1])
    matches = 0
    with torch.no_grad(), autocast(torch.device(device)):
        for start in range(0, len(targets), batch_size):
            batch = torch.tensor(images[start:start + batch_size], device=device)
            logits = model(batch_to_input(batch, train=False)).float().cpu()
            wanted = torch.tensor(targets[start:start + batch_size])
            matches += exact_matches(logits, wanted)
            sums += eval_sums(logits.numpy(), wanted.numpy())
    return {**scores_from_sums(sums, targets.shape[1]), "accuracy": matches / max(len(targets), 1)}
