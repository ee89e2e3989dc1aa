"""Running the mask pipeline: plan, stream the graph's status rows, write the manifests.

``generate_masks`` plans the selected sets (``wsss.masks.plan``), runs the records some set
still misses through the Ray Data graph (``wsss.masks.graph``), counts the write stage's status
rows as they stream in (the driver never holds a row per image) and rewrites each set's
manifest with its counts, quarantine, timings and the digest of every sound file. A rerun after
a crash, after deleting masks or after a failed copy damaged some does just the missing work.
It returns what it did; the verbs print and log it (``wsss pseudo``, the sweep).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsss import console
from wsss.config import StudyConfig
from wsss.data.quarantine import Quarantine
from wsss.data.records import DatasetIndex, Record
from wsss.labelers.base import LabelerContext
from wsss.masks.files import file_image_id, present_ids, read_manifest
from wsss.masks.fitting import ensure_fitted
from wsss.masks.graph import build_dataset
from wsss.masks.integrity import FileCheck, check_files
from wsss.masks.manifest import Manifest
from wsss.masks.plan import MaskSetPlan, make_plans
from wsss.masks.stages import decode_digests
from wsss.masks.store import MaskSet, MaskSetWriter, open_mask_set

STAGES = ("decode", "heatmap", "cpu", "sam2", "write")


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
        manifest = Manifest(
            labeler_id=plan.spec.key, labeler=plan.spec.name, params=plan.spec.params,
            fingerprint=plan.fingerprint, kind=plan.kind, **plan.identity,
            dataset_root=dataset.root, files=files,
            images_expected=len(expected), images_present=len(present),
            complete=len(present) + len(quarantined) >= len(expected),
            quarantine=quarantined, created=previous.get("created", time.time()),
            updated=time.time(),
            last_run={"written": summary.per_set[plan.spec.key]["written"],
                      "skipped": summary.per_set[plan.spec.key]["skipped"],
                      "wall_seconds": round(summary.wall_seconds, 3),
                      "stage_seconds": {k: round(v, 3) for k, v in summary.stage_seconds.items()}})
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
    ensure_fitted(plans, dataset, config.data.image_size)
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
