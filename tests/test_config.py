import dataclasses
import pickle
from pathlib import Path

import pytest

from wsss.config import ConfigError, load_config, parse_config
from wsss.models.segmentation import ModelSpec

REPO = Path(__file__).resolve().parents[1]


def test_presets_are_valid():
    presets = sorted((REPO / "jobs" / "configs").glob("*.yaml"))
    assert presets, "no presets found"
    for preset in presets:
        load_config(preset)


@pytest.mark.parametrize(
    "data, field, fragment",
    [
        ({"data": {"image_size": 4}}, "data.image_size", "greater than or equal to 16"),
        ({"data": {"border_policy": "inside"}}, "data.border_policy", "'ignore', 'foreground'"),
        ({"data": {"rooot": "x"}}, "data.rooot", "unknown field"),
        ({"train": {"lr": -1}}, "train.lr", "greater than 0"),
        ({"classifier": {"backbone": "resnet121"}}, "classifier.backbone", "known: resnet18"),
        ({"tracking": {"tracking_uri": "file:./mlruns"}}, "tracking.tracking_uri", "file store"),
        ({"data": {"error_budget": 1.5}}, "data.error_budget", "less than or equal to 1"),
    ],
)
def test_bad_field_is_named_with_value_and_rule(data, field, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "study.yaml")
    message = str(caught.value)
    assert message.startswith("study.yaml: invalid configuration")
    line = next(line for line in message.splitlines() if line.strip().startswith(field + ":"))
    assert fragment in line


def test_a_check_across_fields_names_the_problem_without_the_whole_config():
    data = load_config(REPO / "jobs" / "configs" / "demo.yaml").model_dump(mode="json")
    data["train"]["agreement"] = ["nope"]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "demo.yaml")
    message = str(caught.value)
    assert "train.agreement: ['nope'] are not labeler ids" in message
    assert "tracking_uri" not in message and len(message.splitlines()) == 2  # no dump of the input


def test_schedule_must_cover_epochs():
    with pytest.raises(ConfigError, match="schedule covers 3 epochs but epochs is 4"):
        parse_config({"train": {"epochs": 4, "labels": [{"epochs": 3, "labels": "gt"}]}})


def test_overrides_and_missing_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 3}\n")
    assert load_config(path, {"train.epochs": 5}).train.epochs == 5
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


LABELERS = [{"name": "gradcam"}, {"name": "box"}, {"name": "mix"}, {"name": "ellipse"}]


@pytest.mark.parametrize("trial, named", [
    ({"name": "box-0.3", "labels": "box", "threshold": 0.3},
     "sweep.trials.0 (box-0.3): threshold 0.3 does nothing to labels box (box)"),
    ({"name": "mix", "labels": [{"epochs": 5, "labels": "box"}, {"epochs": 5, "labels": "mix"}],
      "threshold": 0.1}, "labels box (box), mix (mix)"),
    ({"name": "gt", "labels": "gt", "threshold": 0.5}, "labels gt (ground truth)"),
])
def test_a_threshold_on_labels_stored_as_masks_is_refused(trial, named):
    with pytest.raises(ConfigError) as caught:
        parse_config({"labelers": LABELERS, "sweep": {"trials": [trial]}})
    assert named in str(caught.value) and "stored as masks" in str(caught.value)


def test_a_threshold_on_heatmap_labels_is_kept():
    config = parse_config({"labelers": LABELERS, "sweep": {"trials": [
        {"labels": "gradcam", "threshold": 0.1},
        {"labels": [{"epochs": 5, "labels": "box"}, {"epochs": 5, "labels": "gradcam"}], "threshold": 0.2}]}})
    assert [t.threshold for t in config.sweep.trials] == [0.1, 0.2]
    with pytest.raises(ConfigError, match="train: threshold 0.4 does nothing to labels ellipse"):
        parse_config({"labelers": LABELERS, "train": {"labels": "ellipse", "threshold": 0.4}})


@pytest.mark.parametrize("labels, select, resolved", [
    ("gt", "auto", "val_gt"), ("mix", "auto", "val_labels"),
    ([{"epochs": 5, "labels": "gt"}, {"epochs": 5, "labels": "box"}], "auto", "val_labels"),
    ("mix", "last", "last"), ("mix", "val_gt", "val_gt"),
])
def test_weak_runs_select_without_ground_truth_by_default(labels, select, resolved):
    train = {"labels": labels, "select": select, "epochs": 10}
    assert parse_config({"labelers": LABELERS, "train": train}).train.selection() == resolved


