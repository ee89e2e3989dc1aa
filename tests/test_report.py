"""The report: tables and figures from a finished sweep's MLflow runs (the shared sweep of
``conftest.finished_sweep``), every number checked against MLflow; a few fast checks."""

from __future__ import annotations

import csv
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlflow
from wsss.metrics import BORDER_POLICIES as BORDER_POLICY_NAMES
from wsss.metrics import METRIC_NAMES
from wsss.paper import BY_KEY
from wsss.report.label_quality import claim_check

TABLE_KEYS = ("table_1", "table_2.1", "table_2.2", "table_3", "table_4", "table_5",
              "pseudo_masks", "classifier")


@pytest.fixture(scope="module")
def report(finished_sweep, tmp_path_factory):
    """The report of the shared sweep, built once (and logged to its parent run)."""
    from wsss.report.build import build_report

    config, result, _ = finished_sweep
    out = tmp_path_factory.mktemp("report")
    built = build_report(config.tracking.experiment, out, config.tracking.tracking_uri,
                         worst=2, sample=2)
    assert built["parent_run_id"] == result["parent_run_id"]
    return config, built


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def mlflow_runs(config) -> dict[str, object]:
    """Every run of the sweep's experiment by id, as mlflow.search_runs reports it."""
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    frame = mlflow.search_runs(experiment_names=[config.tracking.experiment], max_results=1000)
    return {row["run_id"]: row for _, row in frame.iterrows()}


def same(reported: str, logged) -> bool:
    """A CSV cell equals MLflow's value exactly (floats are written unrounded)."""
    return float(reported) == float(logged)


@pytest.mark.slow
def test_every_table_and_figure_is_written(report):
    _, built = report
    out = built["out"]
    for key in TABLE_KEYS:
        assert (out / "tables" / f"{key}.csv").is_file() and (out / "tables" / f"{key}.md").is_file()
    figures = out / "figures"
    expected = ["quality_scatter.png", "threshold_curve.png"]
    for method in ("gt", "gradcam", "box+mix", "sam2_multi_mask_as_prediction"):
        expected += [f"sample-{method}.png", f"worst-{method}.png"]
    for name in expected:
        with Image.open(figures / name) as image:
            assert image.width >= 600 and image.height >= 300, name
    assert (out / "report.md").is_file() and (out / "index.html").is_file()
    markdown = (out / "tables" / "table_4.md").read_text()  # SAM2 there runs with random weights
    assert "border policy: foreground" in markdown and "**random-init**" in markdown


@pytest.mark.slow
def test_every_number_in_the_tables_equals_mlflow(report):
    config, built = report
    runs = mlflow_runs(config)
    tables = built["out"] / "tables"
    checked = 0
    for key in ("table_1", "table_2.1", "table_2.2", "table_3", "table_4"):
        for row in read_csv(tables / f"{key}.csv"):
            paper = BY_KEY.get(row["paper_row"])
            for name in METRIC_NAMES:
                expected = getattr(paper, name) if paper else None
                assert row[f"study_{name}"] == ("" if expected is None else str(expected))
            if not row["run_id"]:
                assert row["run"] == "not run"
                continue
            logged = runs[row["run_id"]]
            assert row["weights"] == ("random-init" if logged["tags.wsss.random_weights"] == "true"
                                      else "configured")
            for name in METRIC_NAMES:
                assert same(row[name], logged[f"metrics.test_{row['border_policy']}_micro_{name}"])
            assert same(row["per_image_dice"],
                        logged[f"metrics.test_{row['border_policy']}_per_image_dice"])
            checked += 1
    assert checked == 4 * len(BORDER_POLICY_NAMES)  # 3 trials + 1 direct evaluation
    for row in read_csv(tables / "pseudo_masks.csv"):
        for name in METRIC_NAMES:
            assert same(row[name], runs[row["run_id"]][f"metrics.pseudo_{row['border_policy']}_micro_{name}"])
    for row in read_csv(tables / "table_5.csv"):
        for prefix in ("", "best_"):
            if row[f"{prefix}run_id"]:
                logged = runs[row[f"{prefix}run_id"]]
                assert same(row[f"{prefix}dice"], logged[f"metrics.test_{row['border_policy']}_micro_dice"])
    (classifier,) = [row for row in read_csv(tables / "classifier.csv") if row["run_id"]]
    assert same(classifier["test_accuracy"], runs[classifier["run_id"]]["metrics.test_accuracy"])


@pytest.mark.slow
def test_trials_log_every_border_policy_and_per_image_scores(report):
    """The trainer's side of the report: test_<policy>_* metrics and test_per_image.csv."""
    config, _ = report
    client = mlflow.MlflowClient(config.tracking.tracking_uri)
    for run_id, run in mlflow_runs(config).items():
        if run["tags.stage"] != "train":
            continue
        assert run["metrics.test_ignore_micro_dice"] == run["metrics.test_micro_dice"]
        assert all(np.isfinite(run[f"metrics.test_{p}_micro_dice"]) for p in BORDER_POLICY_NAMES)
        local = client.download_artifacts(run_id, "test_per_image.csv")
        rows = read_csv(Path(local))
        assert len(rows) == run["metrics.test_images"]
        assert np.mean([float(r["dice"]) for r in rows]) == pytest.approx(run["metrics.test_per_image_dice"])


