"""Train a segmentation network (UNet, DeepLabV3, FCN) on Ray Train from a study config.

- ``fit_segmentation(config, labels=..., model=...)`` decodes the splits once (cached), builds
  the label schedule's targets, fits a ``TorchTrainer`` (loop: ``wsss.train.worker``) and
  returns a ``TrainingOutcome``: test metrics of the checkpoint ``train.select`` chose, its path, an
  exported model file, a sample figure, the per-epoch history and the run's params. No MLflow,
  so a sweep can call it inside a trial and log child runs itself.
- ``log_training(config, outcome)`` (``wsss.train.train_log``) writes one MLflow run.
- ``train_segmentation`` does both and returns a plain dict.

The Train run is ``<train.storage>/<name>``; ``name`` defaults to the model plus a fingerprint
of what decides the result, so rerunning a crashed run resumes it from its last checkpoint and
rerunning a finished one only re-tests it.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsss import console, storage
from wsss.config import ConfigError, StudyConfig, label_keys, resolve_select
from wsss.data.arrays import RowsById, reference, split_rows
from wsss.data.prepare import prepare_dataset
from wsss.identity import stable_hash
from wsss.masks.pipeline import labeler_context, open_study_mask_set
from wsss.masks.reviewed import import_reviewed
from wsss.metrics import BORDER_POLICIES, IGNORE, flat_metrics, scores
from wsss.models.segmentation import (
    CHECKPOINT_FILE,
    NAMED_WEIGHTS,
    create_model,
    export_model,
    model_spec,
    read_checkpoint,
    uses_random_weights,
)
from wsss.tracking import git_commit
from wsss.train.classifier import find_classifier
from wsss.train.common import (
    built_dataset,
    data_config,
    decoded_splits,
    run_config,
    scaling_config,
    shuffled_order,
)
from wsss.train.labels import (
    GROUND_TRUTH,
    MaskSetSource,
    ReviewedSource,
    Schedule,
    SelfTrainingSource,
    make_schedule,
    resolve_schedule,
)
from wsss.train.progress import epoch_progress
from wsss.train.settings import FailOnce, TrainSettings
from wsss.train.steps import ground_truth_targets
from wsss.train.train_log import log_training, sample_figure
from wsss.train.worker import FAIL_ONCE_ENV, train_loop

MODEL_FILE = "tested_model.pt"
FIGURE_FILE = "sample.png"
PER_IMAGE_FILE = "test_per_image.csv"
PER_IMAGE_COLUMNS = ("image_id", "dice", "iou", "accuracy", "precision", "recall")


@dataclass
class TrainingOutcome:
    """What a finished training run produced (files under ``train.storage``: paths or URIs)."""

    name: str
    run_dir: str
    checkpoint: str  # the Train checkpoint directory that was tested (``train.select``)
    model_file: str  # that checkpoint's model without optimizer state
    figure: str | None
    test: dict[str, Any]  # SegmentationMeter.result() + border_policy
    tested_epoch: int
    history: list[dict[str, Any]]
    params: dict[str, Any]
    random_weights: bool
    timings: dict[str, float]  # rank 0's setup, per-epoch (train + val + checkpoint), test
    # the same test predictions scored under every border policy (``test`` is one of them)
    test_by_policy: dict[str, Any] = field(default_factory=dict)
    per_image_file: str | None = None  # PER_IMAGE_FILE: per-image test scores, configured policy

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "test_metrics": flat_metrics(self.test, "test_"),
                "test_images": self.test["images"], "tested_epoch": self.tested_epoch,
                "checkpoint": self.checkpoint, "model_file": self.model_file,
                "figure": self.figure, "run_dir": self.run_dir}




def resolve_weights(config: StudyConfig, model: str) -> tuple[str, bool]:
    """(weights as the workers need them, random-init flag); refuses before any work."""
    weights = config.train.weights
    try:
        spec = model_spec(model)
    except ValueError as error:
        raise ConfigError(f"train.model: {error}") from None
    try:
        spec.check_weights(model, weights)
    except ValueError as error:
        raise ConfigError(f"train.weights: {error}") from None
    random = uses_random_weights(model, weights)
    if random and config.weights_policy != "random":
        raise ConfigError(f"train.weights is 'none' (random init of {model}'s backbone) but "
                          f"weights_policy is {config.weights_policy!r}; set weights_policy: "
                          f"random (smoke runs and tests) or train.weights: imagenet | <path>")
    if weights != "none" and weights not in NAMED_WEIGHTS:
        weights = str(Path(weights).resolve())  # workers run in another directory
    return weights, random


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


def check_classes(config: StudyConfig, dataset: Any) -> None:
    """Refuse, before any work, what several-class training does not do yet: reviewed masks,
    whose importers paint one foreground value, not each region's class."""
    if dataset.pixel_classes and config.train.reviewed:
        raise ConfigError("train.reviewed works with one class per image: wsss import paints every "
                          "reviewed region as the one foreground; with several classes per image train on "
                          "ground truth or on a mask set")


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
    selection = manifest.get("selection") or {}
    return {"reviewed_images": len(reviewed[0].held()), "reviewed_set": manifest.get("fingerprint"),
            "reviewed_loss_weight": reviewed[0].weight,
            "reviewed_by": selection.get("by"), "reviewed_select": selection.get("select")}


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
    weight = reviewed_weight(config.train.reviewed_weight, set(reviewed.manifest["images"]), list(train_ids))
    sources = tuple(source if source.name == GROUND_TRUTH else ReviewedSource(reviewed, source, weight)
                    for source in schedule.sources)
    return Schedule(sources, schedule.steps)


