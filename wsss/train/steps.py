"""The numeric steps of segmentation training, shared by the Ray workers and single-process code.

Inputs are N x S x S x 3 uint8 image tensors and N x S x S uint8 class-map targets (0
background, k the k-th class, 255 ignore; the binary study is one class). A model of one class
has one output channel (binary cross-entropy; a pixel is the class where its logit is > 0); a
model of C > 1 classes has C+1 channels (cross-entropy; a pixel takes its highest-scoring
class). One meter (``wsss.metrics.SegmentationMeter``) scores both. Scoring the same checkpoint
on the same arrays gives the same counts in a Train worker and in ``evaluate_checkpoint``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss.data.transforms import batch_to_input
from wsss.metrics import IGNORE, SegmentationMeter, trimap_to_target
from wsss.models.checkpoints import load_segmentation
from wsss.train.common import autocast


def to_input(images, device=None, channels_last: bool = False):
    """uint8 N x H x W x 3 tensor -> ImageNet-normalised float N x 3 x H x W."""
    inputs = batch_to_input(images if device is None else images.to(device), train=False)
    if channels_last:
        import torch

        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def masked_bce(logits, targets, weights=None):
    """(sum of per-pixel BCE-with-logits over valid pixels, number of valid pixels).

    Pixels with target 255 count nowhere; the caller divides (the mean over valid pixels).
    ``weights`` (N x H x W uint8, 255 = full weight) scale each pixel's loss, e.g. by how many
    generators agree with its label (``train.agreement``).
    """
    import torch.nn.functional as F

    logits = logits[:, 0].float()
    valid = targets != IGNORE
    losses = F.binary_cross_entropy_with_logits(logits, (targets == 1).float(), reduction="none")
    if weights is not None:
        losses = losses * (weights.float() / 255.0)
    return (losses * valid).sum(), valid.sum()


def masked_ce(logits, targets, weights=None):
    """(sum of per-pixel cross-entropy over valid pixels, number of valid pixels) for
    N x (C+1) x H x W logits and class-map targets (255 ignored); ``weights`` as in
    ``masked_bce``."""
    import torch.nn.functional as F

    losses = F.cross_entropy(logits.float(), targets.long(), ignore_index=IGNORE, reduction="none")
    if weights is not None:
        losses = losses * (weights.float() / 255.0)
    return losses.sum(), (targets != IGNORE).sum()


def segmentation_loss(logits, targets, weights=None):
    """``masked_bce`` for one output channel, ``masked_ce`` for several."""
    if logits.shape[1] > 1:
        return masked_ce(logits, targets, weights)
    return masked_bce(logits, targets, weights)


def predicted_classes(logits, background: bool = True):
    """N x H x W class maps of a batch's logits: logit > 0 for one channel, else the argmax
    (over the classes alone for data without a background)."""
    import torch

    if logits.shape[1] > 1:
        return logits.argmax(1) if background else logits[:, 1:].argmax(1) + 1
    return (logits[:, 0] > 0).to(torch.uint8)


def class_probabilities(logits, allowed: np.ndarray | None = None) -> np.ndarray:
    """float32 N x C x H x W probabilities of a batch's logits: the sigmoid of one output
    channel (the class's probability), else the softmax over the channels each image may take
    (``allowed``, N x C bool: its own classes and the background; every channel where None),
    0 on the others. Several models' probabilities average into one map of the same form."""
    import torch

    if logits.shape[1] == 1:
        return torch.sigmoid(logits.float()).numpy()
    if allowed is not None:
        keep = torch.as_tensor(np.asarray(allowed, bool))[:, :, None, None]
        logits = logits.masked_fill(~keep, float("-inf"))
    return torch.softmax(logits.float(), dim=1).numpy()


def banded_class_map(probabilities: np.ndarray, band: tuple[float, float], background: bool = True) -> np.ndarray:
    """N x H x W uint8 class maps of the confident pixels of ``class_probabilities``, 255
    elsewhere: a pixel takes its best class k >= 1 where that class's probability is at least
    ``band[1]``, background where the background's probability passes 1 - ``band[0]`` (never,
    for data without a background). With one output channel (probability p of the class) that
    is: class where p >= hi, background where p < lo."""
    lo, hi = band
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 1:
        probability = probabilities[:, 0]
        sure_class, sure_background, best = probability >= hi, probability < lo, np.ones(probability.shape, np.uint8)
    else:
        best = probabilities[:, 1:].argmax(1).astype(np.uint8) + 1
        sure_class = np.take_along_axis(probabilities, best[:, None].astype(np.int64), 1)[:, 0] >= hi
        sure_background = probabilities[:, 0] > 1 - lo if background else np.zeros(best.shape, bool)
    labels = np.full(best.shape, IGNORE, np.uint8)
    labels[sure_class] = best[sure_class]
    labels[sure_background & ~sure_class] = 0
    return labels


def predict_logits(model, images, device, bf16: bool = False, channels_last: bool = False):
    """Float32 N x 1 x H x W logits of ``model`` (eval mode, no grad) for uint8 images."""
    import torch

    with torch.no_grad(), autocast(device, bf16):
        return model(to_input(images, device, channels_last)).float()


def score_batch(model, images, targets, meter: SegmentationMeter, device,
                bf16: bool = False, channels_last: bool = False) -> tuple[float, int]:
    """Add a batch's predictions to ``meter``; returns (loss sum, valid pixels) on it."""
    return score_logits(predict_logits(model, images, device, bf16, channels_last), targets, meter)


def score_logits(logits, targets, meter: SegmentationMeter, background: bool = True) -> tuple[float, int]:
    """Add a batch's predicted class maps to ``meter``; returns (loss sum, valid pixels)
    against ``targets``."""
    targets = targets.to(logits.device)
    loss_sum, valid = segmentation_loss(logits, targets)
    meter.update_batch(predicted_classes(logits, background).cpu().numpy(), targets.cpu().numpy())
    return float(loss_sum), int(valid)


def ground_truth_targets(trimaps: np.ndarray, border_policy: str) -> np.ndarray:
    """N x S x S trimaps -> N x S x S targets {0, 1, 255} under the border policy."""
    return np.stack([trimap_to_target(t, border_policy) for t in trimaps]) if len(trimaps) else (
        np.zeros(trimaps.shape, np.uint8))


def evaluate_arrays(model, images: np.ndarray, targets: np.ndarray, batch_size: int = 32,
                    device: str = "cpu", bf16: bool = False) -> dict[str, Any]:
    """Single-process metrics (``SegmentationMeter.result()`` plus ``loss``) of ``model``."""
    import torch

    device = torch.device(device)
    model.to(device).eval()
    meter, loss_sum, valid = SegmentationMeter(), 0.0, 0
    for start in range(0, len(images), batch_size):
        batch_loss, batch_valid = score_batch(
            model, torch.as_tensor(images[start:start + batch_size]),
            torch.as_tensor(targets[start:start + batch_size]), meter, device, bf16)
        loss_sum, valid = loss_sum + batch_loss, valid + batch_valid
    return {**meter.result(), "loss": loss_sum / max(valid, 1)}


def evaluate_checkpoint(checkpoint: Any, arrays: Any, border_policy: str = "ignore",
                        batch_size: int = 32, device: str = "cpu", bf16: bool = False) -> dict:
    """Metrics of a ``wsss train`` checkpoint (path, or Train Checkpoint) on decoded arrays
    (``wsss.data.arrays.SplitArrays`` at the checkpoint's image size), scored against the
    ground-truth trimaps under ``border_policy``; the border policy is recorded."""
    if hasattr(checkpoint, "as_directory"):  # a ray.train.Checkpoint, possibly remote
        with checkpoint.as_directory() as directory:
            model, payload = load_segmentation(directory, device)
    else:
        model, payload = load_segmentation(checkpoint, device)
    if arrays.images.shape[1] != payload["image_size"]:
        raise ValueError(f"arrays are {arrays.images.shape[1]} px but the checkpoint was trained "
                         f"at {payload['image_size']} px; decode at that size")
    targets = ground_truth_targets(arrays.trimaps, border_policy)
    result = evaluate_arrays(model, arrays.images, targets, batch_size, device, bf16)
    return {**result, "border_policy": border_policy}
