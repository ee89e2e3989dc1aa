"""MLflow for segmentation training (driver only) and the study's sample figure.

The figure shows a fixed sample (the first test images in index order), one row each:
input | ground truth | prediction | overlay (``wsss.figures``: ground truth green, prediction red).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from wsss import tracking
from wsss.figures import mask_to_rgb, overlay, save_grid
from wsss.metrics import flat_metrics, trimap_to_target
from wsss.models.segmentation import load_segmentation
from wsss.storage import fetch
from wsss.train.steps import predict_logits

FIGURE_IMAGES = 4


def sample_figure(model_file: str | os.PathLike, arrays: Any, border_policy: str,
                  path: str | os.PathLike, count: int = FIGURE_IMAGES) -> Path | None:
    """Draw ``count`` test images with the checkpoint's predictions; None when there are none."""
    import torch

    count = min(count, len(arrays))
    if count == 0:
        return None
    model, _ = load_segmentation(model_file)
    images = arrays.images[:count]
    predictions = (predict_logits(model, torch.as_tensor(images), torch.device("cpu"))[:, 0] > 0)
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
    params, per-epoch metrics (step = epoch), test metrics (the configured border policy as
    ``test_*``, every policy as ``test_<policy>_*``), per-image test scores, the tested model
    and the figure."""
    import mlflow

    tracking.configure(config.tracking)
    params = outcome.params
    title = name or f"train-{params['model']}-{params['labels']}"
    tags = {"stage": "train", "border_policy": outcome.test.get("border_policy", ""), **(tags or {})}
    with tracking.run(title, tags=tags, params=params, parent_run_id=parent_run_id,
                      random_weights=outcome.random_weights) as active:
        for row in outcome.history:
            mlflow.log_metrics(numeric(row), step=int(row["epoch"]))
        by_policy = {f"test_{policy}_{name}": value
                     for policy, result in getattr(outcome, "test_by_policy", {}).items()
                     for name, value in flat_metrics(result, "").items()}
        mlflow.log_metrics({**flat_metrics(outcome.test, "test_"), **by_policy,
                            "test_images": outcome.test["images"],
                            "tested_epoch": outcome.tested_epoch})
        # the files may sit in s3:// train storage: fetch() gives a local copy to log
        mlflow.log_artifact(str(fetch(outcome.model_file)), artifact_path="checkpoint")
        if getattr(outcome, "per_image_file", None):  # test_per_image.csv: the report's worst k
            mlflow.log_artifact(str(fetch(outcome.per_image_file)))
        if outcome.figure:
            mlflow.log_artifact(str(fetch(outcome.figure)), artifact_path="figures")
    return active.info.run_id