def val_columns(schedule, val, selection: str, border_policy: str, gt_metrics: bool,
                rows: slice = slice(None), classes: bool = False) -> dict:
    """The val set's columns (of ``rows``): ``target`` is what selection and the LR schedule
    read (the run's own final labels, or ground truth only for ``val_gt``); ``gt_target`` only
    when asked. ``val`` is a split or its ``reference`` (read where the block is built).
    ``classes``: ground truth is the class maps (several classes per image)."""
    arrays = split_rows(val)
    ids = arrays.image_ids[rows]
    images = np.asarray(arrays.images[rows])
    if classes:
        truth = lambda: np.asarray(arrays.classmaps[rows])  # noqa: E731
    else:
        truth = lambda: ground_truth_targets(np.asarray(arrays.trimaps[rows]), border_policy)  # noqa: E731
    columns = {"image": images,
               "target": truth() if selection == "val_gt" else schedule.final.targets(ids, images.shape[1])}
    if gt_metrics and selection != "val_gt":
        columns["gt_target"] = truth()
    return columns


def agreement_weights(targets: np.ndarray, voters: list[np.ndarray]) -> np.ndarray:
    """Per-pixel loss weights (uint8, 255 = full): the share of ``voters`` (other mask sets'
    masks of the same images) that agree with the target; a voter's 255 abstains, and a pixel
    no voter speaks for keeps full weight."""
    votes = np.stack(voters)  # V x N x S x S
    speaking = votes != IGNORE
    agreeing = (votes == targets[None]) & speaking
    share = np.divide(agreeing.sum(0), speaking.sum(0), out=np.ones(targets.shape, np.float64),
                      where=speaking.any(0))
    return np.rint(share * 255).astype(np.uint8)


def train_columns(start: int, stop: int, *, train, order: np.ndarray, sources, voters) -> dict:
    """Rows ``order[start:stop]`` of the train split: image, one target column per source and,
    with ``voters``, a weight column per source (``agreement_weights``)."""
    arrays = split_rows(train)
    rows = order[start:stop]
    ids = [arrays.image_ids[row] for row in rows]
    images = np.asarray(arrays.images[rows])
    size = images.shape[1]
    columns = {"image": images}
    votes = [voter.targets(ids, size) for voter in voters]
    for index, source in enumerate(sources):
        columns[f"target_{index}"] = source.targets(ids, size)
        weights = [agreement_weights(columns[f"target_{index}"], votes)] if votes else []
        if getattr(source, "weights", None) is not None:
            weights.append(source.weights(ids, size))
        weights = [w for w in weights if w is not None]
        if weights:  # both: the product, still 255 = full
            columns[f"weight_{index}"] = (weights[0] if len(weights) == 1 else
                                          np.rint(weights[0].astype(np.float32) * weights[1] / 255).astype(np.uint8))
    return columns


def val_block(start: int, stop: int, **kwargs) -> dict:
    return val_columns(rows=slice(start, stop), **kwargs)


def test_policies(border_policy: str, classes: bool) -> tuple[str, ...]:
    """The border policies test is scored under, the configured one first: every policy for a
    trimap's border, the configured one alone for class maps (their ignore is their own)."""
    return (border_policy,) if classes else (border_policy, *(p for p in BORDER_POLICIES if p != border_policy))


