"""MLflow for segmentation training (driver only) and the study's sample figure.

The figure shows a fixed sample (the first test images in index order), one row each:
input | ground truth | prediction | overlay (ground truth green, prediction red, both yellow).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from wsss.metrics import IGNORE, flat_metrics, trimap_to_target

FIGURE_IMAGES = 4


def overlay(image: np.ndarray, target: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Image dimmed, ground-truth foreground in green, predicted foreground in red."""
    picture = image.astype(np.float32) * 0.5
    picture[..., 1] += 127.0 * (target == 1)
    picture[..., 0] += 127.0 * prediction.astype(bool)
    return picture.clip(0, 255).astype(np.uint8)


def _show_target(target: np.ndarray) -> np.ndarray:
    """{0, 1, 255} -> grey levels: background black, pet white, ignored mid-grey."""
    return np.where(target == IGNORE, 128, target.astype(np.int32) * 255).astype(np.uint8)


def sample_figure(model_file: str | os.PathLike, arrays: Any, border_policy: str,
                  path: str | os.PathLike, count: int = FIGURE_IMAGES) -> Path | None:
    """Draw ``count`` test images with the checkpoint's predictions; None when there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from wsss.models.segmentation import load_segmentation
    from wsss.training_steps import predict_logits

    count = min(count, len(arrays))
    if count == 0:
        return None
    model, _ = load_segmentation(model_file)
    images = arrays.images[:count]
    predictions = (predict_logits(model, torch.as_tensor(images), torch.device("cpu"))[:, 0] > 0)
    figure, axes = plt.subplots(count, 4, figsize=(10, 2.6 * count), squeeze=False)
    for row in range(count):
        target = trimap_to_target(arrays.trimaps[row], border_policy)
        prediction = predictions[row].numpy()
        panels = (images[row], _show_target(target), prediction.astype(np.uint8) * 255,
                  overlay(images[row], target, prediction))
        for column, (axis, panel) in enumerate(zip(axes[row], panels)):
            axis.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=255)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(("input", "ground truth", "prediction", "overlay")[column])
        axes[row][0].set_title(arrays.image_ids[row], fontsize=8, loc="left")
    figure.tight_layout()
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    figure.savefig(temporary, dpi=80)
    plt.close(figure)
    os.replace(temporary, path)
    return path


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

    from wsss import tracking
    from wsss.storage import fetch

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
