"""The breed classifier trainer: augmentation, the weights policy, and a real Ray Train run."""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wsss.cli.classify import add_parser as add_classify_parser
from wsss.config import ConfigError, parse_config, parse_overrides
from wsss.data.transforms import batch_to_input, to_input_tensor
from wsss.models.classifier import build_classifier, check_classifier, load_classifier, save_classifier
from wsss.train.classifier import classifier_path, run_classifier


def _images(count=4, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def _generator(seed=0):
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def test_eval_input_is_plain_normalisation():
    images = _images()
    out = batch_to_input(torch.from_numpy(images), train=False)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out, to_input_tensor(images))


def test_train_flip_mirrors_and_jitter_changes_colour_only_when_training():
    images = _images()
    flipped = batch_to_input(torch.from_numpy(images), train=True, generator=_generator(),
                             jitter=0.0, flip_probability=1.0)
    torch.testing.assert_close(flipped, to_input_tensor(images[:, :, ::-1]))

    jittered = batch_to_input(torch.from_numpy(images), train=True, generator=_generator(),
                              jitter=0.4, flip_probability=0.0)
    assert jittered.shape == (4, 3, 16, 16) and jittered.dtype == torch.float32
    assert not torch.allclose(jittered, to_input_tensor(images))
    # pixels stay in [0, 1] before normalisation
    low, high = to_input_tensor(np.zeros((1, 1, 1, 3), np.uint8)), to_input_tensor(
        np.full((1, 1, 1, 3), 255, np.uint8))
    assert (jittered >= low - 1e-5).all() and (jittered <= high + 1e-5).all()
    again = batch_to_input(torch.from_numpy(images), train=True, generator=_generator(),
                           jitter=0.4, flip_probability=0.0)
    torch.testing.assert_close(jittered, again)  # seeded: reproducible


def _config(root: Path, work: Path, policy="random", **classifier):
    section = {"backbone": "resnet18", "weights": "none", "epochs": 1, "batch_size": 8,
               "eval_batch_size": 16, "image_size": 32, "lr": 1e-3,
               "scaling": {"num_workers": 2, "cpus_per_worker": 1},
               "storage": str(work / "classifier"), **classifier}
    return parse_config({
        "weights_policy": policy,
        "data": {"root": str(root)},
        "classifier": section,
        "pipeline": {"store": str(work / "stores" / "masks")},
        "tracking": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                     "artifact_location": str(work / "artifacts"), "experiment": "test"},
    })


def test_random_weights_refused_without_random_policy(tmp_path):
    root = tmp_path / "never-written"
    config = _config(root, tmp_path, policy="pretrained")
    config.data.synthetic = parse_config({"data": {"synthetic": {"images": 37}}}).data.synthetic
    with pytest.raises(ConfigError, match="weights_policy"):
        run_classifier(config)
    assert not root.exists()  # refused before any work: the dataset was not even generated


def test_in_process_train_mode_refused(tmp_path):
    config = _config(tmp_path / "never-written", tmp_path, scaling={"num_workers": 0})
    with pytest.raises(ConfigError, match="num_workers"):
        run_classifier(config)


def test_overrides_are_read_as_yaml():
    assert parse_overrides(["classifier.epochs=3", "classifier.weights=none",
                            "classifier.scaling.use_gpu=true"]) == {
        "classifier.epochs": 3, "classifier.weights": "none", "classifier.scaling.use_gpu": True}
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_overrides(["classifier.epochs"])


