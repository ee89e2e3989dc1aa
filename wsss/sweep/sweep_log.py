"""MLflow side of a sweep: the parent run, idempotent children, the summary table.

Every child carries a ``wsss.key`` tag that is unique within its parent (the stage, the id
and the fingerprint of what it logs), so a rerun finds what is already there and logs only
what is new.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from wsss import tracking
from wsss.masks.scoring import mask_quality
from wsss.metrics import flat_metrics
from wsss.paper import paper_row
from wsss.train.labels import GROUND_TRUTH
from wsss.train.train_log import MODEL_VERSION_TAG

KEY_TAG = "wsss.key"
SUMMARY_COLUMNS = ("table", "run", "stage", "method", "labels", "model", "threshold", "epochs", "select",
                   "dice", "iou", "accuracy", "precision", "recall", "per_image_dice",
                   "labels_dice", "paper_dice", "paper_iou", "val_dice", "weights")
# Several classes per image: the class view (mIoU, mean class and global pixel accuracy, the
# labels' own mIoU) in place of one class against the rest, which is 1 where nothing is background.
CLASS_COLUMNS = ("table", "run", "stage", "method", "labels", "model", "threshold", "epochs", "select",
                 "miou", "class_accuracy", "pixel_accuracy", "labels_miou", "val_miou", "weights")


def find_parent(experiment_id: str, fingerprint: str) -> str | None:
    """The run id of this sweep's parent run from an earlier attempt, if any."""
    import mlflow

    runs = mlflow.search_runs([experiment_id], output_format="list", max_results=1,
                              filter_string=f"tags.`wsss.sweep` = '{fingerprint}' and tags.stage = 'sweep'")
    return runs[0].info.run_id if runs else None


