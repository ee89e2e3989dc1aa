"""Segmentation training: label sources, loss and transforms (fast); Ray Train runs (slow)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.config import ConfigError, parse_config
from wsss.data.transforms import paired_augment
from wsss.metrics import IGNORE
from wsss.train.labels import GroundTruthSource, MaskSetSource, make_schedule, parse_labels, resolve_schedule
from wsss.train.steps import masked_bce


@dataclass
class ConstantSource:
    """A test double of the project's LabelSource protocol: every pixel has one value."""

    name: str
    value: int

    def targets(self, image_ids, size):
        return np.full((len(image_ids), size, size), self.value, np.uint8)


class DictMaskSet:
    """A test double of wsss.masks.store.MaskSet: ``read(image_id)`` from a dict."""

    def __init__(self, masks):
        self.masks = masks

    def read(self, image_id):
        if image_id not in self.masks:
            raise FileNotFoundError(image_id)
        return self.masks[image_id]


def study(root, tmp_path, workers=2, limit=None, **train):
    section = {"model": "unet", "weights": "none", "epochs": 1, "lr": 3e-3, "batch_size": 8,
               "eval_batch_size": 8, "image_size": 64, "bf16": False, "max_failures": 0,
               "scaling": {"num_workers": workers}, "storage": str(tmp_path / "results"), **train}
    return parse_config({
        "weights_policy": "random",
        "data": {"root": str(root), "image_size": 64, "limit": limit},
        "pipeline": {"store": str(tmp_path / "stores" / "masks")}, "train": section,
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                     "artifact_location": str(tmp_path / "artifacts")}})


# ---- fast: label sources, loss, transforms --------------------------------------------------


def test_schedule_picks_the_step_covering_each_epoch():
    boxes, mix = ConstantSource("raw_box", 1), ConstantSource("mix", 0)
    schedule = make_schedule([(2, boxes), (3, mix), (1, boxes)])
    assert [schedule.column(e) for e in range(1, 7)] == ["target_0"] * 2 + ["target_1"] * 3 + ["target_0"]
    assert len(schedule.sources) == 2 and schedule.describe() == "raw_box:2,mix:3,raw_box:1"
    with pytest.raises(ValueError, match="past the schedule"):
        schedule.column(7)
    assert parse_labels("raw_box:20,mix:20") == [{"labels": "raw_box", "epochs": 20},
                                                 {"labels": "mix", "epochs": 20}]
    with pytest.raises(ValueError, match="covers 3 epochs"):
        resolve_schedule([(1, boxes), (2, mix)], 4)


def test_ground_truth_source_applies_the_border_policy_and_resizes_nearest():
    trimap = np.array([[1, 2], [3, 1]], np.uint8)
    for policy, border in (("ignore", IGNORE), ("foreground", 1), ("background", 0)):
        target = GroundTruthSource({"a": trimap}, policy).targets(["a"], 4)[0]
        assert target.shape == (4, 4) and set(np.unique(target)) <= {0, 1, IGNORE}
        assert target[3, 0] == border and target[0, 0] == 1 and target[0, 3] == 0


def test_mask_set_source_resizes_nearest_and_ignores_images_it_lacks():
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 1
    mask[7, 7] = IGNORE
    source = MaskSetSource(DictMaskSet({"a": mask}), "grabcut")
    targets = source.targets(["a", "b"], 4)
    assert set(np.unique(targets[0])) <= {0, 1, IGNORE}  # nearest: no blended values
    assert (targets[0, :2] == 1).all() and (targets[0, 2:3] == 0).all()
    assert (targets[1] == IGNORE).all() and source.missing == ["b"]


def _identity(labeler, dataset="data-1", size=8):
    return {"labeler_fingerprint": labeler, "dataset_index": dataset, "image_size": size}


def test_mask_sets_from_the_store_threshold_heatmaps_at_read_time(tmp_path):
    from wsss.masks.store import MaskSetWriter, open_mask_set, set_fingerprint
    from wsss.train.labels import open_source

    store = str(tmp_path / "masks")
    box = np.zeros((8, 8), np.uint8)
    box[2:6, 2:6] = 1
    writer = MaskSetWriter(f"{store}/raw_box-{set_fingerprint(_identity('box'))}")
    writer.write_mask("a", box)
    writer.write_manifest({"labeler_id": "raw_box", "kind": "masks", "params": {}, "updated": 1,
                           "complete": True, **_identity("box")})
    heatmap = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))  # rises left to right
    writer = MaskSetWriter(f"{store}/gradcam-{set_fingerprint(_identity('cam'))}")
    writer.write_heatmap("a", heatmap)
    writer.write_manifest({"labeler_id": "gradcam", "kind": "heatmaps", "updated": 1, "complete": True,
                           "params": {"threshold": 0.5}, **_identity("cam")})
    wanted = {"raw_box": _identity("box"), "gradcam": _identity("cam"), "sam2_centre": _identity("sam")}
    options = {"trimaps": {}, "border_policy": "ignore",
               "open_set": lambda key, threshold: open_mask_set(store, key, wanted[key], threshold=threshold)}
    assert (open_source("raw_box", **options).targets(["a"], 8)[0] == box).all()
    low = open_source("gradcam", threshold=0.1, **options).targets(["a"], 8)[0]
    high = open_source("gradcam", threshold=0.9, **options).targets(["a"], 8)[0]
    assert low.sum() > high.sum() > 0 and set(np.unique(low)) <= {0, 1}
    with pytest.raises(FileNotFoundError, match="present: none"):
        open_source("sam2_centre", **options)


