"""The mask pipeline's Ray Data graph: records -> decode -> heatmaps -> CPU labelers -> SAM2 -> store.

Labelers that share a stage share one pass: every distinct heatmap (method, target) is computed
once per image by the heatmap actors and feeds the CAM sets, boxes, GrabCut, mix and the
CAM-prompted SAM2 sets; all SAM2 labelers share one image embedding. Only images that some
mask set still misses enter the graph (``todo`` per row), and writes are idempotent.
"""

from __future__ import annotations

import math
import os
from typing import Any

from wsss.config import StudyConfig
from wsss.data.records import Record
from wsss.labelers.base import HeatmapRef, LabelerContext
from wsss.labelers.entries import padded
from wsss.masks.plan import MaskSetPlan
from wsss.masks.stages import FAULT_ENV, TODO_SEPARATOR, HeatmapStage, Sam2Stage, cpu_stage, decode_stage, write_stage


def cluster_resources() -> tuple[int, int]:
    """(CPUs, GPUs) of the Ray cluster this driver is connected to."""
    import ray

    resources = ray.cluster_resources()
    return int(resources.get("CPU", 1)), int(resources.get("GPU", 0))


def todo_column(plans: list[MaskSetPlan], image_id: str) -> str:
    """The ids of the sets that miss ``image_id``, one per line: the write stage writes those
    and skips the others (``wsss.masks.stages.write_stage``)."""
    return TODO_SEPARATOR.join(plan.spec.key for plan in plans if image_id in plan.missing)


CPU_BUNDLE = 4  # input blocks per CPU-stage task at most


TASKS_PER_WORKER = 4  # ... while every CPU worker still gets at least this many tasks


