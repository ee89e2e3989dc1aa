"""Segmentation training in the benchmark: a plain PyTorch loop, its GPU fast paths, wsss's runs.

The plain loop is the project's training step (``paired_augment``, ``masked_bce``, Adam)
without Ray: the reference. On CUDA the path is the same loop in bf16 autocast with
channels_last (what ``wsss.train.worker`` does on a GPU), and the loop fed from host
memory batch by batch against a device-resident batch gives the GPU's idle share. With Ray,
``fit_segmentation`` runs the real job, its per-epoch ``train_images_per_s`` (train time only,
epoch 1 left out as warm-up) set against the plain loop: one worker in the calling process
(``trainer: auto``, the default) and in Ray Train, each against one plain process (target
0.9x); DDP on N workers against N plain processes at once. And a small sweep per trainer
gives the seconds a trial costs beyond its epochs and test (target: 3 s).
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
from wsss.sweep.run import run_sweep
from wsss.train.common import autocast
from wsss.train.segmentation import fit_segmentation
from wsss.train.steps import masked_bce

RAY_TRAIN_EPOCHS = 3
OVERHEAD_TRIALS = 3
TRAINERS = ("auto", "ray_train")  # one worker: in the calling process, or in Ray Train


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
                channels_last: bool, resident: bool, barrier: Any = None) -> dict[str, float]:
    """Images/s of ``train_steps`` steps of the project's training step in plain PyTorch.

    ``resident``: batches sliced from tensors already on the device (pure compute); else each
    batch goes host -> device on the step, as a data loader's last mile does. ``barrier``
    (processes measured side by side) is waited on after the warm-up, so their timed steps
    overlap.
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
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    for index in range(2, settings.train_steps + 2):
        step(index)
    synchronize(settings.device)
    seconds = time.perf_counter() - started
    return {"images_per_s": rate(settings.train_steps * batch, seconds), "first_batch_seconds": first_batch}


def train_stage(work: Workload, settings: Settings) -> dict[str, Any]:
    """Plain fp32 loop (reference) against the GPU path, or against wsss's training on CPU."""
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
    one = {trainer: train_rate(work, settings, 1, trainer) for trainer in TRAINERS}
    details["one_worker"] = {trainer: {"images_per_s": rate, "over_plain": rate / reference["images_per_s"]}
                             for trainer, rate in one.items()}
    scaling = None
    if settings.workers > 1:  # DDP on N workers against N plain processes at once
        ddp = train_rate(work, settings, settings.workers, "ray_train")
        parallel = plain_parallel(images, targets, settings, settings.workers)
        details["ddp"] = {"workers": settings.workers, "images_per_s": ddp,
                          "plain_processes_images_per_s": parallel, "over_plain": ddp / parallel}
        scaling = ddp / one["ray_train"]
    details["trial_overhead_seconds"] = {trainer: trial_overhead(work, settings, trainer)
                                         for trainer in TRAINERS}
    return stage_result("train", "1 worker, in the trial's process (trainer: auto)",
                        "plain PyTorch loop, 1 process", one["auto"], reference["images_per_s"],
                        unit="per core", images=len(images), workers=1, scaling=scaling, details=details)


def _plain_process(images, targets, settings: Settings, barrier, results) -> None:
    import torch

    torch.set_num_threads(1)  # one core each, as a 1-CPU Ray worker has
    results.put(plain_train(images, targets, settings, bf16=False, channels_last=False, resident=False,
                            barrier=barrier)["images_per_s"])


def plain_parallel(images: np.ndarray, targets: np.ndarray, settings: Settings, processes: int) -> float:
    """Images/s of ``processes`` plain loops in their own processes at once (summed; their timed
    steps start together): what N cores give with no DDP, no Ray, no gradient exchange."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_plain_process, args=(images, targets, settings, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return float(sum(rates))


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


def _config(work: Workload, settings: Settings, workers: int, trainer: str, name: str) -> dict[str, Any]:
    """A study of the workload's images for training runs only (no labelers, no classifier)."""
    scratch = work.scratch / name
    return {
        "name": name, "weights_policy": "random",
        "data": {"root": str(work.root), "image_size": settings.train_size, "error_budget": 0.5},
        "pipeline": {"store": str(scratch / "stores" / "masks")},
        "train": {"model": settings.train_model, "model_options": settings.train_options,
                  "weights": "none", "epochs": RAY_TRAIN_EPOCHS,
                  "batch_size": settings.train_batch, "eval_batch_size": settings.train_batch,
                  "image_size": settings.train_size, "storage": str(scratch / "train"),
                  "scaling": {"num_workers": workers, "use_gpu": settings.device.startswith("cuda"),
                              "trainer": trainer},
                  "max_failures": 0},
        "labelers": [],
        "sweep": {"storage": str(scratch / "sweep"), "direct_eval": []},
        "tracking": {"tracking_uri": f"sqlite:///{scratch}/mlflow.db", "artifact_location": str(scratch / "artifacts"),
                     "experiment": name, "register_model": False},
    }


def train_rate(work: Workload, settings: Settings, workers: int, trainer: str) -> float:
    """Train images/s of ``fit_segmentation`` with ``workers`` workers and ``trainer``,
    averaged over epochs 2.. (epoch 1 pays worker start and first kernels)."""
    config = parse_config(_config(work, settings, workers, trainer, f"benchmark-{trainer}-{workers}"),
                          "benchmark train")
    outcome = fit_segmentation(config, name=f"benchmark-{trainer}-{workers}-workers")
    rates = [row["train_images_per_s"] for row in outcome.history if row["epoch"] > 1]
    return float(np.mean(rates))


def trial_overhead(work: Workload, settings: Settings, trainer: str) -> float:
    """Seconds each trial of a small sweep (``OVERHEAD_TRIALS`` one-epoch trials, one at a
    time) spends beyond its epochs and its test: from Tune starting it to its end, the mean
    over the trials (the sweep's own ``trials`` line)."""
    data = _config(work, settings, 1, trainer, f"benchmark-trials-{trainer}")
    data["train"]["epochs"] = 1
    data["sweep"].update(max_concurrent_trials=1, trials=[
        {"name": f"lr-{index}", "labels": "gt", "lr": 1e-3 * (index + 1)} for index in range(OVERHEAD_TRIALS)])
    result = run_sweep(parse_config(data, "benchmark trials"))
    if result["failures"]:
        raise RuntimeError(f"benchmark sweep failed: {result['failures']}")
    return float(np.mean(result["trial_overheads"]))
