from pathlib import Path

import pytest

from wsss.config import ConfigError, load_config, parse_config

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
