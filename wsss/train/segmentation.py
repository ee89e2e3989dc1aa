"""Train a segmentation network (UNet, DeepLabV3, FCN) from a study config.

- ``fit_segmentation(config, labels=..., model=...)`` decodes the splits once (cached), builds
  the label schedule's targets, fits the loop (``wsss.train.worker``): on one worker in the
  process that holds it (``wsss.train.local``), on several in a Ray Train ``TorchTrainer``; and
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from wsss import console, storage
from wsss.config.base import ConfigError
from wsss.config.sections import resolve_select
from wsss.config.study import StudyConfig
from wsss.data.arrays import RowsById
from wsss.data.prepare import prepare_dataset
from wsss.identity import stable_hash
from wsss.metrics import flat_metrics, scores
from wsss.models.checkpoints import export_model, read_checkpoint
from wsss.models.segmentation import NAMED_WEIGHTS, ModelSpec, architecture, uses_random_weights
from wsss.models.weights_files import CHECKPOINT_FILE
from wsss.tracking import git_commit
from wsss.train.common import (
    data_config,
    decoded_splits,
    run_config,
    scaling_config,
)
from wsss.train.datasets import build_datasets, test_policies
from wsss.train.labels import (
    SelfTrainingSource,
    make_schedule,
    own_classes,
)
from wsss.train.local import fit_here, fit_in_task
from wsss.train.progress import epoch_progress
from wsss.train.settings import FailOnce, TrainSettings
from wsss.train.study_labels import agreement_voters, label_schedule, reviewed_params, with_reviewed
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
    timings: dict[str, float]  # rank 0's setup, per-epoch (train + val + checkpoint), test;
    # work_seconds: epochs and tests of every round (the rest of a trial is its overhead)
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
        entry = architecture(model)
    except ValueError as error:
        raise ConfigError(f"train.model: {error}") from None
    try:
        entry.check_weights(model, weights)
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


def run_name(config: StudyConfig, model: ModelSpec, schedule, dataset_fingerprint: str) -> str:
    """``<model>-<fingerprint>`` of the train section, labels (mask-set fingerprints included),
    model options and dataset: a changed input never resumes a stale run. Which trainer runs
    one worker changes no result, so it is not part of the name; ``edge_band`` is, where set
    (at 0 the names of runs made before it existed stay what they were), and so are
    ``self_training`` and its seeds where it is not the band, and ``self_training_models``
    where it is not 1."""
    section = config.train.model_dump(mode="json", exclude={"storage": True, "name": True,
                                                              "max_failures": True, "labels": True,
                                                              "model": True, "scaling": {"trainer"}})
    if not section["edge_band"]:
        del section["edge_band"]
    if section["self_training"] == "band":  # the default: names made before it stay
        del section["self_training"], section["self_training_seeds"]
    if section["self_training_models"] == 1:
        del section["self_training_models"]
    data = config.data.model_dump(mode="json", include={"image_size", "border_policy",
                                                        "val_fraction", "split_seed", "limit"})
    digest = stable_hash({"train": section, "data": data, **model.as_dict(),
                          "labels": schedule.describe(), "sources": schedule.versions(),
                          "dataset": dataset_fingerprint, "threshold": config.train.threshold})
    return f"{model.name.replace('/', '_')}-{digest}"


def _settings(config: StudyConfig, model: ModelSpec, weights: str, schedule,
              class_names: tuple[str, ...] | None, test_images: int) -> TrainSettings:
    section = config.train
    workers = max(1, section.scaling.num_workers)
    selection = resolve_select(section.select, [source.name for source in schedule.sources])
    fail = os.environ.get(FAIL_ONCE_ENV)
    epoch, _, marker = (fail or "").partition(":")
    return TrainSettings(
        model=model, weights=weights, select=selection,
        val_columns=("target",) + (("gt_target",) if section.val_gt_metrics and selection != "val_gt" else ()),
        lr=section.lr, epochs=section.epochs,
        # train.batch_size is the global batch (the study's 64 on one GPU): split it
        batch_size=max(2, math.ceil(section.batch_size / workers)),
        eval_batch_size=section.eval_batch_size, seed=section.seed, bf16=section.bf16,
        image_size=section.image_size, border_policy=config.data.border_policy,
        labels=schedule.describe(), schedule=tuple(tuple(step) for step in schedule.steps),
        source_names=tuple(source.name for source in schedule.sources), test_images=test_images,
        test_policies=test_policies(config.data.border_policy, class_names is not None),
        class_names=class_names, background=config.data.background,
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
    keep = ("weights", "labels", "lr", "epochs", "eval_batch_size", "seed", "bf16", "image_size",
            "border_policy", "select")
    return {"model": settings.model.name, "model_options": dict(settings.model.options),
            **{key: getattr(settings, key) for key in keep}, "name": name,
            "batch_size": config.train.batch_size, "worker_batch_size": settings.batch_size,
            "schedule": _schedule_steps(settings), "threshold": config.train.threshold,
            "scaling": config.train.scaling.model_dump(), "weights_policy": config.weights_policy,
            "random_weights": random_weights, "git_commit": git_commit(),
            "dataset_fingerprint": dataset_fingerprint,
            "val_target": "ground truth" if settings.select == "val_gt" else
            f"labels {settings.source_name(settings.schedule[-1][1])}",
            "val_gt_metrics": config.train.val_gt_metrics,
            "reviewed": config.train.reviewed, "reviewed_weight": config.train.reviewed_weight,
            "edge_band": config.train.edge_band, "self_training": config.train.self_training,
            "self_training_models": config.train.self_training_models,
            **{f"{split}_images": len(splits[split]) for split in ("train", "val", "test")}}


def self_training_seeds(section: Any) -> tuple[float, float, float] | None:
    """GrabCut's seeds for the next round's labels (``train.self_training: grabcut``), or None
    for the band."""
    return tuple(section.self_training_seeds) if section.self_training == "grabcut" else None


def trains_in_process(config: StudyConfig) -> bool:
    """Whether this run's one worker trains without Ray Train (``wsss.train.local``): one
    worker, ``trainer: auto`` and checkpoints in a folder (Train uploads to object stores)."""
    scaling = config.train.scaling
    return (scaling.num_workers == 1 and scaling.trainer == "auto"
            and not storage.is_remote(config.train.storage))


def fit_segmentation(config: StudyConfig, *, labels: Any = None, model: str | None = None,
                     model_options: dict[str, Any] | None = None, name: str | None = None,
                     callbacks: list | None = None, here: bool = False) -> TrainingOutcome:
    """Train and test the best checkpoint; see the module docstring.

    ``labels`` overrides ``train.labels`` (a key, a schedule, or ``wsss.train.labels``
    objects); ``model`` and ``model_options`` (e.g. ``{"width": 0.25}`` for a narrow UNet)
    override ``train.model`` and its options as ``TrainConfig.model_spec`` says; ``callbacks``
    (``ray.train.UserCallback``s) see every report. Where ``trains_in_process``, the one
    worker runs in this process with ``here`` (a sweep trial, which holds the worker's
    resources) or else in one Ray task; otherwise Ray Train runs it.
    """
    section = config.train
    spec = section.model_spec(model, model_options)
    weights, random_weights = resolve_weights(config, spec.name)
    spec.create(weights)  # unknown options, missing weights: fail now
    dataset = prepare_dataset(config.data)
    splits = decoded_splits(config, dataset, section.image_size, min_train=2)
    schedule = label_schedule(config, labels, dataset, splits)
    name = name or section.name or run_name(config, spec, schedule, dataset.fingerprint())
    run = RunInputs(config, spec, weights, splits, dataset, random_weights, callbacks, here)
    models = section.self_training_models if section.rounds > 1 else 1
    outcome, files = fit_models(run, schedule, name if section.rounds == 1 else f"{name}-round1", models)
    for round_number in range(2, section.rounds + 1):  # self-training: the last round's models' labels
        images = RowsById([splits["train"], splits["val"]], "images")
        source = SelfTrainingSource(f"round{round_number - 1}", files,
                                    tuple(section.self_training_band), images, config.data.background,
                                    own_classes(dataset), self_training_seeds(section))
        schedule = with_reviewed(config, make_schedule([(section.epochs, source)]), dataset,
                                 splits["train"].image_ids)
        last = round_number == section.rounds
        outcome, files = fit_models(run, schedule, name if last else f"{name}-round{round_number}",
                                    1 if last else models, previous=outcome)
    return outcome


def fit_models(run: RunInputs, schedule: Any, name: str, count: int,
               previous: TrainingOutcome | None = None) -> tuple[TrainingOutcome, tuple[str, ...]]:
    """One round: ``fit_round`` at ``train.seed`` (the outcome the run goes on from) and, for
    ``count`` > 1, at the next ``count - 1`` seeds too (runs ``<name>-seed<s>``), whose models
    only join the next round's labels; every model's file, in seed order. The round's work
    seconds count every model's."""
    outcome = fit_round(run, schedule, name, previous)
    files, seed = [outcome.model_file], run.config.train.seed
    before = previous.timings.get("work_seconds", 0.0) if previous else 0.0
    for offset in range(1, count):
        train = run.config.train.model_copy(update={"seed": seed + offset})
        other = fit_round(replace(run, config=run.config.model_copy(update={"train": train})), schedule,
                          f"{name}-seed{seed + offset}", previous)
        files.append(other.model_file)
        outcome.timings["work_seconds"] += other.timings.get("work_seconds", 0.0) - before
    return outcome, tuple(files)


