"""Train the 37-breed classifier that every CAM reads, on Ray Train (DDP, CPU or GPU).

For images of several classes each it is multi-label (a sigmoid per class, ``wsss.train.multilabel``),
kept by validation mAP; otherwise one softmax over the classes, kept by validation accuracy.

``run_classifier(config)`` decodes the splits once (cached), fits a ``TorchTrainer`` whose
workers read Ray Data shards, keeps the best checkpoint by validation accuracy, measures test
accuracy, logs one MLflow run and writes ``<classifier.storage>/<name>/classifier.pt``.
``<name>`` is the backbone plus a fingerprint of the classifier config and the dataset, so a
rerun of the same config reuses the finished classifier, or resumes an interrupted fit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from wsss import console, storage, tracking
from wsss.config import ConfigError, StudyConfig
from wsss.data.prepare import prepare_dataset
from wsss.data.transforms import batch_to_input
from wsss.identity import stable_hash
from wsss.labelers.registry import get_labeler_class
from wsss.models.classifier import build_classifier, check_classifier, save_classifier
from wsss.train import multilabel
from wsss.train.classifier_worker import train_loop
from wsss.train.common import (
    arrays_dataset,
    autocast,
    data_config,
    decoded_splits,
    load_state,
    metrics_history,
    run_config,
    scaling_config,
    shuffled_order,
)
from wsss.train.progress import epoch_progress
from wsss.train.settings import ClassifierSettings

CHECKPOINT_NAME = "classifier.pt"


# ---- worker side ----------------------------------------------------------------------------


def accuracy(model, images, labels, batch_size: int, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on N x S x S x 3 uint8 ``images``."""
    import torch

    model.to(device).eval()
    correct = 0
    with torch.no_grad(), autocast(torch.device(device)):
        for start in range(0, len(labels), batch_size):
            batch = torch.tensor(images[start:start + batch_size], device=device)
            predicted = model(batch_to_input(batch, train=False)).float().argmax(1).cpu()
            correct += int((predicted.numpy() == labels[start:start + batch_size]).sum())
    return correct / max(len(labels), 1)


