"""Pseudo-mask generation on Ray Data: records -> decode -> heatmaps -> CPU labelers -> SAM2 -> store.

Labelers that share a stage share one pass: every distinct heatmap (method, target) is computed
once per image by the heatmap actors and feeds the CAM sets, boxes, GrabCut, mix and the
CAM-prompted SAM2 sets; all SAM2 labelers share one image embedding. Only images that some
mask set still misses go through the pipeline, and writes are idempotent, so a rerun after a
crash (or after deleting masks) does just the missing work.

Planning reads every file a set would reuse and checks it against the digest its manifest
keeps (``wsss.masks.store.check_files``): an image whose file is damaged counts as missing, so
a rerun remakes exactly the damaged images, and a set of an older store format is remade
whole. The write stage's status rows carry the digests of what it wrote, and the manifest
written at the end records them.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsss import console, storage, tracking
from wsss.config import ConfigError, LabelerSpec, StudyConfig
from wsss.data.pets import DatasetIndex, Record
from wsss.data.prepare import describe_data, prepare_dataset
from wsss.data.quarantine import Quarantine
from wsss.labelers.base import HeatmapRef, LabelerContext, ThresholdParams
from wsss.labelers.registry import get_labeler_class
from wsss.masks.set_log import log_mask_set
from wsss.masks.stages import (
    FAULT_ENV,
    TODO_SEPARATOR,
    HeatmapStage,
    Sam2Stage,
    SourceRef,
    StageSpec,
    cpu_stage,
    decode_digests,
    decode_stage,
    write_stage,
)
from wsss.masks.store import (
    STORE_FORMAT,
    FileCheck,
    MaskSet,
    MaskSetError,
    MaskSetWriter,
    check_files,
    file_image_id,
    identity_differences,
    list_mask_sets,
    open_mask_set,
    present_ids,
    read_manifest,
    set_fingerprint,
    set_folder_name,
)
from wsss.raycluster import ensure_ray

STAGES = ("decode", "heatmap", "cpu", "sam2", "write")


@dataclass
class MaskSetPlan:
    """What one configured labeler will produce, and which images it still misses."""

    spec: LabelerSpec
    labeler: Any
    identity: dict[str, Any]  # what the set is made from (``wsss.masks.store.set_fingerprint``)
    uri: str
    kind: str  # "heatmaps" (CAM family: threshold at read time) or "masks"
    heatmap_key: str | None  # the heatmap column it reads or writes
    missing: set[str] = field(default_factory=set)
    present: int = 0  # images of the study the set already holds
    phase: str = "cpu"  # the stage that runs it: heatmap | cpu | sam2 | post (cpu after SAM2)
    sources: list[SourceRef] = field(default_factory=list)  # where its source masks come from
    digests: dict[str, str] = field(default_factory=dict)  # file -> digest of each sound file there
    damaged: set[str] = field(default_factory=set)  # images whose files failed the check (remade)
    outdated: bool = False  # written by an older store format: remade whole, nothing reused

    @property
    def fingerprint(self) -> str:
        return set_fingerprint(self.identity)

    def reuse_line(self, store: str) -> str:
        """What ``wsss pseudo`` says of this set before it runs: reused, finished or new, and why."""
        folder = self.uri.rsplit("/", 1)[-1]
        if self.outdated:
            return (f"  {self.spec.key:<18} regenerate {folder}: written by an older wsss (no file "
                    f"digests), {len(self.missing)} images to remake")
        if self.damaged:
            more = len(self.missing) - len(self.damaged)
            return (f"  {self.spec.key:<18} mend {folder}: {len(self.damaged)} damaged images to remake"
                    + (f", {more} more to make" if more else ""))
        if not self.missing:
            return (f"  {self.spec.key:<18} reuse {folder}: all {self.present} images made from this "
                    f"dataset, size and labeler")
        if self.present:
            return (f"  {self.spec.key:<18} finish {folder}: {self.present} images there, "
                    f"{len(self.missing)} to make")
        others = [m for m in list_mask_sets(store) if m.get("labeler_id") == self.spec.key]
        why = "; ".join(sorted({identity_differences(m, self.identity) for m in others})) or "none made yet"
        return f"  {self.spec.key:<18} new {folder}: {len(self.missing)} images (older sets differ in: {why})"

    def to_stage(self) -> StageSpec:
        """The picklable part a Ray task needs (``StageSpec``)."""
        return StageSpec(id=self.spec.key, name=self.spec.name, params=self.spec.params,
                         fingerprint=self.fingerprint, uri=self.uri, kind=self.kind,
                         heatmap_column=f"heatmap__{self.heatmap_key}" if self.heatmap_key else None,
                         sources=tuple(self.sources))

    def as_source(self) -> SourceRef:
        """How a labeler that reads this set finds its masks in a batch: a mask column, or the
        heatmap column cut with this set's own threshold (as reading the set would cut it)."""
        if self.kind == "heatmaps":
            cut = ThresholdParams(threshold=self.spec.params.get("threshold", 0.5),
                                  band=self.spec.params.get("band"))
            return SourceRef(self.spec.key, f"heatmap__{self.heatmap_key}", cut)
        return SourceRef(self.spec.key, f"mask__{self.spec.key}")


