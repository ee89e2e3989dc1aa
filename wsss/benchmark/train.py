"""Segmentation training in the benchmark: a plain PyTorch loop, its GPU fast paths, Ray Train.

The plain loop is the project's training step (``paired_augment``, ``masked_bce``, Adam)
without Ray: the reference. On CUDA the path is the same loop in bf16 autocast with
channels_last (what ``wsss.train.worker`` does on a GPU), and the loop fed from host
memory batch by batch against a device-resident batch gives the GPU's idle share. With Ray,
``fit_segmentation`` runs the real Ray Train job with 1 and with all workers; its per-epoch
``train_images_per_s`` (train time only, epoch 1 left out as warm-up) is set against the
plain loop: Ray's own bar is Ray Train at most 1.15x plain PyTorch's time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from wsss.benchmark.common import Settings, Workload, fast_path, rate, stage_result, synchronize
from wsss.config.loading import parse_config
from wsss.data.arrays import resize_image, resize_mask
from wsss.data.transforms import paired_augment
from wsss.metrics import trimap_to_target
from wsss.models.segmentation import ModelSpec
from wsss.train.common import autocast
from wsss.train.segmentation import fit_segmentation
from wsss.train.steps import masked_bce

RAY_TRAIN_EPOCHS = 3


def _model(settings: Settings) -> ModelSpec:
    """The network every training measurement runs."""
    return ModelSpec(settings.train_model, settings.train_options)


def train_arrays(work: Workload, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Images and ground-truth targets {0, 1, 255} at the training size."""
    size = settings.train_size
    images = np.stack([resize_image(image, size) for image in work.images])
    targets = np.stack([trimap_to_target(resize_mask(t, size)) for t in work.trimaps])
    return images, targets


def plain_train(images: np.ndarray, targets: np.ndarray, settings: Settings, *, bf16: bool,
                channels_last: bool, resident: bool) -> dict[str, float]:
    """Images/s of ``train_steps`` steps of the project's training step in plain PyTorch.

    ``resident``: batches sliced from tensors already on the device (pure compute); else each
    batch goes host -> device on the step, as a data loader's last mile does.
    """
    import torch

    device, batch = torch.device(settings.device), settings.train_batch
    torch.manual_seed(settings.seed)
    model = _model(settings).create("none").to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    host = (torch.as_tensor(images), torch.as_tensor(targets))
    source = tuple(t.to(device) for t in host) if resident else host
    order = np.arange(settings.train_steps * batch + 2 * batch) % len(images)

    def step(index: int) -> None:
        rows = torch.as_tensor(order[index * batch:(index + 1) * batch], device=source[0].device)
        pixels, target = (t[rows].to(device) for t in source)
        inputs, target = paired_augment(pixels, target, generator)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            logits = model(inputs)
        loss_sum, valid = masked_bce(logits, target)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / valid.clamp(min=1)).backward()
        optimizer.step()

    started = time.perf_counter()
    first = (t[: batch].to(device) for t in source)
    list(first)
    synchronize(settings.device)
    first_batch = time.perf_counter() - started
    step(0), step(1)  # warm-up: cuDNN algorithm choice, allocator
    synchronize(settings.device)
    started = time.perf_counter()
    for index in range(2, settings.train_steps + 2):
        step(index)
    synchronize(settings.device)
    seconds = time.perf_counter() - started
    return {"images_per_s": rate(settings.train_steps * batch, seconds), "first_batch_seconds": first_batch}


def train_stage(work: Workload, settings: Settings) -> dict[str, Any]:
    """Plain fp32 loop (reference) against the GPU path, or against Ray Train on CPU."""
    images, targets = train_arrays(work, settings)
    cuda = settings.device.startswith("cuda")
    reference = plain_train(images, targets, settings, bf16=False, channels_last=False, resident=cuda)
    details = {**_model(settings).as_dict(), "image_size": settings.train_size, "batch": settings.train_batch,
               "steps": settings.train_steps, "plain_fp32": reference}
    if cuda:
        return _gpu_train(images, targets, settings, reference, details)
    if not settings.ray:
        return stage_result("train", "plain PyTorch loop (no Ray)", "plain PyTorch loop",
                            reference["images_per_s"], reference["images_per_s"],
                            unit="per core", images=len(images), details=details)
    rates = {workers: ray_train_rate(work, settings, workers) for workers in (1, settings.workers)}
    details["ray_train"] = {str(k): v for k, v in rates.items()}
    return stage_result("train", "Ray Train (TorchTrainer, DDP)", "plain PyTorch loop, 1 process",
                        rates[settings.workers], reference["images_per_s"], unit="per core",
                        images=len(images), workers=settings.workers,
                        scaling=rates[settings.workers] / rates[1], details=details)


def _gpu_train(images, targets, settings: Settings, reference: dict, details: dict) -> dict[str, Any]:
    bf16 = plain_train(images, targets, settings, bf16=True, channels_last=False, resident=True)
    path = plain_train(images, targets, settings, bf16=True, channels_last=True, resident=True)
    fed = plain_train(images, targets, settings, bf16=True, channels_last=True, resident=False)
    idle = 1 - fed["images_per_s"] / path["images_per_s"]
    details.update({"bf16": bf16, "bf16_channels_last": path, "bf16_channels_last_host_fed": fed,
                    "gpu_idle_share_host_fed": idle})
    result = stage_result("train", f"bf16 + channels_last, batch {settings.train_batch}",
                          "fp32 NCHW, same loop", path["images_per_s"], reference["images_per_s"],
                          unit="per GPU", images=len(images), details=details)
    result["fast_paths"] = [
        fast_path("training bf16 autocast vs fp32 (TF32 convolutions)", 1.8,
                  bf16["images_per_s"] / reference["images_per_s"],
                  "ResNet-50 convolutions on bf16 tensor cores: ~2x TF32's rate, less memory traffic"),
        fast_path("training channels_last vs NCHW (both bf16)", 1.2,
                  path["images_per_s"] / bf16["images_per_s"],
                  "cuDNN's NHWC kernels skip the layout transposes around each convolution"),
        fast_path("host-fed batches vs device-resident (GPU idle share)", 1.0,
                  fed["images_per_s"] / path["images_per_s"],
                  "a 64 x 256 x 256 x 3 uint8 batch is 12.6 MB: ~1 ms over PCIe against a "
                  "step of tens of ms", gpu_idle_share=idle)]
    return result


def ray_train_rate(work: Workload, settings: Settings, workers: int) -> float:
    """Train images/s of the Ray Train job (``fit_segmentation``) with ``workers`` workers,
    averaged over epochs 2.. (epoch 1 pays worker start and first kernels)."""
    config = parse_config({
        "weights_policy": "random",
        "data": {"root": str(work.root), "image_size": settings.train_size, "error_budget": 0.5},
        "pipeline": {"store": str(work.scratch / "stores" / "masks")},
        "train": {"model": settings.train_model, "model_options": settings.train_options,
                  "weights": "none", "epochs": RAY_TRAIN_EPOCHS,
                  "batch_size": settings.train_batch, "eval_batch_size": settings.train_batch,
                  "image_size": settings.train_size, "storage": str(work.scratch / "ray-train"),
                  "scaling": {"num_workers": workers, "use_gpu": settings.device.startswith("cuda")},
                  "max_failures": 0},
    }, "benchmark train")
    outcome = fit_segmentation(config, name=f"benchmark-{workers}-workers")
    rates = [row["train_images_per_s"] for row in outcome.history if row["epoch"] > 1]
    return float(np.mean(rates))