def test_a_mask_set_of_other_data_or_size_is_an_error_naming_both(tmp_path):
    from wsss.masks.integrity import MaskSetError
    from wsss.masks.store import MaskSetWriter, open_mask_set, set_fingerprint

    store = str(tmp_path / "masks")
    made = _identity("box", dataset="0123456789abcdef", size=96)
    writer = MaskSetWriter(f"{store}/box-{set_fingerprint(made)}")
    writer.write_mask("a", np.ones((96, 96), np.uint8))
    writer.write_manifest({"labeler_id": "box", "kind": "masks", "params": {}, "updated": 1,
                           "complete": True, **made})
    assert open_mask_set(store, "box", made).read("a").shape == (96, 96)
    for wanted, named in ((_identity("box", "fedcba9876543210", 96),
                           "dataset 0123456789abcdef (this study: fedcba9876543210)"),
                          (_identity("box", "0123456789abcdef", 128), "image size 96 (this study: 128)")):
        with pytest.raises(MaskSetError) as error:
            open_mask_set(store, "box", wanted)
        assert named in str(error.value) and "wsss pseudo --config C --labeler box" in str(error.value)
    half = _identity("box", "0123456789abcdef", 64)
    MaskSetWriter(f"{store}/box-{set_fingerprint(half)}").write_manifest(
        {"labeler_id": "box", "kind": "masks", "complete": False, "images_present": 1,
         "images_expected": 2, **half})
    with pytest.raises(MaskSetError, match="incomplete .1 of 2 images"):
        open_mask_set(store, "box", half)


class UnreadableTrimaps:
    """Val trimaps that fail the test when anything reads them."""

    def __getattr__(self, name):
        raise AssertionError(f"val ground truth was read ({name})")

    def __iter__(self):
        raise AssertionError("val ground truth was read")


def test_weak_runs_validate_on_their_own_labels_and_never_read_val_ground_truth():
    from wsss.data.arrays import SplitArrays
    from wsss.train.datasets import val_columns

    ids = ["a", "b"]
    val = SplitArrays(np.zeros((2, 4, 4, 3), np.uint8), UnreadableTrimaps(), np.zeros(2), ids)
    mix = MaskSetSource(DictMaskSet({"a": np.ones((4, 4), np.uint8), "b": np.zeros((4, 4), np.uint8)}), "mix")
    schedule = make_schedule([(2, ConstantSource("box", 1)), (2, mix)])
    columns = val_columns(schedule, val, "val_labels", "ignore", gt_metrics=False)
    assert set(columns) == {"image", "target"}  # the final source's labels: mix, not the boxes
    assert (columns["target"][0] == 1).all() and (columns["target"][1] == 0).all()
    assert set(val_columns(schedule, val, "last", "ignore", False)) == {"image", "target"}
    trimaps = np.full((2, 4, 4), 2, np.uint8)
    truth = SplitArrays(val.images, trimaps, val.labels, ids)
    assert (val_columns(schedule, truth, "val_gt", "ignore", False)["target"] == 0).all()
    diagnostics = val_columns(schedule, truth, "val_labels", "ignore", gt_metrics=True)
    assert (diagnostics["target"][0] == 1).all() and (diagnostics["gt_target"] == 0).all()


def test_masked_bce_ignores_255_and_averages_valid_pixels():
    logits = torch.tensor([[[[2.0, -1.0], [50.0, -50.0]]]])
    targets = torch.tensor([[[1, 0], [IGNORE, IGNORE]]], dtype=torch.uint8)
    loss_sum, valid = masked_bce(logits, targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]), reduction="sum")
    assert int(valid) == 2 and torch.isclose(loss_sum, expected)


def test_paired_augment_flips_image_and_mask_together():
    images = torch.zeros(3, 4, 4, 3, dtype=torch.uint8)
    images[:, :, 0] = 255  # bright left column
    targets = torch.zeros(3, 4, 4, dtype=torch.uint8)
    targets[:, :, 0] = 1
    inputs, flipped = paired_augment(images, targets, torch.Generator().manual_seed(0),
                                     flip_probability=1.0, jitter=0.0)
    assert (flipped[:, :, -1] == 1).all() and (flipped[:, :, 0] == 0).all()
    assert (inputs[:, 0, :, -1] > inputs[:, 0, :, 0]).all()
    kept_inputs, kept = paired_augment(images, targets, torch.Generator().manual_seed(0),
                                       flip_probability=0.0, jitter=0.0)
    assert torch.equal(kept, targets) and (kept_inputs[:, 0, :, 0] > kept_inputs[:, 0, :, -1]).all()


