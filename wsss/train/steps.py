"""The numeric steps of segmentation training, shared by the Ray workers and single-process code.

Inputs are N x S x S x 3 uint8 image tensors and N x S x S uint8 targets {0, 1, 255}. A pixel is
predicted foreground when its logit is > 0 (probability > 0.5). Scoring the same checkpoint on
the same arrays gives the same counts in a Train worker and in ``evaluate_checkpoint``.

With several classes (``data.task: semantic``) targets are class maps {0 background, k class,
255 ignore}, the model has C+1 output channels, the loss is cross-entropy and a pixel takes
its highest-scoring class; scores are per-class IoU and mIoU (``class_metrics.ClassMeter``)
plus the binary metrics of any class against background (a ``SegmentationMeter``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss.class_metrics import ClassMeter
from wsss.data.transforms import batch_to_input
from wsss.metrics import IGNORE, SegmentationMeter, trimap_to_target
from wsss.models.segmentation import load_segmentation
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


def masked_ce(logits, targets):
    """(sum of per-pixel cross-entropy over valid pixels, number of valid pixels) for
    N x (C+1) x H x W logits and class-map targets (255 ignored)."""
    import torch.nn.functional as F

    loss = F.cross_entropy(logits.float(), targets.long(), ignore_index=IGNORE, reduction="sum")
    return loss, (targets != IGNORE).sum()


def segmentation_loss(logits, targets, weights=None):
    """``masked_bce`` for one output channel, ``masked_ce`` for several (no pixel weights)."""
    if logits.shape[1] > 1:
        return masked_ce(logits, targets)
    return masked_bce(logits, targets, weights)


def foreground_target(targets: np.ndarray) -> np.ndarray:
    """Class maps -> {0, 1, 255}: any class against background, ignore kept."""
    return np.where(targets == IGNORE, IGNORE, targets > 0).astype(np.uint8)


def score_class_logits(logits, targets, meter: SegmentationMeter, classes: ClassMeter) -> tuple[float, int]:
    """Add predictions (each pixel's highest class) to ``classes`` and their foreground to
    ``meter``; returns (loss sum, valid pixels) against class-map targets."""
    targets = targets.to(logits.device)
    loss_sum, valid = masked_ce(logits, targets)
    predictions, truth = logits.argmax(1).cpu().numpy(), targets.cpu().numpy()
    classes.update(predictions, truth)
    meter.update_batch(predictions > 0, foreground_target(truth))
    return float(loss_sum), int(valid)


def predict_logits(model, images, device, bf16: bool = False, channels_last: bool = False):
    """Float32 N x 1 x H x W logits of ``model`` (eval mode, no grad) for uint8 images."""
    import torch

    with torch.no_grad(), autocast(device, bf16):
        return model(to_input(images, device, channels_last)).float()


def score_batch(model, images, targets, meter: SegmentationMeter, device,
                bf16: bool = False, channels_last: bool = False) -> tuple[float, int]:
    """Add a batch's predictions to ``meter``; returns (loss sum, valid pixels) on it."""
    return score_logits(predict_logits(model, images, device, bf16, channels_last), targets, meter)


def score_logits(logits, targets, meter: SegmentationMeter) -> tuple[float, int]:
    """Add predictions (logit > 0) to ``meter``; returns (loss sum, valid pixels) against targets."""
    targets = targets.to(logits.device)
    loss_sum, valid = masked_bce(logits, targets)
    meter.update_batch((logits[:, 0] > 0).cpu().numpy(), targets.cpu().numpy())
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
