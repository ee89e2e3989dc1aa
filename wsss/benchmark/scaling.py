"""The scaling run (``wsss benchmark --scaling 1000,4000,16000``): how cost grows with work.

The product's mask pipeline (``generate_masks``, what ``wsss pseudo`` runs: index, decode, the CAM
family, boxes, GrabCut, the mix with its SLIC superpixels, the baselines, the store) runs on
synthetic sets of each size, and the segmentation trainer (``fit_segmentation``, one epoch of a
narrow UNet) on two of them. Per row: wall seconds, milliseconds per image, the driver's peak
RSS and its own (private) memory and their growth over the run, the Ray workers' peak RSS,
object-store spill and the mask store's bytes on disk. Per-image cost and driver memory should
not grow with the image count: ``flatness`` sets the largest run against the smallest.

Synthetic sets are cached per (count, size, seed) under the cache folder and made outside the
measurement; a run's mask store and training folder are removed once measured (16k images
make ~10^5 files). One unmeasured warm-up pass of each (pipeline, training) on a tiny set
starts Ray's workers and imports first, so the smallest run does not pay for them alone.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from wsss import console
from wsss.benchmark.common import Settings
from wsss.benchmark.memory import MB, MemorySampler, folder_bytes, spilled_bytes
from wsss.benchmark.models import classifier_checkpoint
from wsss.config.loading import parse_config
from wsss.config.study import StudyConfig
from wsss.data.prepare import prepare_dataset
from wsss.data.synthetic import synthesize
from wsss.masks.pipeline import generate_masks
from wsss.masks.plan import labeler_context
from wsss.raycluster import ensure_ray
from wsss.sweep.run import run_sweep
from wsss.train.segmentation import fit_segmentation

SCALING_LABELERS = [{"name": name} for name in
                    ("cam", "gradcam", "gradcampp", "box", "grabcut", "mix", "all_foreground", "ellipse")]
SOURCE_SIZE = 128  # synthetic files are at least this big, so decoding includes a resize
WARM_UP_IMAGES = 32
TRAIN_OPTIONS = {"width": 0.125}
FLAT_COST_RATIO = 1.25  # ms/image at the largest count over the smallest: above this, it grows
FLAT_DRIVER_KB_PER_IMAGE = 3.0  # the driver's own memory per extra image: the index and the
# plans (~1.5 KB) pass; a mask or heatmap per image (4-8 KB at 64 px) held in the driver does not.
# Judged on private memory: RSS also counts object-store pages the driver put or read, which the
# object store owns and bounds (its capacity, then spill), and pages of mapped files.


def synthetic_root(cache: Path, images: int, size: int, seed: int) -> Path:
    """A synthetic Oxford-IIIT Pet root of ``images`` files, made once per (count, size, seed);
    written beside its final name and renamed, so a killed run leaves no half set to reuse."""
    root = cache / f"pets-{images}-{size}px-seed{seed}"
    if (root / "annotations" / "trainval.txt").is_file():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    synthesize(partial, images=images, size=size, seed=seed, workers=max(1, len(os.sched_getaffinity(0))))
    os.replace(partial, root)
    console.say(f"scaling: made {images} synthetic images at {size} px in "
                f"{time.perf_counter() - started:.0f} s (not measured) -> {root}")
    return root


def pipeline_config(root: Path, store: Path, settings: Settings, size: int) -> StudyConfig:
    """The pseudo study the benchmark's ``pseudo`` stage runs, with the baselines added."""
    return parse_config({
        "weights_policy": "random",
        "data": {"root": str(root), "image_size": size, "error_budget": 0.5},
        "pipeline": {"store": str(store), "cpu_tasks": settings.workers,
                     "batch_size": settings.batch_size, "heatmap_actors": 1},
        "labelers": SCALING_LABELERS,
    }, "benchmark scaling")


def measured(run: Any) -> tuple[Any, float, dict[str, Any]]:
    """(result, wall seconds, memory and spill) of ``run()``."""
    spilled_before = spilled_bytes()
    with MemorySampler() as peaks:
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
    spilled_after = spilled_bytes()
    known = spilled_before is not None and spilled_after is not None
    memory = {**peaks.as_row(), "workers_scope": peaks.workers_scope,
              "spilled_mb": (spilled_after - spilled_before) / MB if known else None,
              "spill": "measured" if known else "unknown"}
    return result, seconds, memory


def pseudo_masks(config: Any, checkpoint: str) -> Any:
    """What ``wsss pseudo`` runs, without its MLflow runs: index, plan, the pipeline, manifests."""
    return generate_masks(config, prepare_dataset(config.data), labeler_context(config, checkpoint))


