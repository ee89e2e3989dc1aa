"""What every benchmark stage shares: settings, the workload, timing, and result records.

The workload is one synthetic Oxford-IIIT Pet root, decoded once; every stage of one run
measures on the same images. Box-based stages (GrabCut, SLIC, the mix) get "oracle" heatmaps
(the ground-truth pet blurred), so their boxes, and so their cost, are those of a good CAM
rather than of a random classifier's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.arrays import decode_records
from wsss.data.pets import index
from wsss.data.synthetic import synthesize
from wsss.metrics import SegmentationMeter, trimap_to_target

ORACLE_BLUR = 1 / 32  # Gaussian sigma of the oracle heatmap, as a fraction of the image side
ORACLE_HEATMAP = "heatmap__oracle"  # its column in pipeline batches


@dataclass
class Settings:
    """Benchmark knobs (the CLI's flags); ``for_device`` fills the device-dependent ones."""

    images: int = 64
    size: int = 256
    source_size: int = 384  # synthetic files are this big, so decoding includes a resize
    quick: bool = False
    ray: bool = True
    mlflow: bool = True
    device: str = "cpu"
    workers: int = 1  # CPU workers for the scaling runs (default: the cores)
    model_images: int = 16  # images through the model stages (CAMs, SAM2, inference)
    cam_backbone: str = "resnet18"
    cam_batch: int = 16
    sam2_model: str = "tiny"
    sam2_images: int = 4
    sam2_batch: int = 4
    sam2_compile: bool = False
    sam2_image_size: int = 1024  # SAM2's own input side; quick runs shrink it
    train_model: str = "unet"
    train_options: dict = field(default_factory=lambda: {"width": 0.25})
    train_size: int = 128
    train_batch: int = 8
    train_steps: int = 4
    batch_size: int = 16  # rows per Ray Data batch in the pipeline stages (the pipeline's default)
    scaling_rows: int = 1024  # rows per Ray scaling run: the images repeated, so start-up and the
    # last, half-empty round of tasks do not dominate a steady-state rate (a real set has 7,000)
    rounds: int = 2  # CPU stages: times each Ray run and bare reference is repeated, interleaved
    seed: int = 0

    def for_device(self) -> Settings:
        """GPU defaults where a GPU runs the model stages (the study's models and sizes)."""
        if self.device.startswith("cuda") and not self.quick:
            self.model_images = max(self.model_images, 256)
            self.cam_backbone, self.cam_batch = "resnet50", 64
            self.sam2_model, self.sam2_images, self.sam2_batch = "small", 64, 16
            self.sam2_compile = True
            self.train_model, self.train_options = "deeplabv3", {}
            self.train_size, self.train_batch, self.train_steps = 256, 64, 10
        return self


@dataclass
class Workload:
    """The images every stage measures on, decoded once."""

    root: Path
    records: list
    images: np.ndarray  # N x S x S x 3 uint8
    trimaps: np.ndarray  # N x S x S uint8
    labels: np.ndarray
    image_ids: list[str]
    heatmaps: np.ndarray  # N x S x S float32 oracle heatmaps
    scratch: Path
    decode_seconds: float

    def rows(self, count: int | None = None) -> dict[str, np.ndarray]:
        """The first ``count`` images as a pipeline batch in its one form (one entry each:
        ``labels``, ``classes``, a map per entry), with each image's ``label`` for the engines."""
        count = len(self.image_ids) if count is None else min(count, len(self.image_ids))
        labels = np.asarray(self.labels[:count], np.int64)
        return {"image": self.images[:count], "label": labels, "labels": labels[:, None],
                "classes": np.zeros((count, 1), np.int64),
                "image_id": np.asarray(self.image_ids[:count], dtype=object),
                "error": np.asarray([""] * count, dtype=object),
                ORACLE_HEATMAP: self.heatmaps[:count, None]}


def oracle_heatmaps(trimaps: np.ndarray) -> np.ndarray:
    """Ground-truth pet (trimap 1, border 0.5) blurred and scaled to [0, 1] per image."""
    import cv2

    sigma = max(1.0, trimaps.shape[1] * ORACLE_BLUR)
    pet = np.where(trimaps == 1, 1.0, np.where(trimaps == 3, 0.5, 0.0)).astype(np.float32)
    maps = np.stack([cv2.GaussianBlur(p, (0, 0), sigma) for p in pet]) if len(pet) else pet
    return maps / (maps.max(axis=(1, 2), keepdims=True) + 1e-7)


def prepare_workload(settings: Settings, scratch: Path, root: str | None = None) -> Workload:
    """Synthesize (unless ``root`` is given), index and decode the benchmark's images once."""
    if root is None:
        root = scratch / "pets"
        synthesize(root, images=settings.images, size=settings.source_size, seed=settings.seed,
                   workers=min(4, os.cpu_count() or 1))
    records = index(root, limit=settings.images).split("trainval", "test")[: settings.images]
    started = time.perf_counter()
    arrays = decode_records(records, settings.size)
    seconds = time.perf_counter() - started
    kept = {image_id for image_id in arrays.image_ids}
    return Workload(Path(root), [r for r in records if r.image_id in kept], arrays.images,
                    arrays.trimaps, arrays.labels, arrays.image_ids,
                    oracle_heatmaps(arrays.trimaps), scratch, seconds)


def synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(run: Callable[[], Any], device: str = "cpu") -> float:
    """Wall seconds of ``run()``, the device drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def chunks(count: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def dice(masks: np.ndarray, trimaps: np.ndarray) -> float:
    """Micro Dice of {0, 1, 255} masks against trimaps (border ignored, 255 as background)."""
    meter = SegmentationMeter()
    for mask, trimap in zip(masks, trimaps):
        meter.update(mask == 1, trimap_to_target(trimap))
    return float(meter.result()["micro"]["dice"])


def stage_result(stage: str, path: str, reference: str, path_ips: float, reference_ips: float,
                 *, unit: str, images: int, workers: int = 1, scaling: float | None = None,
                 floor_ips: float | None = None, details: dict | None = None) -> dict[str, Any]:
    """One row of the report: the project's path against the plain reference."""
    return {"stage": stage, "path": path, "reference": reference, "unit": unit, "images": images,
            "path_images_per_s": path_ips, "reference_images_per_s": reference_ips,
            "ratio": path_ips / reference_ips if reference_ips else float("nan"),
            "path_images_per_s_per_worker": path_ips / max(workers, 1),
            "workers": workers, "scaling": scaling, "floor_images_per_s": floor_ips,
            "details": details or {}}


def fast_path(name: str, predicted: float, measured: float, why: str, *,
              kept: bool = True, **numbers: Any) -> dict[str, Any]:
    """A fast path's predicted and measured gain (x times its reference)."""
    return {"fast_path": name, "predicted_gain": predicted, "measured_gain": measured,
            "prediction": why, "kept": kept, **numbers}