def test_checkpoint_check_accepts_what_loads_and_names_what_does_not(tmp_path):
    """The driver's check of a classifier (shapes on torch's meta device, tensors mapped from the
    file) passes exactly the checkpoints that load, and says which file and why otherwise."""
    good = tmp_path / "good.pt"
    save_classifier(build_classifier("resnet18", "none", 5), good, "resnet18", image_size=32)
    assert check_classifier(good) == {"backbone": "resnet18", "image_size": 32}
    model, meta = load_classifier(good)
    assert meta == check_classifier(good) and model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)

    payload = torch.load(good, weights_only=False)
    payload["num_classes"] = 7  # weights of a 5-way head under a 7-way header
    torch.save(payload, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match=r"foreign\.pt does not fit a resnet18 classifier with 7 classes"):
        check_classifier(tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_classifier(tmp_path / "foreign.pt")

    payload["num_classes"] = 5
    del payload["state_dict"]["fc.bias"]
    torch.save(payload, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="fc.bias"):
        check_classifier(tmp_path / "partial.pt")

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt is not a readable classifier checkpoint \(Unpickling"):
        check_classifier(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt not found"):
        check_classifier(tmp_path / "missing.pt")


def _runs(config):
    import mlflow
    from wsss import tracking

    tracking.configure(config.tracking)
    return mlflow.search_runs(experiment_names=[config.tracking.experiment], output_format="list")


class Terminal(io.StringIO):
    """A console stream that says it is a terminal: a stage's bar is redrawn at every step."""

    def isatty(self) -> bool:
        return True


@pytest.mark.slow
def test_train_log_reuse_and_resume(ray_local, synthetic_root, tmp_path, capsys, monkeypatch):
    import mlflow

    config = _config(synthetic_root, tmp_path)
    screen = Terminal()
    with monkeypatch.context() as patched:
        patched.setattr(sys, "stderr", screen)
        summary = run_classifier(config)
    drawn = screen.getvalue()  # the epoch shows as it ends, with its loss and accuracy
    assert re.search(r"classifier ▕█{20}▏ 1/1 epochs train loss \d+\.\d{3}, val accuracy [01]\.\d{3}", drawn)
    assert re.search(r"✓ test accuracy: [01]\.\d{3} on \d+ images", drawn)
    assert "✓ classifier: trained resnet18" in drawn
    path = Path(summary["checkpoint"])
    assert not summary["reused"] and path.is_file()
    model, meta = load_classifier(path)
    assert meta["backbone"] == "resnet18" and meta["image_size"] == 32
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and meta["run_id"] == summary["run_id"]
    assert model(to_input_tensor(_images(2, 32))).shape == (2, 37)

    (run,) = _runs(config)
    assert run.info.run_name == "classifier-resnet18"
    assert run.data.tags["stage"] == "classifier" and run.data.tags["wsss.random_weights"] == "true"
    assert run.data.params["backbone"] == "resnet18" and run.data.params["image_size"] == "32"
    assert "test_accuracy" in run.data.metrics and "val_accuracy" in run.data.metrics
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1]
    artifacts = mlflow.tracking.MlflowClient().list_artifacts(run.info.run_id)
    assert [a.path for a in artifacts] == ["classifier.pt"]

    # Same config through the CLI handler (an override that changes nothing): reused.
    parser = argparse.ArgumentParser()
    add_classify_parser(parser.add_subparsers())
    config_file = tmp_path / "study.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    args = parser.parse_args(["classify", "--config", str(config_file),
                              "--set", "classifier.epochs=1"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert len(_runs(config)) == 1

    # A fit interrupted before publishing resumes from Train's checkpoint: no epoch reruns.
    checkpoints = sorted(p.name for p in path.parent.glob("checkpoint_*"))
    path.unlink()
    resumed = run_classifier(config)
    assert not resumed["reused"] and Path(resumed["checkpoint"]) == path and path.is_file()
    assert sorted(p.name for p in path.parent.glob("checkpoint_*")) == checkpoints
    assert resumed["test_accuracy"] == summary["test_accuracy"]
    client = mlflow.tracking.MlflowClient()
    assert [m.value for m in client.get_metric_history(resumed["run_id"], "train_loss")] == \
        [m.value for m in history]  # the epoch history came back from the checkpoint
    assert path == classifier_path(config, meta["fingerprint"])