def test_columns(start: int, stop: int, *, test, border_policy: str, classes: bool = False) -> dict:
    """Rows [start, stop) of test: image, the row index (test is also scored per image) and the
    ground-truth class map under each of ``test_policies`` (``truth__<policy>``); with
    ``classes`` the class-indexed truth."""
    arrays = split_rows(test)
    columns = {"image": np.asarray(arrays.images[start:stop]), "index": np.arange(start, stop, dtype=np.int64)}
    if classes:
        columns[f"truth__{border_policy}"] = np.asarray(arrays.classmaps[start:stop])
        return columns
    trimaps = np.asarray(arrays.trimaps[start:stop])
    for policy in test_policies(border_policy, classes):
        columns[f"truth__{policy}"] = ground_truth_targets(trimaps, policy)
    return columns


def warn_missing(sources, image_ids: list[str]) -> None:
    """Say, on the driver, how many training images each mask set lacks (they train as
    all-ignore: nothing enters the loss)."""
    for source in sources:
        absent = source.absent(image_ids) if isinstance(source, (MaskSetSource, ReviewedSource)) else []
        if absent:
            print(f"mask set {source.name}: {len(absent)} of {len(image_ids)} images have no "
                  f"mask and are ignored in training", file=sys.stderr)


def build_datasets(schedule, splits: dict[str, Any], config: StudyConfig, classes: bool,
                   voters: list[Any] = ()) -> dict:
    """Ray datasets built one block at a time (``built_dataset``): train (``train_columns``, in
    one seeded random order), val (``val_columns``) and test (``test_columns``). Pixels come
    from the memory-mapped decode cache and targets are made per block, so the driver never
    holds a split's pixels or targets."""
    border_policy, seed = config.data.border_policy, config.train.seed
    train, val, test = splits["train"], splits["val"], splits["test"]
    warn_missing([*schedule.sources, *voters], train.image_ids)
    selection = resolve_select(config.train.select, [source.name for source in schedule.sources])
    return {
        "train": built_dataset(len(train), train_columns, train=reference(train),
                               order=shuffled_order(len(train), seed), sources=schedule.sources,
                               voters=list(voters)),
        "val": built_dataset(len(val), val_block, val=reference(val), schedule=schedule,
                             selection=selection, border_policy=border_policy,
                             gt_metrics=config.train.val_gt_metrics, classes=classes),
        "test": built_dataset(len(test), test_columns, test=reference(test), border_policy=border_policy,
                              classes=classes),
    }


def run_name(config: StudyConfig, model: str, model_options: dict, schedule,
             dataset_fingerprint: str) -> str:
    """``<model>-<fingerprint>`` of the train section, labels (mask-set fingerprints included),
    model options and dataset: a changed input never resumes a stale run."""
    section = config.train.model_dump(mode="json", exclude={"storage", "name", "max_failures",
                                                              "labels", "model"})
    data = config.data.model_dump(mode="json", include={"image_size", "border_policy",
                                                        "val_fraction", "split_seed", "limit"})
    digest = stable_hash({"train": section, "data": data, "model": model, "options": model_options,
                          "labels": schedule.describe(), "sources": schedule.versions(),
                          "dataset": dataset_fingerprint, "threshold": config.train.threshold})
    return f"{model.replace('/', '_')}-{digest}"


def _settings(config: StudyConfig, model: str, weights: str, model_options: dict, schedule,
              class_names: tuple[str, ...] | None, test_images: int) -> TrainSettings:
    section = config.train
    workers = max(1, section.scaling.num_workers)
    selection = resolve_select(section.select, [source.name for source in schedule.sources])
    fail = os.environ.get(FAIL_ONCE_ENV)
    epoch, _, marker = (fail or "").partition(":")
    return TrainSettings(
        model=model, weights=weights, model_options=dict(model_options), select=selection,
        val_columns=("target",) + (("gt_target",) if section.val_gt_metrics and selection != "val_gt" else ()),
        lr=section.lr, epochs=section.epochs,
        # train.batch_size is the global batch (the study's 64 on one GPU): split it
        batch_size=max(2, math.ceil(section.batch_size / workers)),
        eval_batch_size=section.eval_batch_size, seed=section.seed, bf16=section.bf16,
        image_size=section.image_size, border_policy=config.data.border_policy,
        labels=schedule.describe(), schedule=tuple(tuple(step) for step in schedule.steps),
        source_names=tuple(source.name for source in schedule.sources), test_images=test_images,
        test_policies=test_policies(config.data.border_policy, class_names is not None),
        class_names=class_names,
        fail_once=FailOnce(int(epoch), str(Path(marker).resolve())) if fail else None)