def pipeline_row(images: int, root: Path, work: Path, settings: Settings, size: int,
                 checkpoint: Path) -> dict[str, Any]:
    """The mask pipeline on one set: a fresh store, every set made from scratch."""
    store = work / f"masks-{images}"
    shutil.rmtree(store, ignore_errors=True)
    config = pipeline_config(root, store, settings, size)
    outcome, seconds, memory = measured(lambda: pseudo_masks(config, str(checkpoint)))
    summary = outcome
    row = {"stage": "pseudo", "images": images, "size": size, "seconds": seconds,
           "ms_per_image": 1000 * seconds / images, "pipeline_seconds": summary.wall_seconds,
           "images_run": summary.images, "store_mb": folder_bytes(store) / MB,
           "masks_written": sum(c["written"] for c in summary.per_set.values()), **memory}
    shutil.rmtree(store, ignore_errors=True)
    return row


def train_config(root: Path, work: Path, settings: Settings, size: int) -> StudyConfig:
    """One epoch of a narrow UNet on the ground truth (what the trainer costs, not its labels)."""
    return parse_config({
        "weights_policy": "random",
        "data": {"root": str(root), "image_size": size, "error_budget": 0.5},
        "pipeline": {"store": str(work / "masks")},
        "train": {"model": "unet", "weights": "none", "model_options": TRAIN_OPTIONS, "epochs": 1,
                  "batch_size": settings.train_batch, "eval_batch_size": settings.train_batch,
                  "image_size": size, "storage": str(work), "max_failures": 0,
                  "scaling": {"num_workers": settings.workers, "use_gpu": settings.device.startswith("cuda")}},
    }, "benchmark scaling train")


def train_row(images: int, root: Path, work: Path, settings: Settings, size: int) -> dict[str, Any]:
    """``fit_segmentation`` on one set: seconds per epoch per training image, driver memory."""
    folder = work / f"train-{images}"
    shutil.rmtree(folder, ignore_errors=True)
    config = train_config(root, folder, settings, size)
    outcome, seconds, memory = measured(
        lambda: fit_segmentation(config, name=f"scaling-{images}"))
    epoch = outcome.history[0]
    epoch_seconds = outcome.timings.get("epoch_1_seconds", float("nan"))
    row = {"stage": "train", "images": images, "size": size, "seconds": seconds,
           "ms_per_image": 1000 * seconds / images, "train_images": epoch.get("train_images"),
           "epoch_seconds": epoch_seconds,
           "epoch_ms_per_train_image": 1000 * epoch_seconds / max(epoch.get("train_images") or 1, 1),
           "train_images_per_s": epoch.get("train_images_per_s"),
           "store_mb": folder_bytes(folder) / MB, **memory}
    shutil.rmtree(folder, ignore_errors=True)
    return row


def sweep_config(root: Path, work: Path, settings: Settings, size: int, images: int) -> StudyConfig:
    """A whole study at the smallest useful scale: a classifier (1 epoch), CAM and GrabCut sets,
    three one-epoch trials (ground truth, CAM, GrabCut) through Ray Tune, MLflow in SQLite."""
    return parse_config({
        "name": f"scaling-{images}", "weights_policy": "random",
        "data": {"root": str(root), "image_size": size, "error_budget": 0.5},
        "classifier": {"backbone": "resnet18", "weights": "none", "epochs": 1, "batch_size": 64,
                       "eval_batch_size": 64, "image_size": size, "scaling": {"num_workers": 1},
                       "storage": str(work / "classifier")},
        "labelers": [{"name": "cam"}, {"name": "grabcut"}],
        "pipeline": {"store": str(work / "masks"), "cpu_tasks": settings.workers,
                     "batch_size": settings.batch_size, "heatmap_actors": 1},
        "train": {"model": "unet", "weights": "none", "model_options": TRAIN_OPTIONS, "epochs": 1,
                  "batch_size": settings.train_batch, "eval_batch_size": settings.train_batch,
                  "image_size": size, "storage": str(work / "train"), "max_failures": 0,
                  "scaling": {"num_workers": 1}},
        "sweep": {"storage": str(work / "sweep"), "max_failures": 0,
                  "trials": [{"name": "gt", "labels": "gt"},
                             {"name": "cam", "labels": "cam", "threshold": 0.5},
                             {"name": "grabcut", "labels": "grabcut"}]},
        "tracking": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                     "artifact_location": str(work / "artifacts"), "experiment": f"scaling-{images}"},
    }, "benchmark scaling sweep")


def sweep_row(images: int, root: Path, work: Path, settings: Settings, size: int) -> dict[str, Any]:
    """``run_sweep`` on one set, from nothing (classifier, mask sets, trials, MLflow)."""
    folder = work / f"sweep-{images}"
    shutil.rmtree(folder, ignore_errors=True)
    config = sweep_config(root, folder, settings, size, images)
    outcome, seconds, memory = measured(lambda: run_sweep(config))
    row = {"stage": "sweep", "images": images, "size": size, "seconds": seconds,
           "ms_per_image": 1000 * seconds / images,
           "trials": sum(row["stage"] == "train" for row in outcome["rows"]),
           "failures": len(outcome["failures"]), "store_mb": folder_bytes(folder) / MB, **memory}
    shutil.rmtree(folder, ignore_errors=True)
    return row