def children(experiment_id: str, parent_id: str) -> list[Any]:
    import mlflow

    return mlflow.search_runs([experiment_id], output_format="list", max_results=5000,
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def logged_keys(experiment_id: str, parent_id: str) -> set[str]:
    """``wsss.key`` tags of the finished children of a parent run."""
    return {run.data.tags.get(KEY_TAG) for run in children(experiment_id, parent_id)
            if run.info.status == "FINISHED"}


def tag_run(run_id: str, tags: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        if value is not None:
            client.set_tag(run_id, key, str(value))


def log_direct_eval(entry: Any, mask_set: Any, records: list, config: Any, parent_id: str, key: str,
                    random_weights: bool = False) -> str:
    """A mask set scored on the test split as the prediction itself (no training)."""
    import mlflow

    quality = mask_quality(mask_set, records)
    main = quality[config.data.border_policy]
    tags = {"stage": "direct_eval", "method": mask_set.manifest.labeler, KEY_TAG: key,
            "labels": entry.labeler, "table": entry.table, "paper_row": entry.paper_row}
    params = {"labeler_id": entry.labeler, "fingerprint": mask_set.manifest.fingerprint,
              "params": mask_set.manifest.params, "border_policy": config.data.border_policy,
              "split": "test"}
    with tracking.run(entry.name or f"direct-{entry.labeler}", tags={k: str(v) for k, v in tags.items() if v},
                      params=params, parent_run_id=parent_id,
                      random_weights=random_weights) as active:
        metrics = flat_metrics(main, "test_")
        for policy, result in quality.items():
            metrics.update(flat_metrics(result, f"test_{policy}_"))
        mlflow.log_metrics({**metrics, "test_images": main["images"]})
    return active.info.run_id


def labels_quality(runs: list[Any], metric: str = "pseudo_micro_dice") -> dict[str, tuple[str | None, float]]:
    """Each mask set's threshold (None for sets stored as masks) and Dice (or ``metric``)
    against ground truth, from its run under the sweep: what a trial trained on, beside what it
    learned."""
    quality = {}
    for run in runs:
        dice = run.data.metrics.get(metric)
        if run.data.tags.get("stage") == "pseudo_masks" and dice is not None:
            params = run.data.params
            threshold = params.get("params.threshold") if params.get("kind") == "heatmaps" else None
            quality[run.data.tags["labeler_id"]] = (None if threshold in (None, "None") else threshold, dice)
    return quality


def labels_dice(labels: str, threshold: str, quality: dict[str, tuple[str | None, float]]) -> float | None:
    """Ground truth scores 1; a mask set its logged Dice when the trial reads it as logged (a
    heatmap set at another threshold, or a schedule of sets, has no single figure)."""
    if labels == GROUND_TRUTH:
        return 1.0
    if labels not in quality:
        return None
    logged_threshold, dice = quality[labels]
    if logged_threshold is not None and threshold not in ("-", None, "None") \
            and float(threshold) != float(logged_threshold):
        return None
    return dice


def summary_rows(experiment_id: str, parent_id: str) -> list[dict[str, Any]]:
    """One row per direct evaluation and trial, with the study's numbers beside ours."""
    rows = []
    runs = children(experiment_id, parent_id)
    quality, class_quality = labels_quality(runs), labels_quality(runs, "pseudo_miou")
    for run in runs:
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        scored = "test_micro_dice" in metrics
        if tags.get("stage") not in ("train", "direct_eval") or (tags["stage"] == "direct_eval" and not scored):
            continue  # an unscored train run stays: its val Dice on its own labels is still news
        paper = paper_row(tags.get("paper_row")) if tags.get("paper_row") else None
        rows.append({
            "table": tags.get("table", ""), "run": run.info.run_name, "stage": tags["stage"],
            "method": tags.get("method", ""), "labels": tags.get("labels", params.get("labels", "")),
            "model": params.get("model", "-"), "threshold": params.get("threshold", "-"),
            "epochs": params.get("epochs", "-"), "select": params.get("select", "-"),
            **{name: metrics.get(f"test_micro_{name}") for name in
               ("dice", "iou", "accuracy", "precision", "recall")},
            "per_image_dice": metrics.get("test_per_image_dice"), "miou": metrics.get("test_miou"),
            "class_accuracy": metrics.get("test_class_accuracy"), "pixel_accuracy": metrics.get("test_pixel_accuracy"),
            "labels_miou": labels_dice(tags.get("labels", params.get("labels", "")), params.get("threshold", "-"),
                                       class_quality) if "test_miou" in metrics else None,
            "val_miou": metrics.get("val_miou"),
            "labels_dice": labels_dice(tags.get("labels", params.get("labels", "")),
                                       params.get("threshold", "-"), quality),
            "paper_dice": paper.dice if paper else None, "paper_iou": paper.iou if paper else None,
            "val_dice": metrics.get("val_micro_dice"),
            "weights": "random-init" if tags.get("wsss.random_weights") == "true" else "trained",
        })
    rank = "miou" if any(r["miou"] is not None for r in rows) else "dice"  # several classes: by mIoU
    return sorted(rows, key=lambda r: (r["table"] or "~", -(r[rank] or 0.0)))


def _cell(value: Any) -> str:
    if value is None or value == "None":
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """SUMMARY_COLUMNS, or CLASS_COLUMNS where rows have an mIoU (several classes per image), with
    any class's Dice against background beside them where the data has a background (without
    one, every labelled pixel is some class and that Dice is 1)."""
    if not any(row.get("miou") is not None for row in rows):
        return SUMMARY_COLUMNS
    against_background = any(row.get("dice") is not None and row["dice"] < 1.0 for row in rows)
    return CLASS_COLUMNS[:-1] + (("dice", "labels_dice") if against_background else ()) + CLASS_COLUMNS[-1:]


def to_markdown(rows: list[dict[str, Any]]) -> str:
    columns = summary_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


CONSOLE_WIDTH = 100  # the final summary fits a 100-column terminal


def console_table(rows: list[dict[str, Any]], width: int = CONSOLE_WIDTH) -> str:
    """The summary a person reads at the end of a sweep, at most ``width`` columns: table,
    run, labels, the headline metric (test Dice; test mIoU with several classes; val Dice on the
    run's own labels where there is no ground truth), the labels' own score and the study's
    figure. Names too long for the width are cut with an ellipsis; the full table is
    ``to_markdown`` (MLflow's summary.md, the report)."""
    classes = any(row.get("miou") is not None for row in rows)
    scored = any(row.get("dice") is not None or row.get("miou") is not None for row in rows)
    metric, labels = (("miou", "labels_miou") if classes else ("dice", "labels_dice"))
    heads = ["table", "run", "labels", f"test {'mIoU' if classes else 'Dice'}" if scored else "val Dice*",
             "labels'", "study"]
    body = [[row.get("table") or "-", row.get("run") or "-", str(row.get("labels") or "-"),
             _short(row.get(metric) if scored else row.get("val_dice")), _short(row.get(labels)),
             _short(row.get("paper_dice") if not classes else None)] for row in rows]
    widths = [max(len(head), *(len(line[i]) for line in body)) if body else len(head)
              for i, head in enumerate(heads)]
    spare = width - (sum(widths) + 2 * (len(widths) - 1))
    for index in (1, 2):  # the run and labels names give way first, the run's more
        if spare < 0:
            cut = min(-spare, max(0, widths[index] - 12))
            widths[index] -= cut
            spare += cut
    lines = ["  ".join(_fit(cell, w, numeric=i > 2) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in [heads, ["-" * w for w in widths], *body]]
    if not scored:
        lines.append("* against each run's own labels: the data has no ground truth")
    return "\n".join(line.rstrip() for line in lines)


def _short(value: Any) -> str:
    return "-" if value is None or value == "None" else f"{value:.3f}" if isinstance(value, float) else str(value)


def _fit(cell: str, width: int, numeric: bool) -> str:
    if len(cell) > width:
        cell = cell[: width - 1] + "…"
    return cell.rjust(width) if numeric else cell.ljust(width)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=summary_columns(rows), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def log_summary(parent_id: str, rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    """The summary table (markdown and CSV) and the sweep's figures on the parent run."""
    import mlflow

    client = mlflow.MlflowClient()
    client.log_text(parent_id, to_markdown(rows), "summary.md")
    client.log_text(parent_id, to_csv(rows), "summary.csv")
    client.log_text(parent_id, json.dumps(extra, indent=2, default=str), "sweep.json")


def log_stage_seconds(parent_id: str, seconds: dict[str, float], overheads: list[float] = ()) -> None:
    """Each stage's seconds as a ``stage_seconds_<stage>`` metric of the parent run; a rerun's
    (shorter: it does only what is missing) become the latest values. With ``overheads`` (the
    seconds each trial spent beyond its epochs and test), their mean as
    ``trial_overhead_seconds``."""
    import mlflow

    client = mlflow.MlflowClient()
    for stage, value in seconds.items():
        client.log_metric(parent_id, f"stage_seconds_{stage.replace(' ', '_')}", value)
    if overheads:
        client.log_metric(parent_id, "trial_overhead_seconds", sum(overheads) / len(overheads))


def set_best_alias(experiment_id: str, parent_id: str, model_name: str) -> dict[str, Any] | None:
    """Give the sweep's best registered model the alias ``best``: by test Dice where the data
    has ground truth to score with (as the summary ranks), else by val Dice against each run's
    own labels. Returns {version, run, metric, value}, also tagged on the parent run."""
    import mlflow

    runs = [run for run in children(experiment_id, parent_id)
            if run.data.tags.get("stage") == "train" and run.data.tags.get(MODEL_VERSION_TAG)]
    if not runs:
        return None
    metric = next(name for name in ("test_miou", "test_micro_dice", "val_miou", "val_micro_dice")
                   if any(name in r.data.metrics for r in runs))
    scored = [r for r in runs if metric in r.data.metrics]
    if not scored:
        return None
    best = max(scored, key=lambda r: r.data.metrics[metric])
    version = best.data.tags[MODEL_VERSION_TAG]
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(model_name, "best", version)
    chosen = {"version": version, "run": best.info.run_name, "metric": metric,
              "value": best.data.metrics[metric], "model": model_name}
    tag_run(parent_id, {f"wsss.best_{k}": v for k, v in chosen.items()})
    return chosen
