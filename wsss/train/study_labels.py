"""The label sources of a study's training run, checked before any work: ground truth, the
study's mask sets as they were made (their files verified), reviewed masks laid over them, and
the agreement voters that weigh each pixel's loss.
"""

from __future__ import annotations

from typing import Any

from wsss.config import ConfigError, StudyConfig, label_keys
from wsss.data.arrays import RowsById
from wsss.masks.manifest import ReviewSelection
from wsss.masks.plan import labeler_context, open_study_mask_set
from wsss.masks.reviewed import import_reviewed
from wsss.train.classifier import find_classifier
from wsss.train.labels import (
    GROUND_TRUTH,
    MaskSetSource,
    ReviewedSource,
    Schedule,
    resolve_schedule,
)


def check_truth_for(config: StudyConfig, labels: Any, dataset: Any) -> None:
    """Refuse, before any work, what needs ground truth the data does not have: labels gt, or
    selecting on it (``select: val_gt``)."""
    if dataset.has_truth:
        return
    keys = label_keys(labels) if isinstance(labels, (str, list)) else []
    where = f"{dataset.root} ({dataset.format})"
    if "gt" in keys:
        raise ConfigError(f"train.labels: gt trains on ground truth masks, and {where} has none; "
                          f"train on a mask set instead (labels: <labeler id>)")
    if config.train.select == "val_gt":
        raise ConfigError(f"train.select: val_gt chooses by ground truth, and {where} has none; "
                          f"use auto, val_labels or last")


def study_sets(config: StudyConfig, dataset: Any):
    """``open_set(key, threshold)``: this study's mask set of a labeler id, as it was made."""
    context = labeler_context(config, find_classifier(config, dataset))

    def open_set(key: str, threshold: float | None = None) -> Any:
        return open_study_mask_set(config, dataset, context, key, threshold)

    return open_set


def agreement_voters(config: StudyConfig, dataset: Any) -> list[Any]:
    """The mask sets of ``train.agreement`` as label sources: each pixel's loss is weighted by
    how many of them agree with the label (a heatmap set votes with its own threshold or band,
    so a CAM ignore band is one more abstaining voter)."""
    open_set = study_sets(config, dataset)
    try:
        return [MaskSetSource(open_set(key), key) for key in config.train.agreement]
    except FileNotFoundError as error:
        raise ConfigError(f"train.agreement: {error}") from None


def label_schedule(config: StudyConfig, labels: Any, dataset: Any, splits: dict[str, Any]) -> Any:
    """The label schedule of ``labels`` (default ``train.labels``): ground truth from the train
    and val trimaps, mask sets as this study made them (``open_study_mask_set``)."""
    check_truth_for(config, labels if labels is not None else config.train.labels, dataset)
    open_set = study_sets(config, dataset)
    trimaps = RowsById([splits["train"], splits["val"]], "trimaps")  # read where targets are made
    classmaps = RowsById([splits["train"], splits["val"]], "classmaps") if dataset.pixel_classes else None
    try:
        schedule = resolve_schedule(
            labels if labels is not None else config.train.labels, config.train.epochs,
            trimaps=trimaps, border_policy=config.data.border_policy, open_set=open_set,
            threshold=config.train.threshold, classmaps=classmaps)
    except (FileNotFoundError, KeyError, ValueError) as error:
        raise ConfigError(f"train.labels: {error}") from None
    return with_reviewed(config, schedule, dataset, splits["train"].image_ids)


def reviewed_params(schedule: Any) -> dict[str, Any]:
    """How many images a run's labels hold reviewed masks for, and how they were chosen (as
    ``wsss export --select`` recorded it), for MLflow."""
    reviewed = [source for source in schedule.sources if isinstance(source, ReviewedSource)]
    if not reviewed:
        return {"reviewed_images": 0}
    manifest = reviewed[0].reviewed.manifest
    selection = manifest.selection or ReviewSelection()
    return {"reviewed_images": len(reviewed[0].held()), "reviewed_set": manifest.fingerprint,
            "reviewed_loss_weight": reviewed[0].weight,
            "reviewed_by": selection.by, "reviewed_select": selection.select}


def reviewed_weight(setting: float | str, reviewed: set[str], train_ids: list[str]) -> float:
    """``train.reviewed_weight``: a number as it is; ``balanced`` makes the reviewed training
    images carry as much of the loss as all the others together ((N - K) / K, at least 1)."""
    if setting != "balanced":
        return float(setting)
    count = len(reviewed.intersection(train_ids))
    return max(1.0, (len(train_ids) - count) / count) if count else 1.0


def with_reviewed(config: StudyConfig, schedule: Any, dataset: Any, train_ids: list[str]) -> Any:
    """The schedule with ``train.reviewed`` laid over each of its mask-set sources (ground
    truth needs no review, so a schedule of gt alone refuses one)."""
    if not config.train.reviewed:
        return schedule
    if all(source.name == GROUND_TRUTH for source in schedule.sources):
        raise ConfigError(f"train.reviewed: {config.train.reviewed} is laid over pseudo-masks, and "
                          f"labels {schedule.describe()} are ground truth already")
    try:
        reviewed = import_reviewed(config.pipeline.store, config.train.reviewed, dataset,
                                   config.data.image_size).mask_set
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"train.reviewed: {error}") from None
    weight = reviewed_weight(config.train.reviewed_weight, set(reviewed.manifest.images), list(train_ids))
    sources = tuple(source if source.name == GROUND_TRUTH else ReviewedSource(reviewed, source, weight)
                    for source in schedule.sources)
    return Schedule(sources, schedule.steps)