def test_random_backbone_weights_are_refused_before_any_work(tmp_path):
    from wsss.train.segmentation import fit_segmentation

    config = study(tmp_path / "no-such-root", tmp_path, model="deeplabv3")
    config = config.model_copy(update={"weights_policy": "pretrained"})
    with pytest.raises(ConfigError, match="weights_policy"):
        fit_segmentation(config)  # the dataset is missing too: refusing first proves no work ran
    with pytest.raises(ConfigError, match="known: unet"):
        fit_segmentation(study(tmp_path / "no-such-root", tmp_path, model="segformer"))


def test_predict_writes_masks_at_the_original_size(synthetic_root, tmp_path):
    from PIL import Image

    from wsss.data.pets import index
    from wsss.models.checkpoints import export_model
    from wsss.models.segmentation import create_model
    from wsss.models.weights_files import CHECKPOINT_FORMAT
    from wsss.train.predict import predict_masks

    model = create_model("unet", "none", width=0.125)
    export_model({"format": CHECKPOINT_FORMAT, "model_name": "unet", "image_size": 32,
                  "model_options": {"width": 0.125}, "model": model.state_dict()},
                 tmp_path / "model.pt")
    records = index(synthetic_root).split("test")[:3]
    summary = predict_masks(tmp_path / "model.pt", records, tmp_path / "pred")
    assert summary["written"] == 3 and summary["failed"] == {}
    for record in records:
        mask = np.asarray(Image.open(tmp_path / "pred" / f"{record.image_id}.png"))
        with Image.open(record.image_path) as image:
            assert mask.shape == (image.height, image.width)  # 64 px, trained at 32
        assert set(np.unique(mask)) <= {0, 255}


def test_train_arguments_become_config_overrides(tmp_path):
    import yaml

    from wsss.cli.train import add_parser as add_train_parser
    from wsss.cli.train import load_train_config

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 4},
                                    "labelers": [{"name": "box", "id": "raw_box"}, {"name": "mix"}]}))
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--config", str(path), "--labels", "raw_box:1,mix:3",
                              "--model", "fcn", "--set", "train.lr=0.01"])
    config = load_train_config(args)
    assert config.train.model == "fcn" and config.train.lr == 0.01
    # a config's model_options are its train.model's: another --model starts from none
    path.write_text(yaml.safe_dump({"train": {"epochs": 4, "model": "unet", "model_options": {"width": 0.5}}}))
    assert load_train_config(parser.parse_args(["train", "--config", str(path)])).train.model_options == {"width": 0.5}
    other = load_train_config(parser.parse_args(["train", "--config", str(path), "--model", "fcn"]))
    assert other.train.model_options == {}
    narrow = parser.parse_args(["train", "--config", str(path), "--model-option", "width=0.25"])
    assert load_train_config(narrow).train.model_options == {"width": 0.25}
    with pytest.raises(ConfigError, match="'fcn' takes no option 'width'; its options: none"):
        load_train_config(parser.parse_args(["train", "--config", str(path), "--model", "fcn",
                                             "--model-option", "width=0.25"]))
    path.write_text(yaml.safe_dump({"train": {"epochs": 4},
                                    "labelers": [{"name": "box", "id": "raw_box"}, {"name": "mix"}]}))
    assert [(s.labels, s.epochs) for s in config.train.labels] == [("raw_box", 1), ("mix", 3)]
    bad = parser.parse_args(["train", "--config", str(path), "--labels", "raw_box:2,mix:1"])
    with pytest.raises(ConfigError, match="covers 3 epochs but epochs is 4"):
        load_train_config(bad)
    unknown = parser.parse_args(["train", "--config", str(path), "--labels", "grabcut"])
    with pytest.raises(ConfigError, match="neither 'gt' nor a labeler id"):
        load_train_config(unknown)


# ---- slow: Ray Train runs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pets160(tmp_path_factory) -> Path:
    """160 synthetic pets at 64 px: 69 train, 17 val, 74 test images."""
    from wsss.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("pets160") / "pets"
    synthesize(root, images=160, size=64, seed=0)
    return root


@pytest.fixture
def ray_quiet(ray_local):
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    return ray_local


def _all_foreground_dice(test_arrays) -> float:
    from wsss.metrics import SegmentationMeter
    from wsss.train.steps import ground_truth_targets

    targets = ground_truth_targets(test_arrays.trimaps, "ignore")
    meter = SegmentationMeter()
    meter.update_batch(np.ones(targets.shape, bool), targets)
    return meter.result()["micro"]["dice"]