def _schedule_steps(settings: TrainSettings) -> list[tuple[int, str]]:
    """[(epochs, source name), ...] of the label schedule."""
    steps, previous = [], 0
    for last, index in settings.schedule:
        steps.append((last - previous, settings.source_name(index)))
        previous = last
    return steps


def _params(config: StudyConfig, settings: TrainSettings, splits: dict, dataset_fingerprint: str,
            random_weights: bool, name: str) -> dict[str, Any]:
    keep = ("model", "model_options", "weights", "labels", "lr", "epochs", "eval_batch_size",
            "seed", "bf16", "image_size", "border_policy", "select")
    return {**{key: getattr(settings, key) for key in keep}, "name": name,
            "batch_size": config.train.batch_size, "worker_batch_size": settings.batch_size,
            "schedule": _schedule_steps(settings), "threshold": config.train.threshold,
            "scaling": config.train.scaling.model_dump(), "weights_policy": config.weights_policy,
            "random_weights": random_weights, "git_commit": git_commit(),
            "dataset_fingerprint": dataset_fingerprint,
            "val_target": "ground truth" if settings.select == "val_gt" else
            f"labels {settings.source_name(settings.schedule[-1][1])}",
            "val_gt_metrics": config.train.val_gt_metrics,
            "reviewed": config.train.reviewed, "reviewed_weight": config.train.reviewed_weight,
            **{f"{split}_images": len(splits[split]) for split in ("train", "val", "test")}}


def fit_segmentation(config: StudyConfig, *, labels: Any = None, model: str | None = None,
                     model_options: dict[str, Any] | None = None, name: str | None = None,
                     callbacks: list | None = None) -> TrainingOutcome:
    """Train on Ray Train and test the best checkpoint; see the module docstring.

    ``labels`` overrides ``train.labels`` (a key, a schedule, or ``wsss.train.labels``
    objects); ``model`` overrides ``train.model``; ``model_options`` go to ``create_model``
    (e.g. ``{"width": 0.25}`` for a narrow UNet); ``callbacks`` go to Train's RunConfig.
    """
    section = config.train
    model, model_options = section.model_and_options(model, model_options)
    weights, random_weights = resolve_weights(config, model)
    create_model(model, weights, **model_options)  # unknown options, missing weights: fail now
    dataset = prepare_dataset(config.data)
    check_classes(config, dataset)
    splits = decoded_splits(config, dataset, section.image_size, min_train=2)
    schedule = label_schedule(config, labels, dataset, splits)
    name = name or section.name or run_name(config, model, model_options, schedule,
                                            dataset.fingerprint())
    fit = (config, model, weights, model_options, splits, dataset, random_weights, callbacks)
    outcome = fit_round(*fit, schedule, name if section.rounds == 1 else f"{name}-round1")
    for round_number in range(2, section.rounds + 1):  # self-training: the last model's labels
        images = RowsById([splits["train"], splits["val"]], "images")
        source = SelfTrainingSource(f"round{round_number - 1}", outcome.model_file,
                                    tuple(section.self_training_band), images)
        outcome = fit_round(*fit, with_reviewed(config, make_schedule([(section.epochs, source)]), dataset,
                                                 splits["train"].image_ids),
                            name if round_number == section.rounds else f"{name}-round{round_number}",
                            previous=outcome)
    return outcome


def fit_round(config: StudyConfig, model: str, weights: str, model_options: dict, splits: dict,
              dataset: Any, random_weights: bool, callbacks: list | None, schedule: Any, name: str,
              previous: TrainingOutcome | None = None) -> TrainingOutcome:
    """One Ray Train run on ``schedule``, tested; ``previous`` is the round it learnt from."""
    from ray.train.torch import TorchTrainer

    section = config.train
    settings = _settings(config, model, weights, model_options, schedule, dataset.pixel_classes,
                         len(splits["test"]))
    storage_root = storage.absolute(section.storage)  # a folder, or a URI such as s3://...
    trainer = TorchTrainer(
        train_loop, train_loop_config=settings, scaling_config=scaling_config(section.scaling),
        run_config=run_config(storage_root, name, metric=settings.best_metric,
                              max_failures=section.max_failures, callbacks=callbacks),
        datasets=build_datasets(schedule, splits, config, settings.class_names is not None,
                                agreement_voters(config, dataset)),
        dataset_config=data_config(("train",)))
    returned = trainer.fit().return_value
    params = {**_params(config, settings, splits, dataset.fingerprint(), random_weights, name),
              "label_versions": schedule.versions(), "rounds": section.rounds,
              **reviewed_params(schedule),
              "round": 1 if previous is None else previous.params["round"] + 1}
    if previous is not None:  # the whole self-training run's history, round by round
        returned["history"] = previous.history + [{**row, "epoch": row["epoch"] + len(previous.history)}
                                                  for row in returned["history"]]
    return _finish(returned, storage.join(storage_root, name), splits["test"],
                   config.data.border_policy, params, random_weights, name)


