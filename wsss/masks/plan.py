"""Planning the mask pipeline: which sets a study makes, what each is made from, what it misses.

A plan (``MaskSetPlan``) is one configured labeler: its identity (labeler fingerprint, data,
size, and the fingerprints of the sets it reads), its folder in the store, the stage that runs
it and the images its set still misses. Planning reads every file a set would reuse and checks
it against the digest its manifest keeps (``wsss.masks.integrity.check_files``): an image whose
file is damaged counts as missing, so a rerun remakes exactly the damaged images, and a set of
an older store format is remade whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wsss import console, storage
from wsss.config import ConfigError, LabelerSpec, StudyConfig
from wsss.data.records import DatasetIndex, Record
from wsss.labelers.base import LabelerContext, ThresholdParams
from wsss.labelers.registry import get_labeler_class
from wsss.masks.integrity import FileCheck, MaskSetError, check_files
from wsss.masks.specs import SourceRef, StageSpec
from wsss.masks.store import (
    STORE_FORMAT,
    MaskSet,
    identity_differences,
    list_mask_sets,
    load_manifest,
    open_mask_set,
    set_fingerprint,
    set_folder_name,
)


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
        others = [m for _, m in list_mask_sets(store) if m.labeler_id == self.spec.key]
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
                                  band=self.spec.params.get("band"),
                                  background=self.spec.params.get("background", True))
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
    manifest = load_manifest(uri)
    if manifest is not None and manifest.store_format != STORE_FORMAT:
        return FileCheck(kind), True
    return check_files(uri, kind, sorted(wanted), manifest.files if manifest else {}), False


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


def labeler_context(config: StudyConfig, classifier_checkpoint: str | None) -> LabelerContext:
    """What the study's labelers may load: the classifier, SAM2 checkpoints, random weights."""
    return LabelerContext(classifier_checkpoint=classifier_checkpoint,
                          models_dir=config.pipeline.models_dir,
                          allow_random_weights=config.weights_policy == "random",
                          seed=config.classifier.seed)