def flatness(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage: ms/image and driver growth at the largest count against the smallest."""
    verdicts = {}
    for stage in dict.fromkeys(row["stage"] for row in rows):
        ordered = sorted((r for r in rows if r["stage"] == stage), key=lambda r: r["images"])
        if len(ordered) < 2:
            continue
        small, large = ordered[0], ordered[-1]
        cost_ratio = large["ms_per_image"] / small["ms_per_image"]
        extra = large["images"] - small["images"]
        growth_mb = large["driver_private_growth_mb"] - small["driver_private_growth_mb"]
        kb_per_image = 1024 * growth_mb / extra if extra else 0.0
        rss_mb = large["driver_growth_mb"] - small["driver_growth_mb"]
        verdicts[stage] = {
            "smallest": small["images"], "largest": large["images"],
            "ms_per_image_ratio": cost_ratio, "cost_flat": cost_ratio <= FLAT_COST_RATIO,
            "driver_growth_mb_smallest": small["driver_private_growth_mb"],
            "driver_growth_mb_largest": large["driver_private_growth_mb"],
            "driver_growth_kb_per_extra_image": kb_per_image,
            "driver_rss_growth_kb_per_extra_image": 1024 * rss_mb / extra if extra else 0.0,
            "driver_flat": kb_per_image <= FLAT_DRIVER_KB_PER_IMAGE,
            "thresholds": {"ms_per_image_ratio": FLAT_COST_RATIO,
                           "driver_kb_per_extra_image": FLAT_DRIVER_KB_PER_IMAGE}}
    return verdicts


def say_row(row: dict[str, Any]) -> None:
    """One console line per measured run."""
    spill = "unknown" if row["spilled_mb"] is None else f"{row['spilled_mb']:.0f} MB"
    console.say(f"scaling: {row['stage']:<6} {row['images']:>6} images  {row['ms_per_image']:8.2f} ms/image  "
                f"driver own {row['driver_private_peak_mb']:.0f} MB (+{row['driver_private_growth_mb']:.0f}), "
                f"RSS {row['driver_peak_mb']:.0f} MB (+{row['driver_growth_mb']:.0f})  "
                f"workers {row['workers_peak_mb']:.0f} MB  spilled {spill}  store {row['store_mb']:.1f} MB")


def run_scaling(counts: list[int], train_counts: list[int], settings: Settings, size: int,
                cache: Path, work: Path, sweep_counts: list[int] = (), warm_up: bool = True) -> dict[str, Any]:
    """Every count through the mask pipeline, ``train_counts`` through training,
    ``sweep_counts`` through a whole sweep; the payload. ``warm_up`` first runs each kind once
    on a small set, not kept, so no measured row pays for a first start."""
    ensure_ray(num_cpus=settings.workers)
    source = max(SOURCE_SIZE, size)
    roots = {n: synthetic_root(cache, n, source, settings.seed)
             for n in sorted({*counts, *train_counts, *sweep_counts})}
    checkpoint = classifier_checkpoint(cache, settings, size)
    if warm_up:
        warm = synthetic_root(cache, WARM_UP_IMAGES, source, settings.seed)
        pipeline_row(WARM_UP_IMAGES, warm, work, settings, size, checkpoint)  # starts workers; not kept
        if train_counts:
            train_row(WARM_UP_IMAGES, warm, work, settings, size)  # Ray Train's first start; not kept
        if sweep_counts:  # Tune's and MLflow's first start (their imports alone are ~200 MB); not kept
            sweep_row(WARM_UP_IMAGES, warm, work, settings, size)
    rows = []
    for images in counts:
        rows.append(pipeline_row(images, roots[images], work, settings, size, checkpoint))
        say_row(rows[-1])
    for images in train_counts:
        rows.append(train_row(images, roots[images], work, settings, size))
        say_row(rows[-1])
    for images in sweep_counts:
        rows.append(sweep_row(images, roots[images], work, settings, size))
        say_row(rows[-1])
    return {"kind": "scaling", "size": size, "source_size": source, "counts": counts, "warm_up": warm_up,
            "train_counts": train_counts, "labelers": [s["name"] for s in SCALING_LABELERS],
            "train_model": {"model": "unet", **TRAIN_OPTIONS, "epochs": 1},
            "sweep_counts": list(sweep_counts),
            "sweep": {"classifier": "resnet18, 1 epoch", "labelers": ["cam", "grabcut"],
                      "trials": ["gt", "cam", "grabcut"], "train_model": {"model": "unet", **TRAIN_OPTIONS,
                                                                          "epochs": 1}},
            "rows": rows, "flatness": flatness(rows), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
