"""The whole Ray pipeline in the benchmark (``pseudo``): records -> decode -> heatmaps -> CPU
labelers -> write, with 1 CPU task and with all of them, against a serial per-image loop of the
same labelers in one process (each box labeler computing its own heatmap, as the study's
scripts do). Wall time includes actor start and the classifier load; the per-stage busy
seconds per image (``PipelineSummary``) are set beside the bare library calls' measured by the
other stages of the same run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from wsss.benchmark.common import Settings, Workload, rate, stage_result, timed
from wsss.benchmark.models import classifier_context
from wsss.config import parse_config
from wsss.data.arrays import resize_image
from wsss.data.decode import decode_image
from wsss.data.records import DatasetIndex
from wsss.labelers.registry import get_labeler_class
from wsss.masks.pipeline import generate_masks
from wsss.raycluster import ensure_ray

PSEUDO_LABELERS = [{"name": "cam"}, {"name": "gradcam"}, {"name": "gradcampp"},
                   {"name": "box"}, {"name": "grabcut"}, {"name": "mix"}]


def _config(work: Workload, settings: Settings, tasks: int, store: str | None = None) -> Any:
    return parse_config({
        "weights_policy": "random",
        "data": {"root": str(work.root), "image_size": settings.size, "error_budget": 0.5},
        "pipeline": {"store": str(work.scratch / (store or f"pseudo-store-{tasks}")), "cpu_tasks": tasks,
                     "batch_size": settings.batch_size, "heatmap_actors": 1},
        "labelers": PSEUDO_LABELERS,
    }, "benchmark pseudo")


def _dataset(work: Workload) -> Any:
    return DatasetIndex(root=str(work.root), records=list(work.records))


def serial_reference(work: Workload, context: Any) -> float:
    """Seconds of the study-style loop: decode, then every labeler on a batch of one image."""
    labelers = [get_labeler_class(spec["name"])(spec.get("params", {}), context) for spec in PSEUDO_LABELERS]
    size = work.images.shape[1]

    def loop(records: list) -> None:
        for record in records:
            image = resize_image(decode_image(record.image_path), size)
            batch = {"image": image[None], "label": np.array([record.label]),
                     "image_id": np.array([record.image_id])}
            for labeler in labelers:
                labeler(batch)

    loop(work.records[:1])  # warm-up: classifier loads
    seconds = timed(lambda: loop(work.records))
    for labeler in labelers:
        labeler.close()
    return seconds


def pseudo_bench(work: Workload, settings: Settings) -> dict[str, Any]:
    """``generate_masks`` with 1 and all CPU tasks against the serial loop."""
    ensure_ray(num_cpus=settings.workers)
    context = replace(classifier_context(work, settings), device="cpu")
    count = len(work.records)
    if not settings.quick:  # start workers and actors once, outside the measured runs
        warm = _config(work, replace(settings, batch_size=2), settings.workers, "pseudo-store-warm-up")
        generate_masks(warm, replace(_dataset(work), records=work.records[:2]), context)
    runs = {}
    for tasks in sorted({1, settings.workers}):
        summary = generate_masks(_config(work, settings, tasks), _dataset(work), context)
        runs[tasks] = {"images_per_s": rate(summary.images, summary.wall_seconds),
                       "wall_seconds": summary.wall_seconds, "images": summary.images,
                       "stage_seconds_per_image": {k: v / max(summary.images, 1)
                                                   for k, v in summary.stage_seconds.items()}}
    reference = serial_reference(work, context)
    best = runs[settings.workers]
    details = {"labelers": [spec["name"] for spec in PSEUDO_LABELERS], "runs": {str(k): v for k, v in runs.items()},
               "classifier": settings.cam_backbone, "target_ratio": 0.9 * settings.workers}
    return stage_result("pseudo", "Ray pipeline (generate_masks), 6 mask sets",
                        "serial loop, one process, 6 labelers per image", best["images_per_s"],
                        rate(count, reference), unit="per core", images=count,
                        workers=settings.workers, scaling=best["images_per_s"] / runs[1]["images_per_s"],
                        details=details)