@dataclass(frozen=True)
class RunInputs:
    """What every round of a run trains with: the study, the model (with its options) and its
    weights, the decoded splits and the dataset they came from."""

    config: StudyConfig
    model: ModelSpec
    weights: str
    splits: dict
    dataset: Any
    random_weights: bool
    callbacks: list | None = None
    here: bool = False  # in-process training runs in this very process (``fit_segmentation``)


def fit_round(run: RunInputs, schedule: Any, name: str, previous: TrainingOutcome | None = None) -> TrainingOutcome:
    """One training run on ``schedule``, tested; ``previous`` is the round it learnt from."""
    from ray.train.torch import TorchTrainer

    config, splits, dataset, section = run.config, run.splits, run.dataset, run.config.train
    settings = _settings(config, run.model, run.weights, schedule, dataset.pixel_classes, len(splits["test"]))
    storage_root = storage.absolute(section.storage)  # a folder, or a URI such as s3://...
    here = trains_in_process(config)
    datasets = build_datasets(schedule, splits, config, settings.class_names is not None,
                              agreement_voters(config, dataset), here=here)
    if here:
        options = {"use_gpu": section.scaling.use_gpu, "metric": settings.best_metric,
                   "max_failures": section.max_failures, "callbacks": run.callbacks or []}
        run_dir = storage.join(storage_root, name)
        returned = (fit_here(train_loop, settings, run_dir, datasets, **options) if run.here else
                    fit_in_task(train_loop, settings, run_dir, datasets,
                                cpus=section.scaling.cpus_per_worker, **options))
    else:
        trainer = TorchTrainer(
            train_loop, train_loop_config=settings, scaling_config=scaling_config(section.scaling),
            run_config=run_config(storage_root, name, metric=settings.best_metric,
                                  max_failures=section.max_failures, callbacks=run.callbacks),
            datasets=datasets, dataset_config=data_config(("train",)))
        returned = trainer.fit().return_value
    params = {**_params(config, settings, splits, dataset.fingerprint(), run.random_weights, name),
              "label_versions": schedule.versions(), "rounds": section.rounds,
              **reviewed_params(schedule),
              "round": 1 if previous is None else previous.params["round"] + 1}
    timings = returned.setdefault("timings", {})
    timings["work_seconds"] = sum(value for key, value in timings.items()  # every round's
                                  if key.startswith("epoch_") or key == "test_seconds"
                                  ) + (previous.timings.get("work_seconds", 0.0) if previous else 0.0)
    if previous is not None:  # the whole self-training run's history, round by round
        returned["history"] = previous.history + [{**row, "epoch": row["epoch"] + len(previous.history)}
                                                  for row in returned["history"]]
    return _finish(returned, storage.join(storage_root, name), splits["test"],
                   config.data.border_policy, params, run.random_weights, name)


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
        tested = outcome.test.get("images")
        stage.done(f"{headline(outcome.test, config.data.background, 3, detail=False)} on {tested} images"
                   if tested else "trained (no ground truth to test on)")
    run_id = log_training(config, outcome, parent_run_id=parent_run_id)
    return {**outcome.summary(), "run_id": run_id,
            "headline": headline(outcome.test, config.data.background, 4) if outcome.test.get("images") else ""}