def _predict_then_eval(checkpoint, root, out, capsys) -> dict:
    import json

    from wsss.cli.main import main
    from wsss.cli.predict import add_parser as add_predict_parser

    parser = argparse.ArgumentParser()
    add_predict_parser(parser.add_subparsers())
    args = parser.parse_args(["predict", "--checkpoint", checkpoint, "--root", str(root),
                              "--out", str(out)])
    assert args.handler(args) == 0
    capsys.readouterr()
    assert main(["eval", "--pred", str(out), "--root", str(root), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_unet_on_ground_truth_ddp_matches_single_process_and_beats_all_foreground(
        ray_quiet, pets160, tmp_path, capsys):
    import time

    from mlflow.tracking import MlflowClient

    from wsss.data.arrays import load_arrays
    from wsss.data.pets import index
    from wsss.train.segmentation import fit_segmentation
    from wsss.train.steps import evaluate_checkpoint
    from wsss.train.train_log import log_training

    config = study(pets160, tmp_path, workers=2, epochs=6)
    started = time.perf_counter()
    outcome = fit_segmentation(config, model_options={"width": 0.25})
    wall = time.perf_counter() - started
    test_arrays = load_arrays(index(pets160).split("test"), 64)
    baseline, dice = _all_foreground_dice(test_arrays), outcome.test["micro"]["dice"]
    with capsys.disabled():
        print(f"\nUNet (width 0.25) on GT, 6 epochs, 64 px, 2 workers: test micro Dice {dice:.4f} "
              f"vs all-foreground {baseline:.4f}; tested epoch {outcome.tested_epoch}; {wall:.0f} s")
    assert [row["epoch"] for row in outcome.history] == [1, 2, 3, 4, 5, 6]
    assert dice > baseline + 0.1

    single = evaluate_checkpoint(outcome.checkpoint, test_arrays, "ignore")
    assert single["images"] == outcome.test["images"] == len(test_arrays) == 74
    assert single["micro"] == outcome.test["micro"]  # identical counts across the 2 ranks
    assert single["per_image"] == pytest.approx(outcome.test["per_image"], abs=1e-12)

    evaluated = _predict_then_eval(outcome.model_file, pets160, tmp_path / "pred", capsys)
    assert evaluated["images"] == 74 and evaluated["micro"] == pytest.approx(outcome.test["micro"])

    run_id = log_training(config, outcome)
    client = MlflowClient(config.tracking.tracking_uri)
    run = client.get_run(run_id)
    assert run.data.tags["stage"] == "train" and run.data.params["border_policy"] == "ignore"
    assert run.data.params["labels"] == "gt" and run.data.params["model"] == "unet"
    assert run.data.params["git_commit"]
    assert run.data.metrics["test_micro_dice"] == pytest.approx(dice)
    assert [m.step for m in client.get_metric_history(run_id, "val_micro_dice")] == [1, 2, 3, 4, 5, 6]
    artifacts = {a.path for folder in ("checkpoint", "figures")
                 for a in client.list_artifacts(run_id, folder)}
    assert artifacts == {"checkpoint/tested_model.pt", "figures/sample.png"}


@pytest.mark.slow
def test_schedule_switches_source_and_a_failed_worker_resumes_from_its_checkpoint(
        ray_quiet, synthetic_root, tmp_path, monkeypatch):
    from wsss.train.segmentation import fit_segmentation
    from wsss.train.worker import FAIL_ONCE_ENV

    marker = tmp_path / "failed-once"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"2:{marker}")
    config = study(synthetic_root, tmp_path, workers=2, epochs=3, max_failures=1, limit=12)
    outcome = fit_segmentation(config, labels=[(1, ConstantSource("all_pet", 1)), (2, "gt")],
                               model_options={"width": 0.125})
    rows = outcome.history
    assert marker.is_file()  # the failure did happen
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row["label_source"] for row in rows] == ["all_pet", "gt", "gt"]
    assert rows[0]["train_foreground_fraction"] == 1.0
    assert all(row["train_foreground_fraction"] < 0.6 for row in rows[1:])
    assert [row["attempt_started_at"] for row in rows] == [1, 2, 2]  # resumed, not restarted
    assert outcome.params["schedule"] == [(1, "all_pet"), (2, "gt")]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["auto", "ray_train"])  # one worker: in a Ray task, in Train
def test_rerun_with_the_same_name_resumes_a_crashed_run(ray_quiet, synthetic_root, tmp_path,
                                                       monkeypatch, trainer):
    from ray.train import TrainingFailedError

    from wsss.train.segmentation import fit_segmentation, trains_in_process
    from wsss.train.worker import FAIL_ONCE_ENV, InjectedFailure

    monkeypatch.setenv(FAIL_ONCE_ENV, f"2:{tmp_path / 'failed-once'}")
    config = study(synthetic_root, tmp_path, workers=1, epochs=2, limit=6,
                   scaling={"num_workers": 1, "trainer": trainer})
    assert trains_in_process(config) == (trainer == "auto")
    with pytest.raises(InjectedFailure if trainer == "auto" else TrainingFailedError):
        fit_segmentation(config, name="crashy", model_options={"width": 0.125})
    outcome = fit_segmentation(config, name="crashy", model_options={"width": 0.125})
    assert [row["attempt_started_at"] for row in outcome.history] == [1, 2]
    assert [row["epoch"] for row in outcome.history] == [1, 2]


