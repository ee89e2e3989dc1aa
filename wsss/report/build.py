"""``wsss report``: the study's tables and figures, regenerated from a sweep's MLflow runs.

Reads one sweep (the newest finished parent run of an experiment, or ``--parent``) and writes
into ``--out``::

    index.html                  one static page: tables inline, figures as <img>, links
    report.md                   the same tables and text as markdown
    tables/<table>.csv|.md      Tables 1-5, pseudo-mask quality, classifier; every border policy
    figures/quality_scatter.png pseudo-mask Dice vs the trained model's test Dice (+ points CSV)
    figures/threshold_curve.png Dice / precision / recall against the CAM threshold (+ CSV)
    figures/sample-*.png, worst-*.png  input | ground truth | prediction | overlay per method

then logs the folder to the parent run under ``report/``. Parts live in the other modules of ``wsss.report``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from wsss.paper import SOURCE
from wsss.report.grids import make_grids
from wsss.report.html import write_html
from wsss.report.label_quality import QualitySource, claim_check, claim_text, dataset_records, quality_points
from wsss.report.plots import (
    curve_labeler,
    plot_quality_scatter,
    plot_threshold_curves,
    pseudo_points,
    study_points,
    trained_points,
)
from wsss.report.review_gain import REVIEW_TEXT, curve_markdown, curve_rows, plot_curve
from wsss.report.runs import is_random_init, load_sweep
from wsss.report.tables import all_tables, scored_runs, to_markdown, write_tables, write_text

REPORT_ARTIFACT_PATH = "report"
UNSCORED = {"scatter": None, "scatter_csv": None, "threshold": None, "threshold_csv": None,
            "claim": "No ground truth: pseudo-mask quality and model quality are not scored.",
            "check": {}, "notes": []}  # the quality figures of a sweep without ground truth


def _csv(rows: list[dict[str, Any]], path: Path) -> Path:
    import csv
    import io

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows([{k: ("" if row.get(k) is None else row.get(k)) for k in columns} for row in rows])
    return write_text(path, buffer.getvalue())


def quality_figures(runs: Any, records: dict, policy: str, figures: Path) -> dict[str, Any]:
    """The scatter (with the claim's numbers) and the threshold curve, with their CSVs."""
    source = QualitySource(runs, records, policy)
    points = quality_points(source)
    check = claim_check(points)
    labeler = curve_labeler(runs)
    sweeps = {run.data.tags.get("labeler_id"): source.sweep(run.data.tags.get("labeler_id"))
              for run in source.heatmap_sets()}
    pseudo = pseudo_points({k: v for k, v in sweeps.items() if v})
    trained, study = trained_points(runs, labeler, policy), study_points()
    notes = [] if records else [f"Dataset root {runs.data_root} is not here: pseudo-mask "
                                f"quality at other thresholds and the figure grids are left out."]
    return {"scatter": plot_quality_scatter(points, check, policy, figures / "quality_scatter.png"),
            "scatter_csv": _csv(points or [{"run": ""}], figures / "quality_scatter.csv"),
            "claim": claim_text(check), "check": check,
            "threshold": plot_threshold_curves(
                trained, study, pseudo, labeler, policy, figures / "threshold_curve.png",
                random_init=any(p["weights"] == "random-init" for p in trained)
                or any(is_random_init(run) for run in source.heatmap_sets())),
            "threshold_csv": _csv(trained + study + pseudo, figures / "threshold_curve.csv"),
            "notes": notes}


def review_figures(runs: Any, figures: Path) -> dict[str, Any]:
    """The review curve (``jobs/review_curve.py``) when the sweep has its trials: test Dice
    against the share of training images reviewed, its table and CSV."""
    rows = curve_rows(runs.stage("train"))
    if not rows:
        return {"review": None}
    return {"review": plot_curve(rows, figures / "review_curve.png"), "review_table": curve_markdown(rows),
            "review_text": REVIEW_TEXT,
            "review_csv": _csv(rows, figures / "review_curve.csv")}


def report_markdown(context: dict[str, Any], root: Path) -> str:
    runs = context["runs"]
    lines = [f"# WSSS report — experiment {runs.experiment.name}", "",
             f"Sweep parent run `{runs.parent.info.run_id}`; study numbers: {context['source']}.", ""]
    if context["random_runs"]:
        lines += [f"**{context['random_runs']} runs use random-init weights** (flagged "
                  f"`random-init`): their numbers test the pipeline, not the methods.", ""]
    lines += [to_markdown(table) for table in context["tables"]]
    lines += ["## Pseudo-mask quality vs final model quality", "", context["claim"], ""]
    for key, title in (("scatter", "quality scatter"), ("threshold", "threshold curve")):
        if context[key] is not None:
            lines.append(f"![{title}]({context[key].relative_to(root).as_posix()})")
    if context.get("review") is not None:
        lines += ["", "## What a review is worth", "", context["review_text"], "", context["review_table"], "",
                  f"![review curve]({context['review'].relative_to(root).as_posix()})"]
    lines += ["", "## Figure grids", ""]
    lines += [f"![{g['title']}]({g['path'].relative_to(root).as_posix()})" for g in context["grids"]]
    return "\n".join(lines) + "\n"


def written(context: dict[str, Any], markdown: Path) -> list[Path]:
    """Every file this report wrote besides index.html (older files in --out are left out)."""
    files = [markdown, *(path for pair in context["table_files"].values() for path in pair.values())]
    files += [context.get(key) for key in ("scatter", "scatter_csv", "threshold", "threshold_csv",
                                           "review", "review_csv")]
    files += [grid["path"] for grid in context["grids"]]
    return sorted(path for path in files if path is not None)


def log_report(run_id: str, root: Path, files: list[Path]) -> None:
    """The report's files as artifacts of the sweep's parent run, under ``report/``."""
    import mlflow

    client = mlflow.MlflowClient()
    for path in files:
        folder = path.parent.relative_to(root).as_posix()
        client.log_artifact(run_id, str(path), REPORT_ARTIFACT_PATH + ("" if folder == "." else f"/{folder}"))


def build_report(experiment: str, out: str | Path, tracking_uri: str | None = None,
                 parent: str | None = None, log: bool = True, worst: int = 4,
                 sample: int = 4) -> dict[str, Any]:
    """Write the report folder (see the module docstring); log it to the parent run when
    ``log``. Returns the paths written and the parent run id."""
    root = Path(out).resolve()
    runs = load_sweep(experiment, tracking_uri, parent)
    try:
        policy, records = runs.border_policy, dataset_records(runs)
        tables = all_tables(runs)
        scored = bool(scored_runs(runs))
        context: dict[str, Any] = {
            "runs": runs, "policy": policy, "source": SOURCE, "tables": tables, "scored": scored,
            "table_files": write_tables(tables, root / "tables"),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "random_runs": sum(is_random_init(r) for r in scored_runs(runs) + runs.stage("pseudo_masks")),
            **(quality_figures(runs, records, policy, root / "figures") if scored else UNSCORED)}
        context.update(review_figures(runs, root / "figures") if scored else {"review": None})
        context["grids"], context["grid_notes"] = (
            make_grids(runs, records, policy, root / "figures", worst, sample) if scored else ([], []))
        markdown = write_text(root / "report.md", report_markdown(context, root))
        context["files"] = written(context, markdown)
        html = write_html(context, root / "index.html")
    finally:
        shutil.rmtree(runs.scratch, ignore_errors=True)
    if log:
        log_report(runs.parent.info.run_id, root, [html, *context["files"]])
    return {"html": html, "markdown": markdown, "out": root, "parent_run_id": runs.parent.info.run_id,
            "tables": context["table_files"], "figures": [g["path"] for g in context["grids"]],
            "claim": context["claim"], "logged": log}