def write_per_image(counts: Any, image_ids: list[str], path: Path) -> Path:
    """PER_IMAGE_FILE from per-image [tp, fp, fn, tn] rows in test order; images with no
    scored pixel (all ignored) are left out, as in the per-image mean."""
    import csv

    with storage.writing(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PER_IMAGE_COLUMNS)
        for image_id, row in zip(image_ids, counts):
            if sum(row):
                values = scores(np.asarray(row))
                writer.writerow([image_id, *(repr(values[k]) for k in PER_IMAGE_COLUMNS[1:])])
    return path


def _finish(returned: dict, run_dir: str, test_arrays, border_policy: str, params: dict,
            random_weights: bool, name: str) -> TrainingOutcome:
    """Export the tested model, write per-image test scores, draw the sample figure (driver).

    With an object-store ``run_dir`` the files are made locally and uploaded; the outcome
    names them where they were published, so any node can read them back."""
    checkpoint = storage.train_checkpoint_uri(run_dir, returned["tested_checkpoint"])
    tested = storage.join(checkpoint, CHECKPOINT_FILE) if storage.is_remote(checkpoint) else checkpoint
    with storage.staged(run_dir) as folder:
        model_file = export_model(read_checkpoint(storage.fetch(tested)), folder / MODEL_FILE)
        figure = sample_figure(model_file, test_arrays, border_policy, folder / FIGURE_FILE)
        per_image = None
        if returned.get("test_per_image") is not None:
            per_image = write_per_image(returned["test_per_image"], test_arrays.image_ids,
                                        folder / PER_IMAGE_FILE)

    def published(path: Path | None) -> str | None:
        return None if path is None else storage.join(run_dir, path.name)

    return TrainingOutcome(
        name=name, run_dir=run_dir, checkpoint=checkpoint,
        model_file=published(model_file), figure=published(figure),
        test={**returned["test"], "border_policy": border_policy},
        tested_epoch=returned["tested_epoch"], history=returned["history"], params=params,
        random_weights=random_weights, timings=returned.get("timings", {}),
        test_by_policy={policy: {**result, "border_policy": policy}
                        for policy, result in returned.get("test_by_policy", {}).items()},
        per_image_file=published(per_image))


def train_segmentation(config: StudyConfig, *, labels: Any = None, model: str | None = None,
                       model_options: dict[str, Any] | None = None, name: str | None = None,
                       parent_run_id: str | None = None) -> dict[str, Any]:
    """Fit (its epochs on the console as they end), then log one MLflow run; the outcome's
    summary plus ``run_id``."""
    with console.Stage("training", unit="epochs") as stage, \
            epoch_progress(stage, config.train.epochs, epoch_note) as callbacks:
        outcome = fit_segmentation(config, labels=labels, model=model, model_options=model_options,
                                   name=name, callbacks=callbacks)
        miou = f"test mIoU {outcome.test['miou']:.3f}, " if "miou" in outcome.test else ""
        stage.done(f"{miou}test Dice {outcome.test['micro']['dice']:.3f} on {outcome.test['images']} images"
                   if outcome.test.get("images") else "trained (no ground truth to test on)")
    run_id = log_training(config, outcome, parent_run_id=parent_run_id)
    return {**outcome.summary(), "run_id": run_id}


def epoch_note(metrics: dict[str, Any]) -> str:
    """Beside the epoch bar: the latest epoch's train loss and val Dice (against what the run
    validates on); the final test report carries neither and shows nothing."""
    if "train_loss" not in metrics:
        return ""
    if "val_miou" in metrics:
        return f"train loss {metrics['train_loss']:.3f}, val mIoU {metrics['val_miou']:.3f}"
    return f"train loss {metrics['train_loss']:.3f}, val Dice {metrics.get('val_micro_dice', float('nan')):.3f}"


__all__ = ["TrainingOutcome", "fit_segmentation", "train_segmentation", "resolve_weights"]