@pytest.mark.slow
def test_one_worker_in_this_process_restarts_from_its_checkpoint_and_keeps_the_best(
        ray_quiet, synthetic_root, tmp_path, monkeypatch):
    """The in-process worker (what a sweep trial runs) recovers as Ray Train does: a failure
    at epoch 2 restarts the loop from epoch 1's checkpoint within the same call; the tested
    checkpoint is the best by val Dice, and only it and the latest stay on disk."""
    from wsss.train.local import INDEX_FILE
    from wsss.train.segmentation import fit_segmentation
    from wsss.train.worker import FAIL_ONCE_ENV

    marker = tmp_path / "failed-once"
    monkeypatch.setenv(FAIL_ONCE_ENV, f"2:{marker}")
    config = study(synthetic_root, tmp_path, workers=1, epochs=3, max_failures=1, limit=8)
    reports = []

    class Seen:
        def after_report(self, run_context, metrics, checkpoint):
            reports.append((metrics[0].get("epoch"), checkpoint is not None))

    outcome = fit_segmentation(config, name="here", model_options={"width": 0.125}, here=True,
                               callbacks=[Seen()])
    assert marker.is_file()
    assert [row["attempt_started_at"] for row in outcome.history] == [1, 2, 2]
    assert reports == [(1, True), (2, True), (3, True), (3, False)]  # epochs, then the test
    best = max(outcome.history, key=lambda row: (row["val_micro_dice"], row["epoch"]))
    assert outcome.tested_epoch == best["epoch"]
    run_dir = tmp_path / "results" / "here"
    kept = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    assert kept == sorted({"checkpoint_000003", f"checkpoint_{best['epoch']:06d}"})
    assert json.loads((run_dir / INDEX_FILE).read_text())[-1]["metrics"]["epoch"] == 3
    assert Path(outcome.checkpoint).name == f"checkpoint_{best['epoch']:06d}"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["deeplabv3", "fcn"])  # unet: above; unet_timm: fast tests
def test_each_pretrained_backbone_architecture_trains_an_epoch(ray_quiet, synthetic_root,
                                                              tmp_path, model):
    from wsss.train.segmentation import fit_segmentation

    config = study(synthetic_root, tmp_path, workers=1, model=model, batch_size=2, limit=4)
    outcome = fit_segmentation(config)
    assert len(outcome.history) == 1 and np.isfinite(outcome.history[0]["train_loss"])
    assert outcome.history[0]["train_images"] == 4 and outcome.test["images"] == 4
    assert outcome.random_weights and Path(outcome.model_file).is_file()


@pytest.mark.slow
def test_a_weak_run_without_val_ground_truth_selects_and_steers_on_its_own_labels(
        ray_quiet, writable_root, tmp_path):
    from wsss.data.pets import index
    from wsss.labelers.base import LabelerContext
    from wsss.masks.pipeline import generate_masks
    from wsss.train.segmentation import fit_segmentation

    for record in index(writable_root).split("val"):  # a user's data: no masks to validate on
        Path(record.trimap_path).unlink()
    base = study(writable_root, tmp_path, workers=1, epochs=2, limit=8).model_dump(mode="json")
    config = parse_config({**base, "labelers": [{"name": "ellipse"}],
                           "train": {**base["train"], "labels": "ellipse"}})
    generate_masks(config, index(writable_root, limit=8), LabelerContext())
    outcome = fit_segmentation(config, model_options={"width": 0.125})
    assert outcome.params["select"] == "val_labels" and outcome.params["val_target"] == "labels ellipse"
    for row in outcome.history:  # scored against the ellipse labels: defined, not NaN
        assert np.isfinite(row["val_micro_dice"]) and np.isfinite(row["val_loss"])
        assert row["lr"] == config.train.lr and "val_gt_micro_dice" not in row
    assert np.isfinite(outcome.test["micro"]["dice"])  # test still scores against ground truth


def test_self_training_labels_are_the_models_confident_predictions(tmp_path):
    from wsss.models.checkpoints import export_model
    from wsss.models.segmentation import create_model
    from wsss.models.weights_files import CHECKPOINT_FORMAT
    from wsss.train.labels import SelfTrainingSource

    torch.manual_seed(0)
    model = create_model("unet", "none", width=0.125)
    with torch.no_grad():  # a model whose output is the image's red channel: a known answer
        for parameter in model.parameters():
            parameter.zero_()
        model.head.bias.fill_(0.0)
    file = export_model({"format": CHECKPOINT_FORMAT, "model_name": "unet", "model_options": {"width": 0.125},
                         "image_size": 16, "model": model.state_dict()}, tmp_path / "model.pt")
    images = {"a": np.zeros((16, 16, 3), np.uint8)}
    half = SelfTrainingSource("round1", str(file), (0.3, 0.7), images).targets(["a"], 8)
    assert half.shape == (1, 8, 8) and (half == IGNORE).all()  # p = 0.5 everywhere: all doubt
    sure = SelfTrainingSource("round1", str(file), (0.3, 0.5), images).targets(["a"], 8)
    assert (sure == 1).all()  # p = 0.5 >= t_hi: foreground


