"""The one image normaliser, and the train-time transforms every model shares.

Images arrive as N x H x W x 3 uint8 (numpy or a torch tensor); models take ImageNet-normalised
N x 3 x H x W float. ``batch_to_input`` is that conversion (with a random horizontal flip and
colour jitter when training), used by the classifier, the segmentation trainer, prediction, the
CAM engine and the benchmark; ``paired_augment`` flips an image and its target together.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
JITTER = 0.2  # brightness/contrast/saturation; mild, because coat colour identifies breeds


def batch_to_input(images, *, train: bool, generator=None, jitter: float = JITTER,
                   flip_probability: float = 0.5):
    """N x H x W x 3 uint8 tensor -> normalised N x 3 x H x W float; flip + jitter if ``train``."""
    import torch

    pixels = images.permute(0, 3, 1, 2).float().div_(255.0)
    if train:
        count = pixels.shape[0]
        flip = torch.rand(count, generator=generator, device=pixels.device) < flip_probability
        pixels = torch.where(flip.view(count, 1, 1, 1), pixels.flip(-1), pixels)
        pixels = colour_jitter(pixels, jitter, generator)
    mean = torch.as_tensor(IMAGENET_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def to_input_tensor(images: np.ndarray, device: str = "cpu"):
    """N x H x W x 3 uint8 numpy -> N x 3 x H x W float32, ImageNet-normalised, on ``device``."""
    import torch

    return batch_to_input(torch.as_tensor(np.ascontiguousarray(images), device=device), train=False)


def colour_jitter(pixels, strength: float, generator=None):
    """Per-image brightness, contrast and saturation factors in [1 - s, 1 + s], on the batch."""
    import torch

    if strength <= 0:
        return pixels
    factors = 1 + strength * (2 * torch.rand(3, pixels.shape[0], 1, 1, 1, generator=generator,
                                             device=pixels.device) - 1)
    luma = torch.tensor([0.299, 0.587, 0.114], device=pixels.device).view(1, 3, 1, 1)
    pixels = pixels * factors[0]
    grey_mean = (pixels * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    pixels = (pixels - grey_mean) * factors[1] + grey_mean
    grey = (pixels * luma).sum(1, keepdim=True)
    pixels = (pixels - grey) * factors[2] + grey
    return pixels.clamp_(0.0, 1.0)


def paired_augment(images, targets, generator=None, flip_probability: float = 0.5,
                   jitter: float = JITTER, extras: tuple = ()):
    """Train-time transform: one horizontal flip decision per image for image, target and any
    ``extras`` (other N x H x W maps, e.g. per-pixel loss weights) together, colour jitter on
    the image only. Returns (normalised inputs, targets, *extras)."""
    import torch

    count = images.shape[0]
    flip = torch.rand(count, generator=generator, device=images.device) < flip_probability
    images = torch.where(flip.view(count, 1, 1, 1), images.flip(2), images)
    maps = [torch.where(flip.view(count, 1, 1), m.flip(2), m) for m in (targets, *extras)]
    inputs = batch_to_input(images, train=True, generator=generator, jitter=jitter,
                            flip_probability=0.0)
    return (inputs, *maps)
