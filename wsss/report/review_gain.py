"""The review curve in the report: what reviewing K % of the training images bought, from the
review trials' MLflow runs (``jobs/review_curve.py`` makes them; ``wsss.sweep.review_curve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsss.report.plots import _pyplot, save_figure
from wsss.sweep.review_curve import REVIEW_TABLE

REVIEW_TEXT = ("Test Dice of a model trained on the pseudo-masks with K % of the training images "
               "reviewed (the ground truth of those images standing in for a person), chosen least "
               "confident first or at random; gap recovered = (Dice - no review) / (full supervision "
               "- no review).")


def curve_rows(runs: list[Any]) -> list[dict[str, Any]]:
    """One row per point of the review table's runs: selection, share and count reviewed, test
    Dice, and the share of the gap from no review to full supervision it recovers."""
    rows = []
    for run in runs:
        params, metrics = run.data.params, run.data.metrics
        if run.data.tags.get("table") != REVIEW_TABLE or "test_micro_dice" not in metrics:
            continue
        reviewed = int(params.get("reviewed_images", 0) or 0)
        train = int(params.get("train_images", 0) or 0)
        by = "full supervision" if params.get("labels") == "gt" else (params.get("reviewed_by") or
                                                                         ("none" if not reviewed else "?"))
        rows.append({"run": run.info.run_name, "by": by, "reviewed": reviewed, "train_images": train,
                     "share": 100.0 if by == "full supervision" else 100.0 * reviewed / max(train, 1),
                     "dice": metrics["test_micro_dice"], "iou": metrics.get("test_micro_iou")})
    full = [r["dice"] for r in rows if r["by"] == "full supervision"]
    none = [r["dice"] for r in rows if r["by"] == "none"]
    for row in rows:
        gap = (full[0] - none[0]) if full and none else None
        row["recovered"] = (row["dice"] - none[0]) / gap if gap else None
    return sorted(rows, key=lambda r: (r["by"] != "none", r["by"], r["share"]))


def curve_markdown(rows: list[dict[str, Any]]) -> str:
    """The curve as a markdown table; a column for the replaced masks' Dice where rows have it."""
    replaced = any(row.get("replaced_dice") is not None for row in rows)
    lines = ["| reviewed images chosen by | share of training images | images | test Dice | gap recovered |"
             + (" Dice of the masks the review replaced |" if replaced else ""),
             "|---|---|---|---|---|" + ("---|" if replaced else "")]
    for row in rows:
        recovered = "-" if row["recovered"] is None else f"{100 * row['recovered']:.0f} %"
        extra = "" if not replaced else (f" {row['replaced_dice']:.3f} |" if row.get("replaced_dice") is not None
                                         else " - |")
        lines.append(f"| {row['by']} | {row['share']:.0f} % | {row['reviewed'] or '-'} | "
                     f"{row['dice']:.3f} | {recovered} |{extra}")
    return "\n".join(lines)


def plot_curve(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test Dice against the share reviewed, a line per selection, full supervision dashed."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    none = [r for r in rows if r["by"] == "none"]
    for by, marker in (("confidence", "o"), ("random", "s"), ("disagreement", "^")):
        points = sorted(none + [r for r in rows if r["by"] == by], key=lambda r: r["share"])
        if len(points) > len(none):
            axis.plot([p["share"] for p in points], [p["dice"] for p in points], marker=marker,
                      label=f"reviewed: {'least confident' if by == 'confidence' else by}")
    for row in rows:
        if row["by"] == "full supervision":
            axis.axhline(row["dice"], linestyle="--", color="grey", label="full supervision")
    axis.set_xlabel("training images reviewed (%)")
    axis.set_ylabel("test Dice")
    axis.set_title("What a review is worth")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    return save_figure(figure, path)
