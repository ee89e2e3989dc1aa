"""A user's folder of class-named subfolders and nothing else: the whole smoke sweep runs on it,
registers a model that predicts, and the report says there is nothing to score."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scaled_down_smoke

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder_sweep(ray_local, tmp_path_factory):
    from wsss.config import parse_config
    from wsss.sweep.run import run_sweep

    tmp = tmp_path_factory.mktemp("folders")
    data = scaled_down_smoke(tmp)
    data["data"].update(root=str(tmp / "my-images"), format="imagefolder")
    data["tracking"]["experiment"] = "my-images"
    config = parse_config(data)
    return config, run_sweep(config), tmp


def test_a_sweep_on_class_folders_runs_without_ground_truth(folder_sweep):
    config, result, tmp = folder_sweep
    root = tmp / "my-images"
    assert sorted(p.name for p in root.iterdir())[:2] == ["Abyssinian", "Bengal"]  # class folders only
    assert not list(root.rglob("*.png")) and not (root / "annotations").exists()
    assert not result["failures"] and not result["scored"]
    trained = [row for row in result["rows"] if row["stage"] == "train"]
    assert sorted(row["run"] for row in trained) == ["box-then-mix", "gradcam-0.1"]  # unet-gt: skipped
    assert all(row["dice"] is None for row in trained)
    assert all(np.isfinite(row["val_dice"]) for row in trained)  # against their own labels


def test_the_best_model_is_registered_and_predicts(folder_sweep):
    import mlflow
    from wsss.data.decode import decode_image
    from wsss.data.index import index

    config, result, tmp = folder_sweep
    best = result["best_model"]
    assert best["model"] == "my-images-segmentation" and best["metric"] == "val_micro_dice"
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    model = mlflow.pytorch.load_model("models:/my-images-segmentation@best")
    image = decode_image(index(tmp / "my-images", format="imagefolder").records[0].image_path)
    probabilities = model(image[None]).detach().numpy()
    assert probabilities.shape == (1, *image.shape[:2])  # at the image's own size
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("my-images-segmentation", "best")
    run = client.get_run(version.run_id)
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert any(name.startswith("imagefolder:") for name in inputs)  # the dataset, by fingerprint
    assert any(name.startswith("masks:") for name in inputs)  # and the mask set it trained on


def test_the_report_says_nothing_is_scored(folder_sweep, tmp_path):
    from wsss.report.build import build_report

    config, result, _ = folder_sweep
    report = build_report("my-images", tmp_path / "report", config.tracking.tracking_uri,
                          result["parent_run_id"], log=False)
    page = report["html"].read_text()
    assert "No ground truth in this sweep" in page and "Table 1" not in page
    assert "val Dice (own labels)" in page