def test_self_training_keeps_each_confident_class_of_several():
    from wsss.train.steps import banded_class_map, class_probabilities

    # 3 pixels of a 2-class model (background, a, b): sure a, sure background, doubt
    scores = torch.tensor([[0.0, 4.0, 0.0], [4.0, 0.0, 0.0], [1.0, 1.2, 1.1]]).T.reshape(1, 3, 1, 3)
    assert banded_class_map(class_probabilities(scores), (0.3, 0.7)).tolist() == [[[1, 0, IGNORE]]]
    swapped = scores[:, [0, 2, 1]]  # the same evidence for class b
    assert banded_class_map(class_probabilities(swapped), (0.3, 0.7)).tolist() == [[[2, 0, IGNORE]]]
    # one output channel is the same rule: class where p >= hi, background where p < lo
    one = torch.logit(torch.tensor([0.9, 0.1, 0.5])).reshape(1, 1, 1, 3)
    assert banded_class_map(class_probabilities(one), (0.3, 0.7)).tolist() == [[[1, 0, IGNORE]]]


def test_self_training_chooses_among_each_images_own_classes():
    from wsss.train.labels import SelfTrainingSource
    from wsss.train.steps import banded_class_map, class_probabilities

    # a 4-channel model (background, a, b, c) sure of c on one pixel, torn between a and c on another
    scores = torch.tensor([[0.0, 0.0, 0.0, 5.0], [0.0, 2.0, -3.0, 2.2]]).T.reshape(1, 4, 1, 2)
    assert banded_class_map(class_probabilities(scores), (0.3, 0.7), background=False).tolist() == [[[3, IGNORE]]]
    source = SelfTrainingSource("round1", "unused.pt", (0.3, 0.7), background=False,
                                classes={"x": (0, 1)})  # the image carries a and b, not c
    allowed = source.allowed(["x"], 4)
    assert allowed.tolist() == [[False, True, True, False]]
    assert banded_class_map(class_probabilities(scores, allowed), (0.3, 0.7), False).tolist() == [[[IGNORE, 1]]]
    assert source.allowed(["x"], 1) is None  # one channel: the model's one class is the image's
    plain = SelfTrainingSource("round1", "unused.pt", (0.3, 0.7), background=False)
    assert plain.allowed(["x"], 4) is None


def _square_scene(size: int = 48):
    """An image of two flat squares, red (class a) and green (class b), on a blue floor, and
    a model's rough probabilities of each: sure in the square's core, probable up to 4 px onto
    the floor around it, as a model trained on rough pseudo-masks blurs an outline."""
    import cv2

    image = np.zeros((size, size, 3), np.uint8)
    image[...] = (30, 40, 200)
    truth = np.zeros((size, size), np.uint8)
    truth[6:22, 6:22], truth[26:42, 26:42] = 1, 2
    image[truth == 1], image[truth == 2] = (220, 30, 30), (30, 210, 40)
    rough = []
    for value in (1, 2):
        square, kernel = (truth == value).astype(np.uint8), np.ones((9, 9), np.uint8)
        grown, core = cv2.dilate(square, kernel), cv2.erode(square, kernel)
        blurred = [cv2.GaussianBlur(m.astype(np.float32), (7, 7), 1.5) for m in (grown, core)]
        rough.append(0.55 * blurred[0] + 0.44 * blurred[1] + 0.005)
    return image, truth, np.stack(rough)


def test_grabcut_self_training_puts_the_models_outline_on_the_images_edges():
    from wsss.labelers.classwise import MASK_IGNORE
    from wsss.train.labels import grabcut_class_map
    from wsss.train.steps import class_probabilities

    image, truth, rough = _square_scene()
    seeds = (0.1, 0.5, 0.9)
    # one class: the model's one channel is the red square's probability
    cut = (rough[0] >= 0.5).astype(np.uint8)
    refined = grabcut_class_map(image[None], rough[None, :1], seeds)[0]
    def iou(mask, value):
        return ((mask == value) & (truth == value)).sum() / ((mask == value) | (truth == value)).sum()
    assert iou(refined, 1) > 0.95 > 0.75 > iou(cut, 1)  # the cut spills 4 px onto the floor
    # several classes: background, a, b, c; the image carries a and b, and c is never painted
    probabilities = np.stack([1 - rough.max(0), rough[0], rough[1], np.full_like(rough[0], 0.99)])
    logits = torch.log(torch.as_tensor(probabilities))[None]
    allowed = np.array([[True, True, True, False]])
    maps = grabcut_class_map(image[None], class_probabilities(logits, allowed), seeds, True, allowed)[0]
    assert set(np.unique(maps)) <= {0, 1, 2, MASK_IGNORE} and iou(maps, 1) > 0.95 and iou(maps, 2) > 0.95
    # without a background every pixel is one of the image's classes: none is background
    own = np.array([[False, True, True, False]])
    no_background = grabcut_class_map(image[None], class_probabilities(logits, own), seeds, False, own)[0]
    assert not (no_background == 0).any()
    assert (no_background[truth == 1] == 1).mean() > 0.95 and (no_background[truth == 2] == 2).mean() > 0.95