def cpu_batch_size(images: int, batch_size: int, workers: int) -> int:
    """Rows per task of the CPU stages (GrabCut, SLIC, the mix): up to ``CPU_BUNDLE`` blocks of
    ``batch_size``, as long as each of ``workers`` still gets ``TASKS_PER_WORKER`` tasks (small
    sets keep one block per task, so every core has work). Ray Data's executor notices a
    finished task up to 0.1 s late (it polls), and a core idles until the next task starts:
    with 2-s tasks (16 GrabCuts at 256 px) that was 7% of the cores on two workers; 8-s tasks
    make it 2% (benchmark: GrabCut 1.74x -> 1.83x from 1 to 2 workers)."""
    per_worker = images // max(1, workers * TASKS_PER_WORKER)
    return max(batch_size, min(CPU_BUNDLE * batch_size, per_worker // batch_size * batch_size))


def class_box_row(record: Record, width: int) -> list[int]:
    """A record's given box per entry (``entry_boxes``), flattened and -1 padded to ``width``."""
    boxes = list(record.entry_boxes)[:width]
    boxes += [None] * (width - len(boxes))
    return [int(v) for box in boxes for v in (box if box is not None else (-1, -1, -1, -1))]


def row_blocks(plans: list[MaskSetPlan], records: list[Record], batch_size: int) -> list[Any]:
    """The pipeline's input rows (id, path, label, given box, the sets to write), one Arrow
    block of ``batch_size`` rows at a time, put in the object store as it is made: the driver
    never holds a row per image (nor Ray Data a Python list of them)."""
    import pyarrow as pa
    import ray

    refs = []
    width = max((len(r.present) for r in records), default=1)  # entries per image, -1 padded
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        columns = {
            "image_id": [r.image_id for r in chunk], "image_path": [r.image_path for r in chunk],
            "labels": pa.array(padded([r.present for r in chunk], width).tolist(), pa.list_(pa.int64(), width)),
            "classes": pa.array(padded([r.mask_classes for r in chunk], width).tolist(),
                                pa.list_(pa.int64(), width)),
            "boxes": pa.array([class_box_row(r, width) for r in chunk], pa.list_(pa.int64(), 4 * width)),
            "todo": [todo_column(plans, r.image_id) for r in chunk]}
        refs.append(ray.put(pa.table(columns)))
    return refs


def build_dataset(plans: list[MaskSetPlan], records: list[Record], config: StudyConfig,
                  context: LabelerContext) -> Any:
    """The lazy Ray Data pipeline for the records some plan still misses."""
    import ray.data

    cpus, gpus = cluster_resources()
    fault = os.environ.get(FAULT_ENV)
    batch_size = config.pipeline.batch_size
    # Ray's defaults do the recovery: a task whose worker dies is retried (3 times), a dead
    # actor is restarted and its batch retried, an actor whose constructor raises fails the job.
    # Input blocks are as large as a CPU-stage task (``cpu_batch_size``: one batch on small sets,
    # up to CPU_BUNDLE batches on large ones): Ray Data keeps metadata per input block for the
    # whole run, ~30 KB of the driver's memory each, so a block per batch made the driver grow
    # ~2 KB per image. No more task slots than blocks: a pool larger than its input would only
    # sit idle (Ray Data warns of it).
    cpu_batch = cpu_batch_size(len(records), batch_size, config.pipeline.cpu_tasks or cpus)
    blocks = max(1, math.ceil(len(records) / cpu_batch))
    tasks = ray.data.TaskPoolStrategy(size=min(config.pipeline.cpu_tasks or cpus, blocks))
    originals = any(plan.labeler.stage == "sam2" and getattr(plan.labeler.params, "original_size", False)
                    for plan in plans)
    dataset = ray.data.from_arrow_refs(row_blocks(plans, records, cpu_batch)).map_batches(
        decode_stage, fn_kwargs={"size": config.data.image_size, "fault": fault, "originals": originals},
        compute=tasks, batch_size=batch_size, num_cpus=1)
    refs = sorted({plan.heatmap_key for plan in plans if plan.heatmap_key})
    sam2_specs = [plan.to_stage() for plan in plans if plan.phase == "sam2"]
    actors = config.pipeline.heatmap_actors or max(1, gpus)
    per_actor = actor_resources(gpus, gpu_stages=bool(refs) + bool(sam2_specs))
    if refs:
        method_target = [HeatmapRef.from_key(key).model_dump() for key in refs]
        dataset = dataset.map_batches(
            HeatmapStage, fn_constructor_kwargs={"refs": method_target, "fault": fault,
                                                 "context": context},
            compute=ray.data.ActorPoolStrategy(size=actors), batch_size=batch_size,
            **per_actor)
    cpu_specs = [plan.to_stage() for plan in plans if plan.phase == "cpu"]
    if cpu_specs:
        dataset = dataset.map_batches(
            cpu_stage, fn_kwargs={"specs": cpu_specs, "context": context, "fault": fault},
            compute=tasks, batch_size=cpu_batch, num_cpus=1)
    if sam2_specs:
        dataset = dataset.map_batches(
            Sam2Stage, fn_constructor_kwargs={"specs": sam2_specs, "fault": fault,
                                              "context": context},
            compute=ray.data.ActorPoolStrategy(size=actors), batch_size=batch_size,
            **per_actor)
    post_specs = [plan.to_stage() for plan in plans if plan.phase == "post"]
    if post_specs:  # CPU labelers that read SAM2 sets (a CRF of SAM2 masks)
        dataset = dataset.map_batches(
            cpu_stage, fn_kwargs={"specs": post_specs, "context": context, "fault": fault},
            compute=tasks, batch_size=cpu_batch, num_cpus=1)
    return dataset.map_batches(
        write_stage, fn_kwargs={"plans": [plan.to_stage() for plan in plans], "fault": fault,
                                "one_class": not any(r.labels for r in records)},
        compute=tasks, batch_size=batch_size, num_cpus=1)


def actor_resources(gpus: int, gpu_stages: int = 1) -> dict[str, float]:
    """Resources per model actor: a share of a GPU where there are GPUs; else no reserved CPU.

    Where both model stages run (CAM and SAM2), each actor asks for 1 / 2 of a GPU, so the two
    pools share every GPU and both run at once, a one-GPU machine included (two whole-GPU
    pools there would leave SAM2 waiting on a GPU the CAM actors never give back). On a
    CPU-only cluster the model actors reserve no CPU: they share the cores with the CPU tasks
    (decode, GrabCut, SLIC, write) instead of holding them. Actors that held every CPU would
    wait forever for tasks that can never be scheduled.
    """
    if gpus:
        return {"num_gpus": 1.0 / max(1, gpu_stages), "num_cpus": 0}
    return {"num_gpus": 0, "num_cpus": 0}