@pytest.mark.slow
def test_pseudo_mask_quality_from_heatmaps_matches_mlflow_at_the_sets_threshold(report):
    config, built = report
    scatter = read_csv(built["out"] / "figures" / "quality_scatter.csv")
    by_run = {row["run"]: row for row in scatter}
    assert by_run["unet-gt"]["pseudo_dice"] == "1.0"
    assert by_run["gradcam-0.1"]["pseudo_source"] == "stored heatmaps at 0.1"
    runs = mlflow_runs(config)
    gradcam = next(r for r in runs.values() if r["tags.stage"] == "pseudo_masks"
                   and r["tags.labeler_id"] == "gradcam")
    curve = read_csv(built["out"] / "figures" / "threshold_curve.csv")
    at_own = [row for row in curve if row["source"] == "pseudo-masks" and row["labeler"] == "gradcam"
              and float(row["threshold"]) == float(gradcam["params.params.threshold"])]
    assert len(at_own) == 1 and same(at_own[0]["dice"], gradcam["metrics.pseudo_micro_dice"])
    trained = [row for row in curve if row["source"] == "trained"]
    assert [row["run"] for row in trained] == ["gradcam-0.1"]


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.targets += [value for name, value in attrs if name in ("href", "src") and value]


@pytest.mark.slow
def test_html_references_only_files_that_exist_and_every_table(report):
    _, built = report
    out = built["out"]
    parser = Links()
    parser.feed((out / "index.html").read_text())
    files = [target for target in parser.targets if not target.startswith("#")]
    assert files and all((out / target).is_file() for target in files)
    for key in TABLE_KEYS:
        assert f"tables/{key}.csv" in files
    assert {f"figures/{p.name}" for p in (out / "figures").glob("*.png")} <= set(files)


@pytest.mark.slow
def test_the_report_is_logged_to_the_sweeps_parent_run(report):
    config, built = report
    client = mlflow.MlflowClient(config.tracking.tracking_uri)
    names = {item.path for item in client.list_artifacts(built["parent_run_id"], "report")}
    assert {"report/index.html", "report/report.md", "report/tables", "report/figures"} <= names
    tables = {item.path for item in client.list_artifacts(built["parent_run_id"], "report/tables")}
    assert "report/tables/table_5.csv" in tables


# ---- fast ---------------------------------------------------------------------------------------


def test_an_unknown_experiment_is_refused_naming_the_ones_present(tmp_path, capsys):
    from wsss.cli.main import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("present", artifact_location=(tmp_path / "artifacts").as_uri())
    code = main(["report", "--experiment", "absent", "--out", str(tmp_path / "out"),
                 "--tracking-uri", uri])
    assert code == 2 and "'present'" in capsys.readouterr().err
    code = main(["report", "--experiment", "present", "--out", str(tmp_path / "out"),
                 "--tracking-uri", uri])
    assert code == 2 and "no finished sweep" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_claim_check_compares_label_spread_with_architecture_spread():
    def point(mask_set, model, pseudo, test):
        return {"mask_set": mask_set, "model": model, "pseudo_dice": pseudo, "test_dice": test,
                "weights": "configured"}

    points = [point("gt", "unet", 1.0, 0.90), point("gt", "deeplabv3", 1.0, 0.95),
              point("cam", "deeplabv3", 0.3, 0.35), point("box", "deeplabv3", 0.6, 0.7),
              point("sam2", "deeplabv3", 0.8, 0.85)]
    check = claim_check(points)
    assert check["n"] == 3 and check["pearson"] > 0.99 and check["spearman"] == pytest.approx(1.0)
    assert check["label_spread"] == pytest.approx(0.5) and check["architecture_spread"] == pytest.approx(0.05)


@pytest.mark.slow
def test_grids_show_the_labels_each_trial_learnt_from(report):
    from wsss.report.grids import learnt_from, stored_masks
    from wsss.report.runs import load_sweep

    config, _ = report
    runs = load_sweep(config.tracking.experiment, config.tracking.tracking_uri)
    trials = {run.data.tags.get("labels"): run for run in runs.stage("train")}
    box_then_mix = next(run for run in runs.stage("train") if run.data.params.get("labels", "").endswith("mix:2"))
    mix = stored_masks(runs, "mix")
    image_id = sorted(mix.ids())[0]
    target = np.zeros((64, 64), np.uint8)
    assert np.array_equal(learnt_from(runs, box_then_mix)(image_id, target), mix.read(image_id))
    assert learnt_from(runs, box_then_mix)("no-such-image", target).tolist() == \
        np.full((64, 64), 255, np.uint8).tolist()  # not in the set: all ignore, never invented
    target[10:20, 10:20] = 1
    assert np.array_equal(learnt_from(runs, trials["gt"])(image_id, target), target)