def headline(test: dict[str, Any], background: bool = True, digits: int = 4, detail: bool = True) -> str:
    """The test scores a person reads first: the mIoU over the classes where there are several,
    and the foreground's micro Dice (and IoU, with ``detail``) where the data has a background
    (without one every pixel is some class's, so the foreground's Dice is 1 and says nothing)."""
    parts = [f"test mIoU {test['miou']:.{digits}f}"] if "miou" in test else []
    if background or not parts:
        dice = test["micro"]["dice"]
        parts.append(f"test micro Dice {dice:.{digits}f}, IoU {test['micro']['iou']:.{digits}f}" if detail
                     else f"test Dice {dice:.{digits}f}")
    return ", ".join(parts)


def epoch_note(metrics: dict[str, Any]) -> str:
    """Beside the epoch bar: the latest epoch's train loss and val Dice (against what the run
    validates on); the final test report carries neither and shows nothing."""
    if "train_loss" not in metrics:
        return ""
    if "val_miou" in metrics:
        return f"train loss {metrics['train_loss']:.3f}, val mIoU {metrics['val_miou']:.3f}"
    return f"train loss {metrics['train_loss']:.3f}, val Dice {metrics.get('val_micro_dice', float('nan')):.3f}"


__all__ = ["TrainingOutcome", "fit_segmentation", "train_segmentation", "resolve_weights",
           "trains_in_process"]