def test_models_dir_is_resolved_like_every_other_path(tmp_path):
    config = parse_config({"pipeline": {"models_dir": "weights/sam2"}}).resolved(tmp_path)
    assert config.pipeline.models_dir == str(tmp_path / "weights" / "sam2")


def test_a_trial_weighting_by_agreement_is_its_own_trial():
    """A trial's agreement reaches train.agreement and its key: it neither shares a run with
    the same labels unweighted nor trains unweighted under a weighted name."""
    from wsss.sweep.run import expand_trials, trial_config

    config = load_config(REPO / "jobs" / "configs" / "synthetic-study.yaml")
    trials = {t["name"]: t for t in expand_trials(config)}
    weighted, plain = trials["mix-weighted-by-agreement"], trials["mix"]
    assert weighted["key"] != plain["key"]
    study = config.model_dump(mode="json")
    assert trial_config(study, weighted["overrides"]).train.agreement == ["grabcut", "crf"]
    assert trial_config(study, plain["overrides"]).train.agreement == []


def test_the_config_package_exports_every_name_it_lists():
    import wsss.config

    assert all(getattr(wsss.config, name, None) is not None for name in wsss.config.__all__)


@pytest.mark.parametrize("model, options, expected", [
    (None, None, ModelSpec("unet", {"width": 0.5})),
    ("unet", None, ModelSpec("unet", {"width": 0.5})),
    ("fcn", None, ModelSpec("fcn")),  # options belong to the model they were set for
    (None, {"width": 0.25}, ModelSpec("unet", {"width": 0.25})),
    ("unet_timm/resnet18", {}, ModelSpec("unet_timm/resnet18")),
])
def test_a_run_keeps_the_configured_options_only_for_the_configured_model(model, options, expected):
    train = parse_config({"train": {"model": "unet", "model_options": {"width": 0.5}}}).train
    assert train.model_spec(model, options) == expected


def test_a_model_spec_is_one_frozen_value_from_config_to_worker():
    import torch

    options = {"width": 0.125}
    spec = ModelSpec("unet", options)
    options["width"] = 1.0  # the spec holds its own copy
    assert pickle.loads(pickle.dumps(spec)) == spec  # Ray pickles it to every worker
    assert spec.as_dict() == {"model": "unet", "options": {"width": 0.125}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "fcn"
    assert spec.create("none", classes=3)(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_run_names_stay_what_they_were():
    """A run's name is its identity (a rerun resumes it): these digests were computed before the
    model and its options became one value; a change here renames every existing run."""
    from wsss.train.segmentation import run_name

    class Schedule:
        def describe(self):
            return "gt"

        def versions(self):
            return {"gt": "v1"}

    config = parse_config({"weights_policy": "random",
                           "train": {"model": "unet", "weights": "none", "model_options": {"width": 0.125}}})
    assert run_name(config, config.train.model_spec(), Schedule(), "fp123") == "unet-897bd8492f4c"
    assert run_name(config, config.train.model_spec("fcn"), Schedule(), "fp123") == "fcn-83f7e4fe9ded"
    spec = config.train.model_spec("unet_timm/resnet18", {})
    assert run_name(config, spec, Schedule(), "fp123") == "unet_timm_resnet18-a75d8ca65b66"


def test_an_edge_band_renames_the_run_and_the_trainer_does_not():
    from wsss.train.segmentation import run_name

    class Schedule:
        def describe(self):
            return "mix"

        def versions(self):
            return {"mix": "v1"}

    def name(**train):
        config = parse_config({"weights_policy": "random", "train": {"model": "unet", "weights": "none", **train}})
        return run_name(config, config.train.model_spec(), Schedule(), "fp123")

    assert name(edge_band=3) != name() == name(edge_band=0)
    # GrabCut self-training renames the run; its seeds are unread (and unnamed) under the band
    assert name(self_training="grabcut") != name() == name(self_training_seeds=[0.2, 0.5, 0.9])
    assert name(self_training="grabcut") != name(self_training="grabcut", self_training_seeds=[0.2, 0.5, 0.9])
    with pytest.raises(ConfigError, match="self_training_seeds"):
        name(self_training_seeds=[0.5, 0.4, 0.9])
    # an ensemble of round models renames the run; one model is the name it always had
    assert name(rounds=2, self_training_models=3) != name(rounds=2) == name(rounds=2, self_training_models=1)
    with pytest.raises(ConfigError, match="self_training_models 3 .*needs rounds >= 2"):
        name(self_training_models=3)
    assert name(scaling={"num_workers": 1, "trainer": "ray_train"}) == name()
    assert name(scaling={"num_workers": 2}) != name()