def set_identity(labeler: Any, dataset: DatasetIndex, image_size: int) -> dict[str, Any]:
    """What a mask set is made from: the labeler (name, params, weights), the data, the size."""
    return {"labeler_fingerprint": labeler.fingerprint(), "dataset_index": dataset.fingerprint(),
            "image_size": image_size}


def study_identities(config: StudyConfig, dataset: DatasetIndex, context: LabelerContext,
                     keys: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """{id: (labeler, identity)} of ``keys`` and every set they read, sources first; a set built
    on others (a CRF, an agreement) carries their fingerprints in its own identity."""
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    for spec in config.with_sources(keys):
        labeler = get_labeler_class(spec.name)(spec.params, context)
        identity = set_identity(labeler, dataset, config.data.image_size)
        if spec.sources:
            identity["sources"] = {key: set_fingerprint(found[key][1]) for key in spec.sources}
        found[spec.key] = (labeler, identity)
    return found


def plan_phase(labeler: Any, sources: list[MaskSetPlan]) -> str:
    """The stage that runs a labeler: its own, or a CPU pass after SAM2 for a CPU labeler that
    reads a SAM2 set (a CRF of SAM2 masks)."""
    if labeler.stage != "cpu" or not any(s.phase in ("sam2", "post") for s in sources):
        if labeler.stage == "sam2" and any(s.phase == "post" for s in sources):
            raise ConfigError(f"labeler {labeler.name!r} (SAM2) cannot read a set made after SAM2 "
                              f"({', '.join(s.spec.key for s in sources if s.phase == 'post')})")
        return labeler.stage
    return "post"


def stored_state(uri: str, kind: str, wanted: set[str]) -> tuple[FileCheck, bool]:
    """(the check of every file of ``wanted`` a set folder holds, whether the set is of an older
    store format). An older set's files are not read: with no digests to check them against,
    the set is remade rather than reused blindly."""
    manifest = read_manifest(uri)
    if manifest is not None and manifest.get("store_format") != STORE_FORMAT:
        return FileCheck(kind), True
    return check_files(uri, kind, sorted(wanted), (manifest or {}).get("files") or {}), False


def make_plans(config: StudyConfig, dataset: DatasetIndex, records: list[Record],
               context: LabelerContext, labeler_ids: list[str] | None = None) -> list[MaskSetPlan]:
    """One plan per selected labeler and every set it reads (sources first), each with the ids
    its mask set does not hold yet, or holds damaged (``stored_state``)."""
    wanted = {record.image_id for record in records}
    plans: dict[str, MaskSetPlan] = {}
    keys = labeler_ids or [spec.key for spec in config.labelers]
    for key, (labeler, identity) in study_identities(config, dataset, context, keys).items():
        spec = config.labeler(key)
        uri = storage.join(config.pipeline.store, set_folder_name(key, set_fingerprint(identity)))
        is_heatmap = labeler.stage == "heatmap"
        ref = labeler.heatmap_ref()
        heatmap_key = labeler.own_ref().key() if is_heatmap else (ref.key() if ref else None)
        kind = "heatmaps" if is_heatmap else "masks"
        check, outdated = stored_state(uri, kind, wanted)
        present = check.sound_ids() & wanted
        sources = [plans[source] for source in spec.sources]
        plans[key] = MaskSetPlan(spec, labeler, identity, uri, kind, heatmap_key, wanted - present,
                                 len(present), plan_phase(labeler, sources),
                                 [source.as_source() for source in sources], check.digests,
                                 check.damaged_ids() & wanted, outdated)
    return list(plans.values())


def open_study_mask_set(config: StudyConfig, dataset: DatasetIndex, context: LabelerContext,
                        key: str, threshold: float | None = None) -> MaskSet:
    """The complete mask set of labeler id ``key`` made from this study's data, size and labeler
    (MaskSetError naming the differences and how to regenerate otherwise)."""
    _, identity = study_identities(config, dataset, context, [key])[key]
    return open_mask_set(config.pipeline.store, key, identity, threshold=threshold)


def agreement_sets(config: StudyConfig, dataset: DatasetIndex, context: LabelerContext,
                   key: str) -> dict[str, MaskSet]:
    """The study's other complete sets for this data, whose agreement is the confidence; a
    missing one is skipped with a note (export never generates masks)."""
    found = {}
    for spec in config.labelers:
        if spec.key == key:
            continue
        try:
            found[spec.key] = open_study_mask_set(config, dataset, context, spec.key)
        except (MaskSetError, FileNotFoundError) as error:  # not made, or its weights are missing
            reason = str(error).splitlines()[0]
            console.say(f"note: confidence leaves out {spec.key!r}: {reason}")
    return found


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
    """A record's box per class (``class_boxes``), flattened and -1 padded to ``width`` classes."""
    boxes = list(record.class_boxes)[:width]
    boxes += [None] * (width - len(boxes))
    return [int(v) for box in boxes for v in (box if box is not None else (-1, -1, -1, -1))]


def row_blocks(plans: list[MaskSetPlan], records: list[Record], batch_size: int) -> list[Any]:
    """The pipeline's input rows (id, path, label, given box, the sets to write), one Arrow
    block of ``batch_size`` rows at a time, put in the object store as it is made: the driver
    never holds a row per image (nor Ray Data a Python list of them)."""
    import pyarrow as pa
    import ray

    refs = []
    width = max((len(r.labels) for r in records), default=0)  # several classes: a padded column
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        columns = {
            "image_id": [r.image_id for r in chunk], "image_path": [r.image_path for r in chunk],
            "label": pa.array([r.label for r in chunk], pa.int64()),
            "box": pa.array([list(r.box) if r.box else [-1, -1, -1, -1] for r in chunk],
                            pa.list_(pa.int64(), 4)),
            "todo": [todo_column(plans, r.image_id) for r in chunk]}
        if width:
            columns["labels"] = pa.array([list(r.labels) + [-1] * (width - len(r.labels)) for r in chunk],
                                         pa.list_(pa.int64(), width))
            columns["boxes"] = pa.array([class_box_row(r, width) for r in chunk], pa.list_(pa.int64(), 4 * width))
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
        write_stage, fn_kwargs={"plans": [plan.to_stage() for plan in plans], "fault": fault},
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


@dataclass
class PipelineSummary:
    """What a run did, per mask set and per stage."""

    images: int
    wall_seconds: float
    per_set: dict[str, Counter]
    stage_seconds: dict[str, float]
    quarantine: Quarantine
    plans: list[MaskSetPlan]
    digests: dict[str, dict[str, str]] = field(default_factory=dict)  # set -> file -> digest, written

    def open(self, key: str, threshold: float | None = None) -> MaskSet:
        """The mask set this run made (or finished) for labeler id ``key``."""
        plan = next(p for p in self.plans if p.spec.key == key)
        return open_mask_set(plan.uri.rsplit("/", 1)[0], key, plan.identity, threshold=threshold)

    def stage_rates(self) -> dict[str, float]:
        """Images per busy second of each stage (per worker)."""
        return {stage: self.images / seconds for stage, seconds in self.stage_seconds.items() if seconds > 0}

    def format(self) -> str:
        lines = [f"{self.images} images through the pipeline in {self.wall_seconds:.1f} s "
                 f"({self.images / max(self.wall_seconds, 1e-9):.1f} images/s overall)"]
        for stage, rate in self.stage_rates().items():
            lines.append(f"  stage {stage:<8} {rate:8.1f} images/s per worker "
                         f"({self.stage_seconds[stage]:.1f} busy s)")
        for key, counts in self.per_set.items():
            lines.append(f"  {key:<24} written {counts['written']:>5}  skipped {counts['skipped']:>5}  "
                         f"quarantined {counts['quarantined']:>3}")
        return "\n".join(lines)


@dataclass
class Tally:
    """The write stage's status rows, counted as they stream in: the driver keeps counters, the
    quarantine and the digest of each file written (for the manifests), never a row per image."""

    per_set: dict[str, Counter]
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    quarantine: Quarantine = field(default_factory=Quarantine)
    seen: set = field(default_factory=set)
    digests: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Count one batch of status rows (one per image and mask set)."""
        for labeler_id, status in zip(batch["labeler_id"], batch["status"]):
            self.per_set[str(labeler_id)][str(status)] += 1
        for image_id, status, reason in zip(batch["image_id"], batch["status"], batch["reason"]):
            if status == "quarantined" and (image_id, reason) not in self.seen:
                self.seen.add((image_id, reason))
                self.quarantine.add(str(image_id), str(reason))
        for labeler_id, files in zip(batch["labeler_id"], batch.get("files", ())):
            if files:
                self.digests[str(labeler_id)].update(decode_digests(str(files)))
        for column in batch:
            if column.startswith("seconds__"):
                self.seconds[column[len("seconds__"):]] += float(np.sum(batch[column]))

    def summary(self, plans: list[MaskSetPlan], images: int, wall: float) -> PipelineSummary:
        ordered = {stage: self.seconds[stage] for stage in STAGES if stage in self.seconds}
        return PipelineSummary(images, wall, self.per_set, ordered, self.quarantine, plans, dict(self.digests))


def sound_files(plan: MaskSetPlan, written: dict[str, str], expected: set[str]) -> dict[str, str]:
    """Digests of the sound files of ``expected`` images in a plan's set: checked when planning,
    written by this run, or (files there that neither covers) read and hashed now. A file found
    damaged and not remade (its image failed this time), or one of an older set, is left out:
    the set lacks that image."""
    files = {**plan.digests, **written}
    known = FileCheck(plan.kind, digests=files).sound_ids()
    untrusted = expected if plan.outdated else plan.damaged
    unknown = (present_ids(plan.uri, plan.kind) & expected) - known - untrusted
    if unknown:
        files.update(check_files(plan.uri, plan.kind, sorted(unknown), {}).digests)
    sound = FileCheck(plan.kind, digests=files).sound_ids() & expected
    return {relative: digest for relative, digest in files.items() if file_image_id(relative) in sound}


def write_manifests(summary: PipelineSummary, config: StudyConfig, dataset: DatasetIndex,
                    records: list[Record]) -> None:
    """Rewrite every plan's manifest with counts, quarantine, timings of this run and the
    digest of every sound file (``sound_files``)."""
    expected = {record.image_id for record in records}
    bad = {entry["image_id"]: entry["reason"] for entry in summary.quarantine.entries}
    for plan in summary.plans:
        files = sound_files(plan, summary.digests.get(plan.spec.key, {}), expected)
        present = FileCheck(plan.kind, digests=files).sound_ids()
        previous = read_manifest(plan.uri) or {}
        quarantined = [{"image_id": i, "reason": r} for i, r in sorted(bad.items()) if i not in present]
        manifest = {
            "labeler_id": plan.spec.key, "labeler": plan.spec.name, "params": plan.spec.params,
            "fingerprint": plan.fingerprint, "kind": plan.kind, **plan.identity,
            "dataset_root": dataset.root, "files": files,
            "images_expected": len(expected), "images_present": len(present),
            "complete": len(present) + len(quarantined) >= len(expected),
            "quarantine": quarantined, "created": previous.get("created", time.time()),
            "updated": time.time(),
            "last_run": {"written": summary.per_set[plan.spec.key]["written"],
                         "skipped": summary.per_set[plan.spec.key]["skipped"],
                         "wall_seconds": round(summary.wall_seconds, 3),
                         "stage_seconds": {k: round(v, 3) for k, v in summary.stage_seconds.items()}},
        }
        MaskSetWriter(plan.uri).write_manifest(manifest)


def run_dataset(dataset: Any, tally: Tally, stage: console.Stage) -> None:
    """Stream the write stage's status rows into ``tally``; the console shows images as they
    finish."""
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        tally.add(batch)
        stage.advance(len(set(batch["image_id"].tolist())))


def generate_masks(config: StudyConfig, dataset: DatasetIndex, context: LabelerContext,
                   labeler_ids: list[str] | None = None, splits: tuple[str, ...] = ("trainval", "test"),
                   ) -> PipelineSummary:
    """Make every selected mask set complete for ``splits``; returns what was done."""
    records = dataset.split(*splits)
    plans = make_plans(config, dataset, records, context, labeler_ids)
    console.say("\n".join(["mask sets:", *(plan.reuse_line(config.pipeline.store) for plan in plans)]))
    todo_ids = set().union(*(plan.missing for plan in plans)) if plans else set()
    todo = [record for record in records if record.image_id in todo_ids]
    started = time.perf_counter()
    tally = Tally({plan.spec.key: Counter() for plan in plans})
    with console.Stage("mask sets", total=len(todo), unit="images") as stage:
        if todo:
            run_dataset(build_dataset(plans, todo, config, context), tally, stage)
        summary = tally.summary(plans, len(todo), time.perf_counter() - started)
        written = sum(counts["written"] for counts in summary.per_set.values())
        stage.done(f"{len(plans)} sets, {written} masks written for {len(todo)} images "
                   f"({len(records) - len(todo)} images had every mask already)")
    summary.quarantine.extend(dataset.quarantine)
    write_manifests(summary, config, dataset, records)
    summary.quarantine.check_budget(len(records) + len(dataset.quarantine), config.data.error_budget)
    return summary


def labeler_context(config: StudyConfig, classifier_checkpoint: str | None) -> LabelerContext:
    """What the study's labelers may load: the classifier, SAM2 checkpoints, random weights."""
    return LabelerContext(classifier_checkpoint=classifier_checkpoint,
                          models_dir=config.pipeline.models_dir,
                          allow_random_weights=config.weights_policy == "random",
                          seed=config.classifier.seed)


def run_pseudo(config: StudyConfig, checkpoint: str | None, labeler_ids: list[str] | None = None,
               parent_run_id: str | None = None, dataset: DatasetIndex | None = None,
               log: bool = True) -> dict[str, Any]:
    """Generate (or finish) the selected mask sets, then score and log each one.

    ``checkpoint`` is the breed classifier the CAM family reads (``wsss.train.classifier.
    resolve_classifier``), None when no selected labeler builds on a CAM.
    """
    if dataset is None:
        dataset = prepare_dataset(config.data)
        console.say(describe_data(dataset))
    ensure_ray()
    summary = generate_masks(config, dataset, labeler_context(config, checkpoint), labeler_ids)
    logging.getLogger(__name__).info("%s", summary.format())
    results = []
    if log:
        tracking.configure(config.tracking)
        records = dataset.split("trainval", "test")
        results = [log_mask_set(plan, summary.plans, summary, config, records, parent_run_id)
                   for plan in summary.plans]
        for result in results:
            q = result["quality"]["micro"]
            print(f"  {result['labeler_id']:<24} " + (f"pseudo-mask Dice {q['dice']:.4f}  IoU {q['iou']:.4f}"
                  if result["quality"]["images"] else "no ground truth to score against"))
    return {"summary": summary, "mask_sets": results, "classifier": checkpoint}
