"""CPU stages of the benchmark: decode, GrabCut, SLIC, the mix, and the whole Ray pipeline.

Per stage, on the same images: the reference is a serial per-image loop as the study's
scripts run it (PIL decode + resize; GrabCut and SLIC on the whole image); the path is the
pipeline's own stage function under Ray Data with ``TaskPoolStrategy(size=1)`` and
``size=cores``; the floor is the bare library call (``cv2.grabCut``, ``slic``) on the
path's inputs, serially, times the cores. Ratios are reported, never asserted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from wsss.benchmark.common import (
    ORACLE_HEATMAP,
    Settings,
    Workload,
    dice,
    fast_path,
    rate,
    stage_result,
    timed,
)
from wsss.benchmark.memory import CpuAccount
from wsss.data.arrays import load_arrays, resize_image
from wsss.data.decode import decode_image
from wsss.labelers.base import LabelerContext
from wsss.labelers.geometry import boxes_from_heatmaps, crop_around, has_box
from wsss.labelers.grabcut import GrabCutParams, frame_mask, grabcut_masks
from wsss.labelers.mix import MixParams, superpixel_vote, superpixels
from wsss.labelers.registry import get_labeler_class, validate_params
from wsss.masks.graph import cpu_batch_size
from wsss.masks.specs import StageSpec
from wsss.masks.stages import cpu_stage, decode_stage
from wsss.raycluster import ensure_ray
from wsss.train.common import arrays_dataset

UNIT = "per core"


def _measured(batch: dict[str, np.ndarray], stage: Callable, kwargs: dict) -> dict[str, np.ndarray]:
    """Run a pipeline stage on a batch; keep only ids and busy seconds (no masks to ship)."""
    started = time.perf_counter()
    stage(batch, **kwargs)
    count = len(batch["image_id"])
    return {"image_id": batch["image_id"], "seconds": np.full(count, (time.perf_counter() - started) / count)}


def ray_rate(stage: Callable, kwargs: dict, columns: dict[str, np.ndarray], workers: int,
             batch_size: int, task_rows: int | None = None) -> dict[str, float]:
    """Images/s of ``stage`` through Ray Data on ``workers`` CPU tasks (after a warm-up run):
    blocks of ``batch_size`` rows, ``task_rows`` rows per task (default one block)."""
    import ray.data

    def run(part: dict[str, np.ndarray], rows: int, per_task: int) -> tuple[float, list, dict[str, float]]:
        dataset = arrays_dataset(part, rows_per_block=rows).map_batches(
            _measured, fn_kwargs={"stage": stage, "kwargs": kwargs}, batch_size=per_task,
            compute=ray.data.TaskPoolStrategy(size=workers), num_cpus=1, batch_format="numpy")
        started = time.perf_counter()
        with CpuAccount() as account:
            rows = dataset.take_all()
        return time.perf_counter() - started, rows, account.spent

    # Warm every worker process (imports, first-call setup) with many one-image tasks: a
    # pool warmed by fewer tasks than workers leaves a process that pays its imports inside
    # the measured run, which a 7,000-image job pays once but a 64-image run cannot hide.
    warm = min(len(columns["image_id"]), workers * 4)
    run({key: values[:warm] for key, values in columns.items()}, 1, 1)
    wall, rows, cpu = run(columns, batch_size, task_rows or batch_size)
    busy = float(sum(row["seconds"] for row in rows))
    # where the cores went: the stage's own busy time, the workers' CPU (busy + Ray's per-task
    # work in them), the driver (Ray Data's executor) and Ray's system processes; the rest idle
    return {"images_per_s": rate(len(rows), wall), "wall_seconds": wall, "busy_seconds": busy,
            "images": len(rows), "cpu_seconds": cpu,
            "idle_core_seconds": round(max(0.0, wall * (os.cpu_count() or workers) - sum(cpu.values())), 3)}


def scaled(stage: Callable, kwargs: dict, columns: dict, settings: Settings, bundled: bool = False,
           references: dict[str, Callable[[], float]] | None = None) -> tuple[dict[int, dict], dict[str, float]]:
    """``ray_rate`` with one worker and with all of them, on ``settings.scaling_rows`` rows
    (the images repeated as needed: steady state, not start-up, is what a full dataset sees),
    and each of ``references`` (a callable returning seconds): (runs, mean seconds per reference).

    Everything is measured ``settings.rounds`` times, interleaved (each reference, then each
    worker count on all the rows), and summed, so a slow spell of a shared machine falls on
    every measurement alike instead of on whichever ran through it; each run keeps its rounds'
    rates. ``bundled``: rows per task as the pipeline gives its CPU stages (``cpu_batch_size``)."""
    ensure_ray(num_cpus=settings.workers)
    count = len(columns["image_id"])
    rows = max(count, settings.scaling_rows)
    columns = {key: np.asarray(values)[np.arange(rows) % count] for key, values in columns.items()}
    per_task = cpu_batch_size(rows, settings.batch_size, settings.workers) if bundled else None
    references = references or {}
    spent = {name: [] for name in references}
    rounds: dict[int, list[dict]] = {workers: [] for workers in sorted({1, settings.workers})}
    for _ in range(max(1, settings.rounds)):
        for name, measure in references.items():
            spent[name].append(measure())
        for workers, runs in rounds.items():
            runs.append(ray_rate(stage, kwargs, columns, workers, settings.batch_size, per_task))
    return ({workers: {**_summed(runs), "rows_per_task": per_task or settings.batch_size}
             for workers, runs in rounds.items()},
            {name: float(np.mean(seconds)) for name, seconds in spent.items()})


def _summed(runs: list[dict]) -> dict[str, Any]:
    """One run's totals over its rounds (rates from the sums), with each round's rate."""
    wall = sum(run["wall_seconds"] for run in runs)
    images = sum(run["images"] for run in runs)
    return {"images_per_s": rate(images, wall), "wall_seconds": wall,
            "busy_seconds": sum(run["busy_seconds"] for run in runs), "images": images,
            "cpu_seconds": {key: round(sum(run["cpu_seconds"][key] for run in runs), 3)
                            for key in runs[0]["cpu_seconds"]},
            "idle_core_seconds": round(sum(run["idle_core_seconds"] for run in runs), 3),
            "rounds_images_per_s": [run["images_per_s"] for run in runs]}


def cpu_spec(name: str, params: dict | None = None) -> StageSpec:
    """A ``cpu_stage`` spec for one labeler reading the oracle heatmap."""
    return StageSpec(id=name, name=name, params=validate_params(name, params or {}), fingerprint="benchmark",
                     uri="", kind="masks", heatmap_column=ORACLE_HEATMAP)


def _pipeline_result(stage: str, path: str, reference: str, reference_seconds: float,
                     bare: dict[str, float], runs: dict[int, dict], work: Workload,
                     settings: Settings, details: dict) -> dict[str, Any]:
    """A CPU stage's row from its Ray runs and ``bare_references``' mean seconds."""
    count, workers = len(work.image_ids), settings.workers
    best = runs[workers]
    per_image = best["wall_seconds"] * workers / best["images"]
    floor, parallel = bare["bare"] / count, bare["bare_parallel"] / count
    details.update({"ray": {str(k): v for k, v in runs.items()}, "rounds": settings.rounds,
                    "bare_seconds_per_image": floor,
                    "pipeline_seconds_per_image_per_worker": per_image,
                    "pipeline_over_bare": per_image / floor,
                    "target_ratio": 0.9 * workers,
                    # the bare call on every core at once, no scheduler: the machine's own scaling
                    "bare_parallel_seconds": bare["bare_parallel"],
                    "bare_parallel_seconds_per_image": parallel,
                    "machine_scaling": workers * floor / parallel,
                    "pipeline_over_parallel_bare": per_image / parallel})
    return stage_result(stage, path, reference, best["images_per_s"], rate(count, reference_seconds),
                        unit=UNIT, images=count, workers=workers,
                        scaling=best["images_per_s"] / runs[1]["images_per_s"],
                        floor_ips=workers * rate(count, bare["bare"]), details=details)


def _serial_result(stage: str, path: str, reference: str, path_seconds: float,
                   reference_seconds: float, floor_seconds: float, work: Workload,
                   details: dict) -> dict[str, Any]:
    count = len(work.image_ids)
    details["bare_seconds_per_image"] = floor_seconds / count
    return stage_result(stage, path + " (in process, no Ray)", reference, rate(count, path_seconds),
                        rate(count, reference_seconds), unit=UNIT, images=count,
                        floor_ips=rate(count, floor_seconds), details=details)


# ---- decode ---------------------------------------------------------------------------------


def decode_stage_bench(work: Workload, settings: Settings) -> dict[str, Any]:
    """Decode-once cache load against a serial PIL decode + resize loop; Ray decode scaling."""
    records, size = work.records, settings.size
    reference = timed(lambda: [resize_image(decode_image(r.image_path), size) for r in records])
    cache = work.scratch / "decoded"
    build = timed(lambda: load_arrays(records, size, cache))
    load = timed(lambda: np.array(load_arrays(records, size, cache).images))  # mapped, then read
    details = {"cache_build_seconds": build, "cache_load_seconds": load,
               "threaded_decode_images_per_s": rate(len(records), work.decode_seconds)}
    fast = [fast_path("decode once: cache read (memory-mapped .npy) vs decode + resize", 30.0,
                      reference / load,
                      "a 256 px image is 196 KB raw: read at disk/page-cache speed vs ~5 ms "
                      "of JPEG decode and area resize", kept=reference > load, cache_build_seconds=build)]
    workers, scaling = 1, None
    if settings.ray:
        columns = {"image_id": np.asarray(work.image_ids, dtype=object),
                   "image_path": np.asarray([r.image_path for r in records], dtype=object),
                   "labels": np.asarray(work.labels, np.int64)[:, None],
                   "classes": np.zeros((len(records), 1), np.int64),
                   "boxes": np.full((len(records), 4), -1, np.int64)}
        runs, _ = scaled(decode_stage, {"size": size}, columns, settings)
        details["ray_decode"] = {str(k): v for k, v in runs.items()}
        workers, scaling = settings.workers, runs[settings.workers]["images_per_s"] / runs[1]["images_per_s"]
    result = stage_result("decode", "decode once (cache read)", "PIL decode + resize, serial",
                          rate(len(records), load), rate(len(records), reference), unit=UNIT,
                          images=len(records), workers=workers, scaling=scaling,
                          floor_ips=settings.workers * rate(len(records), reference),
                          details=details)
    return {**result, "fast_paths": fast}


# ---- GrabCut, SLIC, mix ---------------------------------------------------------------------


def _boxes(work: Workload, threshold: float = 0.5) -> np.ndarray:
    return boxes_from_heatmaps(work.heatmaps, threshold, "largest")


def study_grabcut(image: np.ndarray, box: np.ndarray, iterations: int = 5) -> np.ndarray:
    """The study's GrabCut: the whole image, the box as the rectangle, {0, 1} mask (the box
    itself where OpenCV refuses, e.g. a box over the whole image leaves no background)."""
    import cv2

    mask = np.zeros(image.shape[:2], np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return mask
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(image, mask, (x0, y0, x1 - x0, y1 - y0), np.zeros((1, 65)), np.zeros((1, 65)),
                    iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        mask[y0:y1, x0:x1] = 1
    return mask & 1


def study_slic(image: np.ndarray, n_segments: int = 100, compactness: float = 10.0) -> np.ndarray:
    from skimage.segmentation import slic

    return slic(image, n_segments=n_segments, compactness=compactness, start_label=1, channel_axis=-1)


def _crops(work: Workload, params: Any) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Each image's crop and rectangle as the GrabCut labeler builds them (``margin``)."""
    out = []
    for image, box in zip(work.images, _boxes(work, params.threshold)):
        if not has_box(box):
            continue
        x0, y0, x1, y1 = (int(v) for v in box)
        cx0, cy0, cx1, cy1 = crop_around(box, *image.shape[:2], params.margin, params.margin_px)
        out.append((np.ascontiguousarray(image[cy0:cy1, cx0:cx1]), (x0 - cx0, y0 - cy0, x1 - x0, y1 - y0)))
    return out