def test_a_grabcut_self_training_source_names_its_seeds(tmp_path):
    from wsss.train.labels import SelfTrainingSource

    file = tmp_path / "model.pt"
    file.write_bytes(b"weights")
    band = SelfTrainingSource("round1", str(file), (0.3, 0.7))
    grabcut = SelfTrainingSource("round1", str(file), (0.3, 0.7), seeds=(0.1, 0.5, 0.9))
    other = SelfTrainingSource("round1", str(file), (0.3, 0.7), seeds=(0.2, 0.5, 0.9))
    assert band.version.endswith("@0.3,0.7")  # the band's version is what it was
    assert len({band.version, grabcut.version, other.version}) == 3


def test_an_ensemble_source_reads_the_mean_of_its_models_probabilities(tmp_path):
    from wsss.models.checkpoints import export_model
    from wsss.models.segmentation import create_model
    from wsss.models.weights_files import CHECKPOINT_FORMAT
    from wsss.train.labels import SelfTrainingSource
    from wsss.train.steps import banded_class_map

    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("unet", "none", width=0.125)
        files.append(str(export_model({"format": CHECKPOINT_FORMAT, "model_name": "unet",
                                       "model_options": {"width": 0.125}, "image_size": 32,
                                       "model": model.state_dict()}, tmp_path / f"m{seed}.pt")))
    images = {"a": np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)}
    ones = [SelfTrainingSource("round1", file, (0.45, 0.55), images) for file in files]
    both = SelfTrainingSource("round1", tuple(files), (0.45, 0.55), images)
    batch = images["a"][None]
    single = [one.probabilities(one.load(), batch, ["a"]) for one in ones]
    assert not np.allclose(single[0], single[1])  # two seeds, two models
    mean = both.probabilities(both.load(), batch, ["a"])
    assert np.allclose(mean, (single[0] + single[1]) / 2, atol=1e-6)
    assert (both.targets(["a"], 32) == banded_class_map(mean, (0.45, 0.55))).all()
    # the version names both models, in order: another model or order is another label set
    assert ones[0].version.split("@")[0] in both.version and ones[1].version.split("@")[0][6:] in both.version
    assert len({ones[0].version, ones[1].version, both.version,
                SelfTrainingSource("round1", tuple(files[::-1]), (0.45, 0.55)).version}) == 4


def test_agreement_weights_scale_the_cross_entropy_of_several_classes():
    from wsss.train.steps import masked_ce, segmentation_loss

    targets = torch.tensor([[[2, 1, 0, IGNORE]]], dtype=torch.uint8)
    weights = torch.tensor([[[255, 0, 255, 255]]], dtype=torch.uint8)
    logits = torch.randn(1, 3, 1, 4, generator=torch.Generator().manual_seed(0))
    full, valid = masked_ce(logits, targets)
    weighted, _ = segmentation_loss(logits, targets, weights)
    per_pixel = torch.nn.functional.cross_entropy(logits, targets.long(), ignore_index=IGNORE, reduction="none")
    assert int(valid) == 3 and float(full) == pytest.approx(float(per_pixel.sum()))
    assert float(weighted) == pytest.approx(float(per_pixel[0, 0, 0] + per_pixel[0, 0, 2]))


@pytest.mark.slow
@pytest.mark.parametrize("rule, models", [("band", 1), ("grabcut", 1), ("band", 2)])
def test_self_training_rounds_train_on_the_previous_models_labels(ray_quiet, writable_root, tmp_path, rule, models):
    from wsss.data.pets import index
    from wsss.labelers.base import LabelerContext
    from wsss.masks.pipeline import generate_masks
    from wsss.train.segmentation import MODEL_FILE, fit_segmentation

    base = study(writable_root, tmp_path, workers=1, epochs=1, limit=6).model_dump(mode="json")
    config = parse_config({**base, "labelers": [{"name": "ellipse"}],
                           "train": {**base["train"], "labels": "ellipse", "rounds": 2, "self_training": rule,
                                     "self_training_models": models}})
    generate_masks(config, index(writable_root, limit=6), LabelerContext())
    outcome = fit_segmentation(config, model_options={"width": 0.125})
    assert [row["label_source"] for row in outcome.history] == ["ellipse", "round1"]
    assert outcome.params["round"] == 2 and outcome.params["rounds"] == 2
    assert outcome.params["label_versions"][0].startswith("round1=")
    assert ("@grabcut0.1,0.5,0.9" in outcome.params["label_versions"][0]) == (rule == "grabcut")
    assert outcome.params["val_target"] == "labels round1"
    # the lineage names the previous round's model by its content hash (an MLflow digest)
    import mlflow
    from wsss.identity import file_hash
    from wsss.train.train_log import log_training

    run = mlflow.get_run(log_training(config, outcome))
    inputs = {entry.dataset.name: entry.dataset.digest for entry in run.inputs.dataset_inputs}
    runs = Path(outcome.model_file).parent.parent
    round1 = [runs / f"{outcome.name}-round1" / MODEL_FILE]
    round1 += [runs / f"{outcome.name}-round1-seed{seed}" / MODEL_FILE for seed in range(1, models)]
    names = ["model:round1"] if models == 1 else [f"model:round1/{k}" for k in range(1, models + 1)]
    assert set(inputs) == {f"{config.data.format}:{Path(config.data.root).name}", *names}
    assert [inputs[name] for name in names] == [file_hash(str(file)) for file in round1]
    assert outcome.params["self_training_models"] == models
    if models > 1:  # the round's other seed trained a model of its own: its labels differ
        assert len(set(inputs[name] for name in names)) == models
        assert not (runs / f"{outcome.name}-seed1").exists()  # the last round trains one model


