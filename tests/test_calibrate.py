"""jobs/calibrate.py: thresholds and seeds scored on the development half only."""

from __future__ import annotations

from conftest import job_module

from wsss.config import parse_config
from wsss.data.pets import index
from wsss.models.classifier import build_classifier, save_classifier


def test_every_setting_is_scored_on_trainval_and_never_on_test(synthetic_root, tmp_path, monkeypatch):
    import torch

    calibrate = job_module("calibrate")
    torch.manual_seed(0)
    checkpoint = tmp_path / "classifier.pt"
    save_classifier(build_classifier("resnet18", "none"), checkpoint, "resnet18", image_size=64)
    config = parse_config({"weights_policy": "random", "data": {"root": str(synthetic_root),
                                                                 "image_size": 64, "limit": 3}})
    records = index(synthetic_root, limit=3).split("trainval")
    read = []
    real_decode = calibrate.decode_records
    monkeypatch.setattr(calibrate, "decode_records", lambda rs, *a, **k: read.extend(rs) or real_decode(rs, *a, **k))
    rows = calibrate.calibrate(config, str(checkpoint), records)
    assert {r.split for r in read} == {"train", "val"}
    methods = {(row["view"], row["method"]) for row in rows}
    for view in calibrate.VIEWS:
        assert (view, "cam @ 0.5") in methods and (view, "grabcut (seeds 0.3/0.7)") in methods
        assert (view, "grabcut (box) @ 0.2") in methods and (view, "box @ 0.3") in methods
        assert (view, "imagenet_cam @ 0.3") in methods  # the ImageNet classifier's own map
        assert (view, "grabcut (seeds 0.3/0.7) on imagenet_cam") in methods
    assert ("-", "ellipse") in methods
    assert all(0.0 <= row["dice"] <= 1.0 for row in rows)


def test_without_a_trained_classifier_it_says_what_to_run(synthetic_root, tmp_path, capsys):
    config = tmp_path / "study.yaml"
    config.write_text(f"data: {{root: {synthetic_root}, image_size: 64}}\n"
                      f"classifier: {{storage: {tmp_path / 'none'}}}\n")
    import sys

    before = sys.stderr
    assert job_module("calibrate").main(["--config", str(config)]) == 2
    assert "wsss classify --config" in capsys.readouterr().err
    assert sys.stderr is before  # the console is handed back: later output is not swallowed


def test_self_training_seeds_are_scored_on_trainval_from_a_models_probabilities(synthetic_root, tmp_path,
                                                                                 monkeypatch, capsys):
    import torch

    from wsss.models.checkpoints import export_model
    from wsss.models.segmentation import create_model
    from wsss.models.weights_files import CHECKPOINT_FORMAT

    calibrate = job_module("calibrate")
    torch.manual_seed(0)
    model = create_model("unet", "none", width=0.125)
    file = export_model({"format": CHECKPOINT_FORMAT, "model_name": "unet", "model_options": {"width": 0.125},
                         "image_size": 64, "model": model.state_dict()}, tmp_path / "tested_model.pt")
    config = parse_config({"weights_policy": "random", "data": {"root": str(synthetic_root), "limit": 3},
                           "train": {"image_size": 64}})
    dataset = index(synthetic_root, limit=3)
    records = dataset.split("trainval")
    read = []
    real_decode = calibrate.decode_records
    monkeypatch.setattr(calibrate, "decode_records", lambda rs, *a, **k: read.extend(rs) or real_decode(rs, *a, **k))
    rows = calibrate.calibrate_self_training(config, [str(file)], records, dataset)
    assert {r.split for r in read} == {"train", "val"}
    methods = [row["method"] for row in rows]
    assert methods[0] == "the model's own prediction" and "grabcut (seeds 0.1/0.5/0.9)" in methods
    assert len(methods) == 1 + len(calibrate.SELF_TRAINING_SEEDS)
    assert all(0.0 <= row["dice"] <= 1.0 for row in rows)
    study = tmp_path / "study.yaml"
    study.write_text(f"data: {{root: {synthetic_root}, image_size: 64}}\n")
    assert calibrate.main(["--config", str(study), "--model", str(tmp_path / "absent.pt")]) == 2
    assert "absent.pt: no such file" in capsys.readouterr().err