def bare_grabcut(crops: list, iterations: int) -> None:
    """``cv2.grabCut`` on each crop as the labeler calls it: the box as the rectangle, or, where
    the box is the whole crop (no background ring), initialised from the labeler's frame mask."""
    import cv2

    for crop, rect in crops:
        cv2.setRNGSeed(0)
        height, width = crop.shape[:2]
        if rect == (0, 0, width, height):
            cv2.grabCut(crop, frame_mask(height, width), None, np.zeros((1, 65)), np.zeros((1, 65)),
                        iterations, cv2.GC_INIT_WITH_MASK)
        else:
            cv2.grabCut(crop, np.zeros((height, width), np.uint8), rect, np.zeros((1, 65)),
                        np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_RECT)


def bare_mix(crops: list, iterations: int, n_segments: int, compactness: float) -> None:
    """The mix's library calls on the same crops: GrabCut, then SLIC."""
    bare_grabcut(crops, iterations)
    for crop, _ in crops:
        study_slic(crop, n_segments, compactness)


def _timed_call(call: tuple[Callable, tuple]) -> float:
    function, args = call
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def parallel_bare(function: Callable, args: tuple, processes: int) -> float:
    """Seconds the bare loop takes in each of ``processes`` plain processes running it at once
    (the mean): what the machine itself gives when every core runs the call, with no
    scheduler at all. Against the one-process time it is the cores' own scaling."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(_timed_call, [(function, args)] * processes)  # warm: page in, first-call setup
        return float(np.mean(pool.map(_timed_call, [(function, args)] * processes)))


def bare_references(function: Callable, args: tuple, processes: int) -> dict[str, Callable[[], float]]:
    """The bare loop's two references for ``scaled``: alone (one process, the other cores idle)
    and in ``processes`` plain processes at once (``parallel_bare``)."""
    return {"bare": lambda: timed(lambda: function(*args)),
            "bare_parallel": lambda: parallel_bare(function, args, processes)}


def grabcut_bench(work: Workload, settings: Settings) -> dict[str, Any]:
    """The GrabCut labeler (crop + margin) in the pipeline's CPU stage against the study's loop."""
    spec = cpu_spec("grabcut")
    params = GrabCutParams(**spec.params)
    boxes = _boxes(work, params.threshold)
    reference = timed(lambda: [study_grabcut(i, b, params.iterations) for i, b in zip(work.images, boxes)])
    crops = _crops(work, params)
    details: dict[str, Any] = {"params": spec.params}
    variants = {}
    for name, change in (("full", {"margin": None}), ("crop", {}),
                         ("half_side", {"max_side": settings.size // 2})):
        variant = params.model_copy(update=change)
        masks: list = []
        seconds = timed(lambda: masks.append(grabcut_masks(work.images, boxes, variant)[0]))  # noqa: B023
        variants[name] = {"seconds": seconds, "dice": dice(masks[0], work.trimaps)}
    details["variants"] = variants
    full, crop, half = variants["full"], variants["crop"], variants["half_side"]
    delta = half["dice"] - full["dice"]
    fast = [fast_path("GrabCut on box + margin crop vs whole image", 1.1,
                      full["seconds"] / crop["seconds"], "margin 1.0 grows the box by its own "
                      "side each way: for pets over ~1/3 of the frame the crop is the image",
                      dice_delta=crop["dice"] - full["dice"]),
            fast_path(f"GrabCut at max_side {settings.size // 2} vs full resolution", 3.5,
                      full["seconds"] / half["seconds"], "a quarter of the pixels; GMM fit and "
                      "max-flow are about linear in pixels", kept=abs(delta) <= 0.005, dice_delta=delta)]
    columns = work.rows()
    kwargs = {"specs": [spec], "context": _context()}
    if not settings.ray:
        floor = timed(lambda: bare_grabcut(crops, params.iterations))
        result = _serial_result("grabcut", "GrabCut labeler (crop + margin)", "cv2.grabCut whole image, serial",
                                crop["seconds"], reference, floor, work, details)
    else:
        runs, bare = scaled(cpu_stage, kwargs, columns, settings, bundled=True,
                             references=bare_references(bare_grabcut, (crops, params.iterations),
                                                        settings.workers))
        result = _pipeline_result("grabcut", "cpu_stage: GrabCut labeler (crop + margin)",
                                  "cv2.grabCut whole image, serial", reference, bare, runs, work,
                                  settings, details)
    return {**result, "fast_paths": fast}


def _context() -> Any:
    return LabelerContext()


def slic_stage(batch: dict[str, np.ndarray], params: dict) -> dict[str, np.ndarray]:
    """SLIC as the mix runs it (on the crop around the box); a batch function for Ray Data."""
    mix = MixParams(**params)
    boxes = boxes_from_heatmaps(batch[ORACLE_HEATMAP][:, 0], mix.threshold, mix.component)
    for image, box in zip(batch["image"], boxes):
        if has_box(box):
            x0, y0, x1, y1 = crop_around(box, *image.shape[:2], mix.margin, mix.margin_px)
            superpixels(image[y0:y1, x0:x1], mix)
    return batch


def slic_bench(work: Workload, settings: Settings) -> dict[str, Any]:
    """SLIC on the GrabCut crop in Ray tasks against whole-image SLIC, serial."""
    params = cpu_spec("mix").params
    mix = MixParams(**params)
    reference = timed(lambda: [study_slic(i, mix.n_segments, mix.compactness) for i in work.images])
    crops = [crop for crop, _ in _crops(work, mix)]
    path = "SLIC on the box + margin crop"
    if not settings.ray:
        floor = timed(lambda: bare_slic(crops, mix.n_segments, mix.compactness))
        seconds = timed(lambda: slic_stage(work.rows(), params))
        return _serial_result("slic", path, "skimage slic whole image, serial", seconds, reference,
                              floor, work, {"params": params})
    runs, bare = scaled(slic_stage, {"params": params}, work.rows(), settings, bundled=True,
                         references=bare_references(bare_slic, (crops, mix.n_segments, mix.compactness),
                                                    settings.workers))
    return _pipeline_result("slic", "Ray tasks: " + path, "skimage slic whole image, serial",
                            reference, bare, runs, work, settings, {"params": params})


def bare_slic(crops: list, n_segments: int, compactness: float) -> None:
    from skimage.segmentation import slic

    for crop in crops:
        slic(crop, n_segments=n_segments, compactness=compactness, start_label=1, channel_axis=-1)


def mix_bench(work: Workload, settings: Settings) -> dict[str, Any]:
    """The mix labeler (GrabCut ∩ SLIC on the crop) in the CPU stage against the study's loop;
    fast path: the mix reusing the GrabCut set's masks (one GrabCut per image for both)."""
    spec = cpu_spec("mix")
    mix = get_labeler_class("mix")(spec.params)
    p = mix.params
    boxes = _boxes(work, p.threshold)

    def study() -> None:
        for image, box in zip(work.images, boxes):
            grabcut = study_grabcut(image, box, p.iterations)
            superpixel_vote(study_slic(image, p.n_segments, p.compactness), grabcut, p.ratio)

    reference = timed(study)
    crops = _crops(work, p)
    batch = {"image": work.images, "label": work.labels, "heatmap": work.heatmaps}
    grabcut = get_labeler_class("grabcut")(cpu_spec("grabcut").params)
    separate = timed(lambda: (grabcut(batch), mix(batch)))
    shared = timed(lambda: mix.mix_from_grabcut(work.images, boxes, grabcut(batch)["mask"]))
    fast = [fast_path("mix reusing the GrabCut set's masks vs its own GrabCut", 1.7, separate / shared,
                      "GrabCut is ~80% of the mix: grabcut + mix sets pay one GrabCut, not two")]
    details = {"params": spec.params, "mix_dice": dice(mix(batch)["mask"], work.trimaps)}
    if not settings.ray:
        seconds = timed(lambda: mix(batch))
        floor = timed(lambda: bare_mix(crops, p.iterations, p.n_segments, p.compactness))
        result = _serial_result("mix", "mix labeler (crop + margin)", "GrabCut + SLIC whole image, serial",
                                seconds, reference, floor, work, details)
    else:
        runs, bare = scaled(cpu_stage, {"specs": [spec], "context": _context()}, work.rows(), settings,
                             bundled=True, references=bare_references(
                                 bare_mix, (crops, p.iterations, p.n_segments, p.compactness),
                                 settings.workers))
        result = _pipeline_result("mix", "cpu_stage: mix labeler (crop + margin)",
                                  "GrabCut + SLIC whole image, serial", reference, bare, runs,
                                  work, settings, details)
    return {**result, "fast_paths": fast}