def test_agreement_weights_count_the_voters_that_agree_and_let_ignore_abstain():
    from wsss.train.datasets import agreement_weights

    targets = np.array([[[1, 1, 0, 0, 1]]], np.uint8)
    voters = [np.array([[[1, 0, 0, 1, IGNORE]]], np.uint8), np.array([[[1, 1, 1, 1, IGNORE]]], np.uint8)]
    weights = agreement_weights(targets, voters)
    assert weights.tolist() == [[[255, 128, 128, 0, 255]]]  # both, one of two, ..., none speak
    logits = torch.zeros(1, 1, 1, 5)
    full, valid = masked_bce(logits, torch.as_tensor(targets))
    weighted, _ = masked_bce(logits, torch.as_tensor(targets), torch.as_tensor(weights))
    assert int(valid) == 5 and float(weighted) == pytest.approx(float(full) * (255 + 128 + 128 + 0 + 255) / (5 * 255))


def test_paired_augment_flips_extra_maps_with_the_target():
    images = torch.zeros((4, 2, 3, 3), dtype=torch.uint8)
    targets = torch.tensor([[[1, 0, 0], [1, 0, 0]]] * 4, dtype=torch.uint8)
    weights = targets * 200
    _, flipped, flipped_weights = paired_augment(images, targets, torch.Generator().manual_seed(0),
                                                 extras=(weights,))
    assert torch.equal(flipped_weights, flipped * 200)  # one flip decision for both


@pytest.mark.slow
def test_wsss_train_shows_each_epoch_as_it_ends(ray_quiet, synthetic_root, tmp_path, monkeypatch):
    import io
    import re
    import sys

    from wsss.train.segmentation import train_segmentation

    class Terminal(io.StringIO):
        def isatty(self) -> bool:  # a stage's bar is redrawn at every step on a terminal
            return True

    config = study(synthetic_root, tmp_path, workers=1, epochs=2, limit=6,
                   model_options={"width": 0.125})
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    summary = train_segmentation(config, name="shown")
    drawn = screen.getvalue()
    assert re.search(r"training ▕█{10}░{10}▏ 1/2 epochs train loss \d+\.\d{3}, val Dice [01]\.\d{3}", drawn)
    assert re.search(r"training ▕█{20}▏ 2/2 epochs train loss", drawn)
    assert re.search(r"✓ training: test Dice [01]\.\d{3} on \d+ images", drawn)
    assert summary["run_id"]


def test_edge_band_ignores_a_pseudo_mask_near_its_boundaries_only():
    from wsss.train.datasets import edge_ignored

    target = np.zeros((1, 20, 20), np.uint8)
    target[0, 5:15, 5:15] = 1
    target[0, 0, :] = IGNORE
    banded = edge_ignored(target, 2)[0]
    inner, outer = banded[8:12, 8:12], banded[18:, 18:]
    assert (inner == 1).all() and (outer == 0).all()  # far from the edge: kept
    assert (banded[5:15, 3:7] == IGNORE).all() and (banded[3:7, 8:12] == IGNORE).all()  # near it: ignored
    assert (banded[0] == IGNORE).all()  # what was ignored stays ignored
    assert (edge_ignored(target, 0) == target).all()
    flat = np.ones((2, 8, 8), np.uint8)  # one label only: no boundary, nothing ignored
    assert (edge_ignored(flat, 3) == flat).all()
    assert parse_config({"train": {"edge_band": 3}}).train.edge_band == 3
    with pytest.raises(ConfigError, match="edge_band"):
        parse_config({"train": {"edge_band": -1}})


def test_edge_band_reaches_the_training_targets_of_pseudo_masks_not_of_ground_truth():
    from types import SimpleNamespace

    from wsss.train.datasets import train_columns

    trimaps = {f"i{k}": np.full((16, 16), 2, np.uint8) for k in range(2)}
    for trimap in trimaps.values():
        trimap[4:12, 4:12] = 1

    @dataclass
    class BoxSource:
        name: str = "boxes"

        def targets(self, image_ids, size):
            return np.stack([(trimaps[i] == 1).astype(np.uint8) for i in image_ids])

    train = SimpleNamespace(image_ids=list(trimaps), images=np.zeros((2, 16, 16, 3), np.uint8))
    sources = [BoxSource(), GroundTruthSource(trimaps)]
    columns = train_columns(0, 2, train=train, order=np.arange(2), sources=sources, voters=[],
                            edge_band=1)
    assert (columns["target_0"][:, 4, 4:12] == IGNORE).all() and (columns["target_0"][:, 8, 8] == 1).all()
    assert IGNORE not in columns["target_1"]  # ground truth: no band
    plain = train_columns(0, 2, train=train, order=np.arange(2), sources=sources, voters=[])
    assert IGNORE not in plain["target_0"]
