"""MLflow for segmentation training (driver only) and the study's sample figure.

The figure shows a fixed sample (the first test images in index order), one row each:
input | ground truth | prediction | overlay (``wsss.panels``: ground truth green, prediction red).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from wsss import tracking
from wsss.metrics import flat_metrics, trimap_to_target
from wsss.models.checkpoints import load_segmentation, mask_predictor
from wsss.panels import class_map_to_rgb, mask_to_rgb, overlay, save_grid
from wsss.storage import fetch
from wsss.train.labels import ENSEMBLE_JOIN, SELF_TRAINING_PREFIX
from wsss.train.steps import predict_logits

FIGURE_IMAGES = 4
MODEL_VERSION_TAG = "wsss.model_version"  # the registry version of a run's model


def sample_figure(model_file: str | os.PathLike, arrays: Any, border_policy: str,
                  path: str | os.PathLike, count: int = FIGURE_IMAGES) -> Path | None:
    """Draw ``count`` test images with the checkpoint's predictions; None when there are none."""
    import torch

    count = min(count, len(arrays))
    if count == 0:
        return None
    model, _ = load_segmentation(model_file)
    images = arrays.images[:count]
    logits = predict_logits(model, torch.as_tensor(images), torch.device("cpu"))
    if logits.shape[1] > 1:  # several classes: class maps in colour
        rows = [[image, class_map_to_rgb(truth), class_map_to_rgb(prediction)]
                for image, truth, prediction in zip(images, arrays.classmaps[:count],
                                                    logits.argmax(1).numpy().astype(np.uint8))]
        return save_grid(rows, ["input", "ground truth", "prediction"], path,
                         row_labels=list(arrays.image_ids[:count]))
    predictions = logits[:, 0] > 0
    rows = []
    for image, trimap, prediction in zip(images, arrays.trimaps[:count], predictions.numpy()):
        target, predicted = trimap_to_target(trimap, border_policy), prediction.astype(np.uint8)
        rows.append([image, mask_to_rgb(target), mask_to_rgb(predicted),
                     overlay(image, target, predicted)])
    return save_grid(rows, ["input", "ground truth", "prediction", "overlay"], path,
                     row_labels=list(arrays.image_ids[:count]))


def numeric(row: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics row (MLflow metrics are numbers)."""
    return {key: float(value) for key, value in row.items()
            if isinstance(value, numbers.Number) and key != "epoch"}


def log_training(config: Any, outcome: Any, parent_run_id: str | None = None,
                 tags: dict[str, str] | None = None, name: str | None = None) -> str:
    """One MLflow run (a child of ``parent_run_id`` when given) for a ``TrainingOutcome``:
    params, per-epoch metrics (step = epoch), test metrics where the test images have ground
    truth (the configured border policy as ``test_*``, every policy as ``test_<policy>_*``),
    per-image test scores, the dataset and label sources as inputs, the tested model (logged
    and registered, see ``register_model``) and the figure."""
    import mlflow

    tracking.configure(config.tracking)
    params = outcome.params
    title = name or f"train-{params['model']}-{params['labels']}"
    scored = bool(outcome.test.get("images"))
    tags = {"stage": "train", "border_policy": outcome.test.get("border_policy", ""),
            "wsss.scored": str(scored).lower(), **(tags or {})}
    with tracking.run(title, tags=tags, params=params, parent_run_id=parent_run_id,
                      random_weights=outcome.random_weights) as active:
        for row in outcome.history:
            mlflow.log_metrics(numeric(row), step=int(row["epoch"]))
        mlflow.log_metrics({"test_images": outcome.test["images"], "tested_epoch": outcome.tested_epoch})
        if scored:  # no ground truth, no numbers: never NaNs that tables would show as results
            by_policy = {f"test_{policy}_{name}": value
                         for policy, result in getattr(outcome, "test_by_policy", {}).items()
                         for name, value in flat_metrics(result, "").items()}
            mlflow.log_metrics({**flat_metrics(outcome.test, "test_"), **by_policy, **class_metrics(outcome.test)})
        log_lineage(config, params)
        # the files may sit in s3:// train storage: fetch() gives a local copy to log
        mlflow.log_artifact(str(fetch(outcome.model_file)), artifact_path="checkpoint")
        if getattr(outcome, "per_image_file", None):  # test_per_image.csv: the report's worst k
            mlflow.log_artifact(str(fetch(outcome.per_image_file)))
        if outcome.figure:
            mlflow.log_artifact(str(fetch(outcome.figure)), artifact_path="figures")
        if config.tracking.register_model:
            register_model(config, fetch(outcome.model_file))
    return active.info.run_id


def class_metrics(test: dict[str, Any]) -> dict[str, float]:
    """``test_miou``, ``test_iou_<class>`` and the two accuracies of a several-class run ({} for
    a binary one); a class the test set neither has nor got predicted has no IoU and is left out."""
    if "miou" not in test:
        return {}
    per_class = {f"test_iou_{name}": value for name, value in test["class_iou"].items() if value == value}
    return {"test_miou": test["miou"], "test_pixel_accuracy": test["pixel_accuracy"],
            "test_class_accuracy": test["class_accuracy"], **per_class}


def log_lineage(config: Any, params: dict[str, Any]) -> None:
    """The dataset and every label source a run trained on, as MLflow inputs by fingerprint."""
    tracking.log_input(config.data.root, f"{config.data.format}:{Path(config.data.root).name}",
                       params["dataset_fingerprint"], "training")
    for entry in params.get("label_versions", []):
        source, _, version = entry.partition("=")
        digest = version.split("@")[0]
        if digest.startswith(SELF_TRAINING_PREFIX):  # the previous round's models, by content
            models = digest[len(SELF_TRAINING_PREFIX):].split(ENSEMBLE_JOIN)
            for number, model in enumerate(models, 1):
                tracking.log_input(config.train.storage, f"model:{source}" + (f"/{number}" if len(models) > 1 else ""),
                                   model, "labels")
        elif version:  # a mask set: <fingerprint>@<threshold>/<band>
            tracking.log_input(config.pipeline.store, f"masks:{source}", digest, "labels")


def register_model(config: Any, model_file: Path) -> str:
    """Log the tested model as an MLflow pytorch model (images in, probabilities out: see
    ``mask_predictor``) with a signature and an input example, and register it under
    ``tracking.registered_name()``; the new version's number, also set as a run tag."""
    import torch

    import mlflow

    model, payload = load_segmentation(model_file)
    predictor = mask_predictor(model, payload["image_size"])
    example = np.zeros((1, payload["image_size"], payload["image_size"], 3), np.uint8)
    info = mlflow.pytorch.log_model(
        predictor, name="model", input_example=example,
        registered_model_name=config.tracking.registered_name(),
        serialization_format="pickle",  # pt2 export would fix the input size at the example's
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "wsss"])
    version = str(info.registered_model_version)
    mlflow.set_tag(MODEL_VERSION_TAG, version)
    return version