def _test_scores(checkpoint, backbone: str, classes: int, images, labels, batch_size: int,
                 targets=None) -> dict[str, float]:
    """Ray task body: the checkpoint's model on the test arrays (GPU when one is assigned):
    {"accuracy"}, plus {"map", "f1"} (and exact-match accuracy) given multi-label ``targets``."""
    import torch

    model = build_classifier(backbone, "none", classes)
    model.load_state_dict(load_state(checkpoint)["model"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if targets is not None:
        return multilabel.test_scores(model, images, targets, batch_size, device)
    return {"accuracy": accuracy(model, images, labels, batch_size, device)}


# ---- driver side ----------------------------------------------------------------------------


def check_classifier_config(config: StudyConfig) -> None:
    """Refuse, before any work, what cannot run: random init unless weights_policy is random,
    and Train's in-process mode (num_workers 0), which keeps no checkpoints."""
    if config.classifier.weights == "none" and config.weights_policy != "random":
        raise ConfigError(
            "classifier.weights is 'none' (random init) but weights_policy is "
            f"{config.weights_policy!r}; set weights_policy: random (smoke runs and tests) or "
            "classifier.weights: imagenet | <checkpoint path>")
    if config.classifier.scaling.num_workers < 1:
        raise ConfigError("classifier.scaling.num_workers must be at least 1 (got 0: Ray "
                          "Train's local mode keeps no checkpoints to pick the best from)")


def classifier_fingerprint(config: StudyConfig, dataset_fingerprint: str) -> str:
    """Hash of what decides the trained weights: the classifier section and the dataset."""
    ignored = {"storage": True, "checkpoint": True, "eval_batch_size": True,
               "max_failures": True, "scaling": {"cpus_per_worker", "trainer"}}  # where/how fast, not what
    section = config.classifier.model_dump(mode="json", exclude=ignored)
    synth = config.data.synthetic.model_dump() if config.data.synthetic else None
    return stable_hash({"classifier": section, "dataset": dataset_fingerprint, "synthetic": synth})


def classifier_run_name(config: StudyConfig, fingerprint: str) -> str:
    return f"{config.classifier.backbone.replace('/', '_')}-{fingerprint}"


def classifier_path(config: StudyConfig, fingerprint: str) -> Path | str:
    """``<classifier.storage>/<backbone>-<fingerprint>/classifier.pt`` (also the Train run dir);
    a URI string when the storage is an object store (``s3://...``)."""
    name = classifier_run_name(config, fingerprint)
    if storage.is_remote(config.classifier.storage):
        return storage.join(config.classifier.storage, name, CHECKPOINT_NAME)
    return Path(config.classifier.storage) / name / CHECKPOINT_NAME


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata ``save_classifier`` stored in a classifier checkpoint."""
    import torch

    payload = torch.load(storage.fetch(path), map_location="cpu", weights_only=False)
    return {"backbone": payload.get("backbone"), **payload.get("meta", {})}


def _summary(path: Path | str, meta: dict[str, Any], reused: bool) -> dict[str, Any]:
    return {"checkpoint": str(path), "test_accuracy": meta.get("test_accuracy"),
            "val_accuracy": meta.get("val_accuracy"), "run_id": meta.get("run_id"),
            "reused": reused, **{key: meta[key] for key in ("test_map", "best_val_map") if key in meta}}


def epoch_note(metrics: dict[str, Any]) -> str:
    """What the console shows beside the epoch bar: the latest epoch's loss and accuracy (mAP
    for a multi-label classifier)."""
    if "val_map" in metrics:
        return f"train loss {metrics['train_loss']:.3f}, val mAP {metrics['val_map']:.3f}"
    return f"train loss {metrics['train_loss']:.3f}, val accuracy {metrics['val_accuracy']:.3f}"


def selection_metric(multi_label: bool) -> str:
    """The validation metric the best checkpoint is kept by."""
    return multilabel.SELECTION_METRIC if multi_label else "val_accuracy"


def _columns(arrays, classes: int, multi_label: bool) -> dict[str, Any]:
    columns = {"image": arrays.images, "label": arrays.labels}
    if multi_label:
        columns["targets"] = arrays.multi_hot(classes)
    return columns


def _fit(config: StudyConfig, splits: dict[str, Any], classes: int, storage_root: str, name: str,
         stage: console.Stage):
    from ray.train.torch import TorchTrainer

    section = config.classifier
    weights = section.weights
    if weights not in ("none", "imagenet"):
        weights = str(Path(weights).resolve())  # workers run in another directory
    multi_label = splits["train"].label_sets is not None  # images of several classes each
    columns = {name: _columns(splits[name], classes, multi_label) for name in ("train", "val")}
    with epoch_progress(stage, section.epochs, epoch_note) as callbacks:
        trainer = TorchTrainer(
            train_loop,
            train_loop_config=ClassifierSettings(
                backbone=section.backbone, weights=weights, lr=section.lr, epochs=section.epochs,
                batch_size=section.batch_size, eval_batch_size=section.eval_batch_size, seed=section.seed,
                num_classes=classes, multi_label=multi_label),
            scaling_config=scaling_config(section.scaling),
            run_config=run_config(storage_root, name, metric=selection_metric(multi_label),
                                  max_failures=section.max_failures, callbacks=callbacks),
            datasets={"train": arrays_dataset(columns["train"],
                                              shuffled_order(len(splits["train"]), section.seed)),
                      "val": arrays_dataset(columns["val"])},
            dataset_config=data_config(("train",)),
        )
        return trainer.fit()


def _measure_test(config: StudyConfig, checkpoint, classes: int, test) -> dict[str, float]:
    """Test scores of the checkpoint ({} without test images, e.g. test_fraction 0)."""
    import ray

    if not len(test):
        return {}
    scaling = config.classifier.scaling
    task = ray.remote(_test_scores).options(num_cpus=scaling.cpus_per_worker,
                                            num_gpus=1 if scaling.use_gpu else 0)
    targets = test.multi_hot(classes) if test.label_sets is not None else None
    with console.Stage("test accuracy") as stage:  # a full test split takes a while on CPUs
        scores = ray.get(task.remote(checkpoint, config.classifier.backbone, classes, test.images,
                                     test.labels, config.classifier.eval_batch_size, targets))
        shown = (f"mAP {scores['map']:.3f}, exact-match accuracy {scores['accuracy']:.3f}" if "map" in scores
                 else f"{scores['accuracy']:.3f}")
        stage.done(f"{shown} on {len(test)} images")
    return scores


def _log_and_save(config: StudyConfig, path: Path | str, model, history: list[dict],
                  meta: dict[str, Any], parent_run_id: str | None = None) -> str:
    """One MLflow run (params, per-epoch metrics, the checkpoint); then publish ``path``."""
    import mlflow

    section = config.classifier
    tracking.configure(config.tracking)
    params = {"backbone": section.backbone, "weights": section.weights, "lr": section.lr,
              "epochs": section.epochs, "batch_size": section.batch_size,
              "image_size": section.image_size, "seed": section.seed,
              "scaling": section.scaling.model_dump(), **{k: meta[k] for k in (
                  "fingerprint", "dataset_fingerprint", "train_images", "val_images",
                  "test_images")}}
    with tracking.run(f"classifier-{section.backbone}", tags={"stage": "classifier"},
                      params=params, random_weights=section.weights == "none",
                      parent_run_id=parent_run_id) as active:
        for row in history:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        scores = {"test_accuracy": meta["test_accuracy"], "best_val_accuracy": meta["val_accuracy"],
                  **{key: meta.get(key) for key in ("test_map", "test_f1", "best_val_map")}}
        mlflow.log_metrics({k: v for k, v in scores.items() if v is not None})
        remote = storage.is_remote(path)
        staging = (Path(tempfile.mkdtemp(prefix="wsss-classifier-")) if remote
                   else path.with_name(f".staging-{os.getpid()}"))
        try:
            save_classifier(model, staging / CHECKPOINT_NAME, section.backbone,
                            run_id=active.info.run_id, **meta)
            mlflow.log_artifact(str(staging / CHECKPOINT_NAME))
            # published once logged, never before (an object-store PUT is whole, like a rename)
            storage.upload(staging / CHECKPOINT_NAME, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return active.info.run_id


def run_classifier(config: StudyConfig, parent_run_id: str | None = None) -> dict[str, Any]:
    """Train (or reuse, or resume) the breed classifier; {checkpoint, test/val accuracy, run_id}."""
    check_classifier_config(config)
    with console.Stage("classifier", unit="epochs") as stage:  # the bar counts epochs as they end
        summary = _classifier(config, parent_run_id, stage)
        how = "reused" if summary["reused"] else f"trained {config.classifier.backbone}"
        scores = ", ".join(f"{name} accuracy {summary[f'{name}_accuracy']:.3f}" for name in ("val", "test")
                           if summary.get(f"{name}_accuracy") is not None)
        if summary.get("test_map") is not None:  # several classes: accuracy is exact-match
            scores = f"val mAP {summary['best_val_map']:.3f}, test mAP {summary['test_map']:.3f}, exact-match {scores}"
        stage.done(f"{how} {summary['checkpoint']}" + (f" ({scores})" if scores else ""))
    return summary


def _classifier(config: StudyConfig, parent_run_id: str | None, stage: console.Stage) -> dict[str, Any]:
    import torch

    section = config.classifier
    if section.checkpoint is not None:  # the configured one, as is
        check_classifier(section.checkpoint)  # fails clearly when missing or foreign
        return _summary(section.checkpoint, read_meta(section.checkpoint), True)
    dataset = prepare_dataset(config.data)
    fingerprint = classifier_fingerprint(config, dataset.fingerprint())
    path = classifier_path(config, fingerprint)
    if storage.is_file(path) and read_meta(path).get("fingerprint") == fingerprint:
        return _summary(path, read_meta(path), True)  # same config and dataset
    check_classes(dataset, "train a classifier")
    with torch.device("meta") if section.weights == "none" else contextlib.nullcontext():
        build_classifier(section.backbone, section.weights, len(dataset.classes))  # fails now if it must
    splits = decoded_splits(config, dataset, section.image_size, min_train=1)
    result = _fit(config, splits, len(dataset.classes), storage.absolute(section.storage),
                  classifier_run_name(config, fingerprint), stage)
    multi_label = dataset.pixel_classes is not None
    best = result.get_best_checkpoint(selection_metric(multi_label), "max")
    best_metrics = next(m for c, m in result.best_checkpoints if c.path == best.path)
    test = _measure_test(config, best, len(dataset.classes), splits["test"])
    meta = {"fingerprint": fingerprint, "dataset_fingerprint": dataset.fingerprint(),
            "image_size": section.image_size, "val_accuracy": best_metrics["val_accuracy"],
            "best_epoch": best_metrics["epoch"], "test_accuracy": test.get("accuracy"),
            "classes": dataset.classes, "multi_label": multi_label,
            **({"best_val_map": best_metrics["val_map"], "test_map": test.get("map"),
                "test_f1": test.get("f1")} if multi_label else {}),
            **{f"{name}_images": len(splits[name]) for name in ("train", "val", "test")}}
    with torch.device("meta"):  # shapes only: the weights are the checkpoint's, mapped from its file
        model = build_classifier(section.backbone, "none", len(dataset.classes))
    model.load_state_dict(load_state(best, mmap=True)["model"], assign=True)  # optimizer's: not read
    run_id = _log_and_save(config, path, model, metrics_history(result), meta, parent_run_id)
    return _summary(path, {**meta, "run_id": run_id}, False)


# ---- command line ---------------------------------------------------------------------------


def needs_classifier(config: StudyConfig, labeler_ids: list[str] | None = None) -> bool:
    """True when a selected labeler builds on a CAM (and so on the breed classifier)."""
    specs = [config.labeler(key) for key in labeler_ids] if labeler_ids else config.labelers
    for spec in specs:
        labeler = get_labeler_class(spec.name)(spec.params)
        if labeler.stage == "heatmap" or labeler.heatmap_ref() is not None:
            return True
    return False


def check_classes(dataset: Any, purpose: str) -> None:
    """Refuse a dataset of one class where a classifier is needed: CAMs show what tells classes
    apart, and with one class there is nothing to tell apart (nor a classifier to train)."""
    if len(dataset.classes) < 2:
        raise ConfigError(
            f"cannot {purpose}: the dataset at {dataset.root} has {len(dataset.classes)} class "
            f"({', '.join(dataset.classes) or 'none'}); the CAM family (cam, gradcam, gradcampp and the "
            f"labelers built on their heatmaps) needs a classifier of at least 2 classes. With one "
            f"class, use labelers that need none: box, grabcut, mix or sam2_box with "
            f"box_source: dataset (given boxes), sam2_center, all_foreground, ellipse")


def find_classifier(config: StudyConfig, dataset: Any) -> str | None:
    """The classifier this study's CAMs are made with, without training one: the configured
    checkpoint, else the one trained for this config and dataset (None when there is none)."""
    if config.classifier.checkpoint:
        return config.classifier.checkpoint
    path = classifier_path(config, classifier_fingerprint(config, dataset.fingerprint()))
    return str(path) if storage.is_file(path) else None


def resolve_classifier(config: StudyConfig, labeler_ids: list[str] | None = None,
                       parent_run_id: str | None = None) -> str | None:
    """The classifier checkpoint the CAMs use: configured, or trained (reused when done)."""
    if not needs_classifier(config, labeler_ids):
        return None
    check_classes(prepare_dataset(config.data), "make CAM pseudo-masks")

    checkpoint = config.classifier.checkpoint
    if not checkpoint:
        checkpoint = str(run_classifier(config, parent_run_id)["checkpoint"])
    check_classifier(checkpoint)  # a missing or damaged file fails here, before any Ray work
    return checkpoint
