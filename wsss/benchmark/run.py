"""``wsss benchmark [stage ...]``: every stage's throughput, the project's path against
a plain reference, on the same images in one run; JSON, an MLflow run, a markdown table.

Stages: decode, cam, gradcam, gradcampp, grabcut, slic, mix, sam2, train, infer, pseudo (the
whole Ray pipeline), import (reviewed Label Studio tasks into a mask set). CPU stages report
images/s with all workers (and per core), the serial reference, the scaling from 1 to all
workers through Ray Data, and the floor (the bare library call x cores); model stages report
images/s per GPU (or per core: one thread on CPU). Each fast path records its predicted and
its measured gain. ``--no-ray`` measures in-process only (no scaling, no pipeline, no Ray
Train); ``--quick`` is a tiny run for tests. A stage that fails is recorded
with its error and the others still run (exit code 1).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wsss import console
from wsss.benchmark import cpu as cpu_bench
from wsss.benchmark import models as model_bench
from wsss.benchmark import pipeline as pipeline_bench
from wsss.benchmark import reviewed_import as review_bench
from wsss.benchmark import train as train_bench
from wsss.benchmark.common import Settings, prepare_workload
from wsss.benchmark.models import cam_fast_paths
from wsss.benchmark.report import machine_info
from wsss.labelers.registry import reference_cam_methods

CAM_STAGES = reference_cam_methods()
STAGES = ("decode", *CAM_STAGES, "grabcut", "slic", "mix", "sam2", "train", "infer", "pseudo", "import")
RAY_ONLY = ("pseudo",)


def selected_stages(names: list[str], ray: bool) -> list[str]:
    """The named stages in canonical order (all runnable ones by default); unknown names raise."""
    unknown = sorted(set(names) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    if not ray and set(names) & set(RAY_ONLY):
        raise ValueError(f"stage(s) {', '.join(set(names) & set(RAY_ONLY))} need Ray; drop --no-ray")
    wanted = set(names) or {s for s in STAGES if ray or s not in RAY_ONLY}
    return [stage for stage in STAGES if stage in wanted]


def run_stage(stage: str, work: Any, settings: Settings) -> dict[str, Any]:
    """One stage's result (or its error: the other stages still run)."""
    runners = {"decode": cpu_bench.decode_stage_bench, "grabcut": cpu_bench.grabcut_bench,
               "slic": cpu_bench.slic_bench, "mix": cpu_bench.mix_bench,
               "sam2": model_bench.sam2_stage, "train": train_bench.train_stage,
               "infer": model_bench.infer_stage, "pseudo": pipeline_bench.pseudo_bench,
               "import": review_bench.import_bench}
    started = time.perf_counter()
    console.say(f"  benchmark {stage} …")
    try:
        if stage in CAM_STAGES:
            result = model_bench.cam_stage(stage, work, settings)
        else:
            result = runners[stage](work, settings)
    except Exception as error:  # noqa: BLE001 - recorded; the other stages still run
        traceback.print_exc()
        result = {"stage": stage, "error": f"{type(error).__name__}: {error}"}
    result["seconds"] = time.perf_counter() - started
    outcome = (f"✗ benchmark {stage}: {result['error']}" if "error" in result else
               f"✓ benchmark {stage}: {result['path_images_per_s']:.1f} images/s, "
               f"{result['ratio']:.2f}x the reference")
    console.say(f"{outcome} ({result['seconds']:.0f} s)")
    return result


@contextmanager
def single_thread(enabled: bool) -> Iterator[None]:
    """One thread per process for torch and OpenCV while measuring on CPU: rates are per core,
    as in Ray's workers (Ray sets OMP_NUM_THREADS=1 for a 1-CPU task); on a shared 2-core
    machine two intra-op threads made the CAM stages 10-20x slower than one."""
    import cv2
    import torch

    saved = torch.get_num_threads(), cv2.getNumThreads()
    if enabled:
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])


def run_benchmark(stages: list[str], settings: Settings, scratch: Path, root: str | None = None) -> dict:
    """Every selected stage on one workload; the payload written as JSON and logged."""
    with single_thread(not settings.device.startswith("cuda")):
        work = prepare_workload(settings, scratch, root)
        results = {stage: run_stage(stage, work, settings) for stage in stages}
        fast = [path for result in results.values() for path in result.pop("fast_paths", [])]
        if all(s in results and "error" not in results[s] for s in CAM_STAGES):
            try:
                fast += cam_fast_paths(work, settings, results)
            except Exception as error:  # noqa: BLE001 - a report without it beats no report
                traceback.print_exc()
                fast.append({"fast_path": "three CAM kinds in one pass", "error": str(error)})
    return {"machine": machine_info(settings), "settings": asdict(settings),
            "images": len(work.image_ids), "stages": list(results.values()), "fast_paths": fast,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
