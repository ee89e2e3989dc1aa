"""jobs/review_curve.py end to end on tiny synthetic pets: reviewer folders hold the ground truth
of the chosen training images only, every point is a trial of one sweep (MLflow parent + a
child per point), and the curve's table and figure come from those runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import job_module
from PIL import Image

from wsss.data.decode import record_truth
from wsss.data.pets import index
from wsss.metrics import trimap_to_target
from wsss.report.build import build_report


@pytest.mark.slow
def test_review_curve_trains_one_trial_per_point_from_the_chosen_images_truth(ray_local, synthetic_root, tmp_path):
    import mlflow

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "weights_policy": "random",
        "data": {"root": str(synthetic_root), "image_size": 32, "limit": 8},
        "labelers": [{"name": "ellipse"}, {"name": "all_foreground"}],
        "pipeline": {"store": str(tmp_path / "masks")},
        "train": {"model": "unet", "weights": "none", "model_options": {"width": 0.125}, "epochs": 1,
                  "image_size": 32, "batch_size": 8, "bf16": False, "storage": str(tmp_path / "train")},
        "sweep": {"storage": str(tmp_path / "sweep")},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                     "artifact_location": str(tmp_path / "artifacts"), "experiment": "tiny"}}))
    out = tmp_path / "curve"
    code = job_module("review_curve").main(["--config", str(config), "--labels", "ellipse", "--points", "0,50",
                                "--by", "confidence,random", "--seed", "3", "--out", str(out)])
    assert code == 0
    records = {r.image_id: r for r in index(synthetic_root, limit=8).records}
    train = [r for r in records.values() if r.split == "train"]
    for by in ("confidence", "random"):
        folder = out / "reviews" / f"{by}-50"
        chosen = json.loads((folder / "selection.json").read_text())
        ids = [image["image_id"] for image in chosen["images"]]
        assert chosen["by"] == by and len(ids) == round(len(train) / 2)
        assert sorted(p.stem for p in folder.glob("*.png")) == sorted(ids)
        assert all(records[i].split == "train" for i in ids)  # never val or test
        for image_id in ids:
            truth = trimap_to_target(record_truth(records[image_id]), "ignore")
            assert np.array_equal(np.asarray(Image.open(folder / f"{image_id}.png")), truth)
    summary = json.loads((out / "curve.json").read_text())
    rows = {row["run"]: row for row in summary["rows"]}
    assert set(rows) == {"review-gt", "review-0%", "review-confidence-50%", "review-random-50%"}
    assert rows["review-confidence-50%"]["reviewed"] == len(ids) and rows["review-0%"]["reviewed"] == 0
    assert rows["review-random-50%"]["by"] == "random" and rows["review-gt"]["by"] == "full supervision"
    gap = rows["review-gt"]["dice"] - rows["review-0%"]["dice"]
    recovered = (rows["review-random-50%"]["dice"] - rows["review-0%"]["dice"]) / gap if gap else None
    assert rows["review-random-50%"]["recovered"] == (pytest.approx(recovered) if gap else None)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = mlflow.get_run(summary["parent_run_id"])
    assert parent.data.tags.get("stage") == "sweep"
    children = mlflow.search_runs(experiment_names=["tiny"], output_format="list",
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    trained = {run.info.run_name: run for run in children if run.data.tags.get("stage") == "train"}
    assert set(trained) == set(rows)
    for name, row in rows.items():
        assert trained[name].data.metrics["test_micro_dice"] == pytest.approx(row["dice"])
    assert trained["review-random-50%"].data.params["reviewed_by"] == "random"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "review_curve")}
    assert artifacts == {"review_curve/curve.md", "review_curve/curve.json", "review_curve/curve.png"}
    assert "| confidence | 50 % |" in (out / "curve.md").read_text()
    assert 0.0 <= rows["review-confidence-50%"]["replaced_dice"] <= 1.0 and rows["review-gt"]["replaced_dice"] is None
    report = build_report("tiny", tmp_path / "report", f"sqlite:///{tmp_path / 'mlflow.db'}",
                          parent=parent.info.run_id, log=False)
    markdown = report["markdown"].read_text()
    assert "## What a review is worth" in markdown and "| random | 50 % |" in markdown
    assert (tmp_path / "report" / "figures" / "review_curve.png").stat().st_size > 0
    assert 'id="review"' in report["html"].read_text()


def test_the_curves_weak_trials_take_the_studys_self_training_and_full_supervision_does_not(tmp_path):
    from wsss.config import parse_config
    from wsss.sweep.review_curve import ReviewPoint, curve_config

    study = parse_config({"name": "tiny", "weights_policy": "random",
                          "labelers": [{"name": "mix"}], "train": {"rounds": 2, "self_training": "grabcut"}})
    point = ReviewPoint(folder=tmp_path / "confidence-10", replaced_dice=0.5)
    trials = {trial.name: trial for trial in curve_config(study, "mix", {("confidence", 10): point}, 1.0).sweep.trials}
    assert trials["review-gt"].rounds == 1  # full supervision is the plain run
    assert trials["review-0%"].rounds is None and trials["review-confidence-10%"].rounds is None  # the study's 2
    assert study.train.self_training == "grabcut"
