"""The main job on real local Ray and a real SQLite MLflow store: end to end, rerun, kill + resume."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import KEPT_LABELERS, KEPT_TRIALS, REPO, scaled_down_smoke

import mlflow
from wsss.cli.sweep import show_result
from wsss.config import ConfigError, load_config, parse_config
from wsss.sweep.run import run_sweep

pytestmark = pytest.mark.slow
SWEEP_STAGES = ["start", "data", "classifier", "mask sets", "trials", "logging", "total"]


def runs_by_stage(config) -> dict[str, list]:
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    experiment = mlflow.get_experiment_by_name(config.tracking.experiment)
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list", max_results=1000)
    stages: dict[str, list] = {}
    for run in runs:
        stages.setdefault(run.data.tags.get("stage"), []).append(run)
    return stages


def artifact_names(run) -> set[str]:
    client = mlflow.MlflowClient()
    names = set()
    for item in client.list_artifacts(run.info.run_id):
        names.add(item.path)
        if item.is_dir:
            names.update(child.path for child in client.list_artifacts(run.info.run_id, item.path))
    return names


def test_sweep_logs_parent_and_children(finished_sweep):
    config, result, _ = finished_sweep
    assert result["failures"] == []
    stages = runs_by_stage(config)
    (parent,) = stages["sweep"]
    assert {"summary.md", "summary.csv", "sweep.json"} <= artifact_names(parent)
    assert list(result["stage_seconds"]) == SWEEP_STAGES
    assert {f"stage_seconds_{stage.replace(' ', '_')}" for stage in SWEEP_STAGES} <= set(parent.data.metrics)
    assert parent.data.metrics["stage_seconds_total"] >= parent.data.metrics["stage_seconds_trials"] > 0
    # each trial's seconds beyond its epochs and test: one a trial, their mean on the parent
    assert len(result["trial_overheads"]) == len(KEPT_TRIALS) and min(result["trial_overheads"]) > 0
    assert parent.data.metrics["trial_overhead_seconds"] == pytest.approx(
        sum(result["trial_overheads"]) / len(KEPT_TRIALS))
    children = [run for stage, runs in stages.items() if stage != "sweep" for run in runs]
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in children)
    assert len(stages["classifier"]) == 1
    assert sorted(r.data.tags["labeler_id"] for r in stages["pseudo_masks"]) == sorted(KEPT_LABELERS)
    assert [r.data.tags["labels"] for r in stages["direct_eval"]] == ["sam2_multi"]
    assert sorted(r.info.run_name for r in stages["train"]) == sorted(KEPT_TRIALS)
    for run in stages["train"]:
        assert 0.0 <= run.data.metrics["test_micro_dice"] <= 1.0
        assert run.data.params["model"] == "unet"  # trained from scratch, as in the study: not "random"
        assert "wsss.random_weights" not in run.data.tags
        names = artifact_names(run)
        assert any(n.startswith("checkpoint/") for n in names) and any(n.startswith("figures/") for n in names)
    # random-init is flagged where the masks come from random weights (SAM2 without a
    # checkpoint), not on every set of a study that merely allows them
    flags = {r.data.tags["labeler_id"]: r.data.tags.get("wsss.random_weights") for r in stages["pseudo_masks"]}
    assert flags == {"gradcam": None, "box": None, "mix": None, "sam2_multi": "true"}
    assert [r.data.tags.get("wsss.random_weights") for r in stages["direct_eval"]] == ["true"]
    for run in stages["pseudo_masks"]:
        assert "pseudo_micro_dice" in run.data.metrics
        assert any(n.startswith("gallery-") for n in artifact_names(run))
    curriculum = next(r for r in stages["train"] if r.info.run_name == "box-then-mix")
    assert curriculum.data.tags["method"] == "box+mix" and curriculum.data.tags["table"] == "3"
    assert len(result["rows"]) == len(KEPT_TRIALS) + 1
    assert "| 3 | box-then-mix |" in result["markdown"]


def test_summary_shows_the_quality_of_what_each_trial_trained_on(finished_sweep):
    """labels_dice: 1 for ground truth, a mask set's logged Dice when the trial reads the set as
    logged, nothing for a heatmap set read at another threshold or a schedule of sets."""
    from wsss.sweep.sweep_log import labels_dice, labels_quality

    config, result, _ = finished_sweep
    stages = runs_by_stage(config)
    logged = {r.data.tags["labeler_id"]: r.data.metrics["pseudo_micro_dice"] for r in stages["pseudo_masks"]}
    quality = labels_quality([run for runs in stages.values() for run in runs])
    assert labels_dice("gradcam", "0.5", quality) == logged["gradcam"]  # the set's own threshold
    assert labels_dice("gradcam", "0.1", quality) is None
    # a trial that sets no threshold reads the set at its own (MLflow holds the param as "None")
    assert labels_dice("gradcam", "None", quality) == logged["gradcam"]
    assert labels_dice("mix", "-", quality) == logged["mix"]
    by_run = {row["run"]: row for row in result["rows"]}
    assert by_run["unet-gt"]["labels_dice"] == 1.0
    assert by_run["gradcam-0.1"]["labels_dice"] is None and by_run["box-then-mix"]["labels_dice"] is None


def test_rerun_is_a_no_op(finished_sweep, capsys):
    config, result, _ = finished_sweep
    before = {stage: len(runs) for stage, runs in runs_by_stage(config).items()}
    again = run_sweep(config)
    assert {stage: len(runs) for stage, runs in runs_by_stage(config).items()} == before
    assert again["parent_run_id"] == result["parent_run_id"]
    assert again["rows"] == result["rows"]
    capsys.readouterr()
    show_result(config, again)  # what `wsss sweep` prints at the end
    shown = capsys.readouterr().out
    stages_line = r"stages \(s\): " + " · ".join(rf"{stage} \d+" for stage in SWEEP_STAGES)
    assert re.search(f"^{stages_line}$", shown, re.MULTILINE)
    assert [line for line in shown.splitlines() if len(line) > 100] == []  # a terminal
    for row in again["rows"]:  # each run on a line: its test Dice, its labels' Dice
        line = next(line for line in shown.splitlines() if f"  {row['run']}  " in line)
        assert f"{row['dice']:.3f}" in line
        if row["labels_dice"] is not None:
            assert f"{row['labels_dice']:.3f}" in line.split(f"{row['dice']:.3f}", 1)[1]


def test_console_summary_fits_100_columns_and_cuts_long_names():
    from wsss.sweep.sweep_log import console_table

    rows = [{"table": "beyond", "run": "grabcut-seeds-self-trained-lr=0.001-model=deeplabv3-" + "x" * 40,
             "labels": "grabcut_imagenet_with_a_long_name_" + "y" * 30, "dice": 0.87654, "labels_dice": 0.81,
             "paper_dice": None},
            {"table": "1", "run": "dlv3-gt", "labels": "gt", "dice": 0.9234, "labels_dice": 1.0,
             "paper_dice": 0.9577}]
    text = console_table(rows)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100 and len(lines) == 4
    assert lines[0].split() == ["table", "run", "labels", "test", "Dice", "labels'", "study"]
    assert "…" in lines[2] and lines[2].split()[-3:] == ["0.877", "0.810", "-"]
    assert lines[3].split() == ["1", "dlv3-gt", "gt", "0.923", "1.000", "0.958"]
    several = console_table([{"table": "", "run": "cam", "labels": "cam", "miou": 0.31, "labels_miou": 0.37,
                              "dice": 1.0}])
    assert "test mIoU" in several and several.splitlines()[2].split()[-3:] == ["0.310", "0.370", "-"]
    unscored = console_table([{"table": "", "run": "mix", "labels": "mix", "val_dice": 0.5}])
    assert "val Dice*" in unscored and "no ground truth" in unscored


def test_killed_sweep_finishes_when_started_again(ray_local, tmp_path):
    data = scaled_down_smoke(tmp_path)
    data["labelers"] = [s for s in data["labelers"] if s["name"] == "ellipse"] or [{"name": "ellipse"}]
    # 12 epochs of a fraction of a second each: the kill lands after the first checkpoint and
    # well before the trial ends and is logged (with 4, a fast machine finished in the poll's gap)
    data["sweep"]["trials"] = [{"name": "gt-0.001", "labels": "gt", "lr": 0.001, "epochs": 12}]
    data["sweep"]["direct_eval"] = []
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(data))
    command = [sys.executable, str(REPO / "jobs" / "sweep.py"), "--config", str(tmp_path / "study.yaml")]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((tmp_path / "train").glob("*/checkpoint_*")):
        time.sleep(0.1)  # wait until a trial has trained at least one epoch
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list((tmp_path / "train").glob("*/checkpoint_*")), "no trial got going before the deadline"
    config = load_config(tmp_path / "study.yaml")
    assert "train" not in runs_by_stage(config)  # killed before any trial was logged
    result = run_sweep(config)
    assert result["failures"] == []
    names = sorted(run.info.run_name for run in runs_by_stage(config)["train"])
    assert names == ["gt-0.001"]  # the trial logged exactly once, though it was killed mid-way


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["labelers"].append({"name": "graabcut"}), "unknown labeler 'graabcut'"),
    (lambda d: d["sweep"]["trials"].append({"labels": "gradcam", "threshold": 1.5}), "less than or equal to 1"),
    (lambda d: d["sweep"].update(space={"threshold": [0.1, 2.0]}),
     "space.threshold choice 2.0: Input should be less than or equal to 1"),
    (lambda d: d["sweep"]["trials"].append({"labels": "no_such_set"}), "neither 'gt' nor a labeler id"),
    (lambda d: d["train"].update(model="fcn", model_options={"width": 0.5}), "'fcn' takes no option 'width'"),
])
def test_bad_config_fails_before_any_work(tmp_path, change, fragment):
    data = scaled_down_smoke(tmp_path)
    change(data)
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data)
    assert not (tmp_path / "pets").exists()


@pytest.mark.parametrize("preset, models", [("smoke", {"unet", "deeplabv3/tf_efficientnet_lite0",
                                                       "fcn/tf_efficientnet_lite0"}),
                                            ("paper", {"unet", "deeplabv3", "fcn"}),
                                            ("demo", {"unet", "deeplabv3/tf_efficientnet_lite0",
                                                      "fcn/tf_efficientnet_lite0"}),
                                            ("synthetic-study", {"deeplabv3/tf_efficientnet_lite0"})])
def test_every_trial_of_a_preset_builds_its_model(preset, models):
    """train.model_options belong to train.model: a trial naming another model starts from none
    (smoke's UNet width must not reach DeepLabV3 or FCN)."""
    from wsss.models.segmentation import create_model
    from wsss.sweep.run import expand_trials, trial_config

    config = load_config(REPO / "jobs" / "configs" / f"{preset}.yaml")
    study = config.model_dump(mode="json")
    built = {}
    for trial in expand_trials(config):
        train = trial_config(study, trial["overrides"]).train
        key = (train.model, str(sorted(train.model_options.items())))
        if train.model == config.train.model:
            assert train.model_options == config.train.model_options, trial["name"]
        if key not in built:
            built[key] = create_model(train.model, "none", **train.model_options)
    assert {model for model, _ in built} == models


def test_more_gpus_than_the_cluster_has(ray_local, tmp_path):
    data = scaled_down_smoke(tmp_path)
    data["train"]["scaling"] = {"num_workers": 2, "use_gpu": True}
    with pytest.raises(ConfigError, match="asks for 2 GPU"):
        run_sweep(parse_config(data))
    assert not (tmp_path / "pets").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("trainer", ["auto", "ray_train"])
def test_concurrent_trials_each_get_their_worker_group(ray_local, tmp_path, trainer):
    """As many trials as ``concurrency`` allows hold their workers' resources at once. A trial
    that trains its one worker itself holds that worker's CPU; one that starts Ray Train holds
    none (a CPU share per driver left the last worker group waiting for another trial)."""
    from ray import tune
    from ray.util.placement_group import placement_group, remove_placement_group

    from wsss.sweep.run import TRIAL_DRIVER_RESOURCES, concurrency, trial_resources

    data = scaled_down_smoke(tmp_path)  # 1 worker x 1 CPU per trial
    data["train"]["scaling"] = {"num_workers": 1, "trainer": trainer}
    config = parse_config(data)
    resources = trial_resources(config)
    assert resources == ({"cpu": 1.0, "gpu": 0} if trainer == "auto" else TRIAL_DRIVER_RESOURCES)
    cpus = int(ray_local.cluster_resources()["CPU"])
    trials = concurrency(config, cpus, 0)
    assert trials == cpus
    marks = tmp_path / "held"
    marks.mkdir()

    def trial(params):  # the worker's CPU (the trial's, or a group's), held until all hold one
        group = None if trainer == "auto" else placement_group([{"CPU": config.train.scaling.cpus_per_worker}])
        ready = True if group is None else group.wait(timeout_seconds=60)
        (marks / str(params["i"])).touch()
        deadline = time.monotonic() + 60
        while ready and len(list(marks.iterdir())) < trials and time.monotonic() < deadline:
            time.sleep(0.1)
        together = len(list(marks.iterdir())) == trials
        if group is not None:
            remove_placement_group(group)
        tune.report({"ready": float(ready), "together": float(together)})

    results = tune.Tuner(
        tune.with_resources(trial, resources),
        param_space={"i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=trials),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
    assert [r.error for r in results] == [None] * trials
    assert [(r.metrics["ready"], r.metrics["together"]) for r in results] == [(1.0, 1.0)] * trials
