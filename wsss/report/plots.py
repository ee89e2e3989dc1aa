"""The report's plots (matplotlib, Agg): pseudo-mask vs model quality, and the threshold curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsss.paper import ROWS
from wsss.report.runs import SweepRuns, is_random_init, label_keys, metric, threshold_of
from wsss.storage import writing

METRIC_COLOURS = {"dice": "tab:blue", "precision": "tab:green", "recall": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    """PNG at 100 dpi, whole or not at all."""
    plt = _pyplot()
    with writing(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return path


def _label_points(axis: Any, points: list[dict[str, Any]], height: float = 0.03,
                  width: float = 0.12) -> None:
    """Run names beside the points; a label that would overlap one already placed moves up
    (in data units: ``height`` per line of text, ``width`` per name), with a leader line."""
    placed: list[tuple[float, float]] = []
    for p in sorted(points, key=lambda q: (q["test_dice"], q["pseudo_dice"])):
        x, y = p["pseudo_dice"], p["test_dice"]
        label_y = y + 0.012
        while any(abs(x - a) < width and abs(label_y - b) < height for a, b in placed):
            label_y += height
        placed.append((x, label_y))
        moved = label_y > y + 0.02
        axis.annotate(p["run"], (x, y), xytext=(x + 0.012, label_y), textcoords="data", fontsize=7,
                      color="dimgray", va="bottom",
                      arrowprops={"arrowstyle": "-", "color": "lightgray", "lw": 0.5} if moved else None)


def plot_quality_scatter(points: list[dict[str, Any]], check: dict[str, Any], policy: str,
                         path: Path) -> Path | None:
    """x = pseudo-mask Dice of the trial's labels, y = its test Dice; colour = method."""
    shown = [p for p in points if p["pseudo_dice"] is not None]
    if not shown:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 6))
    methods = sorted({p["method"] for p in shown})
    colours = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    for index, method in enumerate(methods):
        group = [p for p in shown if p["method"] == method]
        marker = "*" if method == "gt" else "o"
        axis.scatter([p["pseudo_dice"] for p in group], [p["test_dice"] for p in group],
                     s=140 if marker == "*" else 70, marker=marker, color=colours(index % colours.N),
                     edgecolor="black", linewidth=0.5, label=method, zorder=3)
    _label_points(axis, shown)
    axis.plot([0, 1], [0, 1], color="lightgray", linestyle=":", zorder=1, label="y = x")
    axis.set(xlim=(-0.02, 1.16), ylim=(-0.02, 1.05), xticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0],
             xlabel="pseudo-mask Dice of the labels the model trained on",
             ylabel="test Dice of the trained model (micro)",
             title=f"Pseudo-mask quality vs final model quality (border: {policy})"
                   + ("\n⚠ includes random-init runs" if any(p["weights"] == "random-init"
                                                               for p in shown) else ""))
    axis.grid(alpha=0.3)
    if check.get("pearson") is not None:
        axis.text(0.02, 0.97, f"pseudo-label trials: n = {check['n']}\nPearson r = "
                  f"{check['pearson']:.2f}\nSpearman ρ = {check['spearman']:.2f}",
                  transform=axis.transAxes, va="top", fontsize=9,
                  bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "lightgray"})
    axis.legend(title="method (★ = ground truth)", loc="center left", bbox_to_anchor=(1.01, 0.5),
                fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def curve_labeler(runs: SweepRuns) -> str:
    """The heatmap labeler of the threshold ablation: Table 2.2's labels, else gradcam."""
    keys = [label_keys(r)[-1] for r in runs.stage("train")
            if r.data.tags.get("table") == "2.2" and label_keys(r)]
    return max(set(keys), key=keys.count) if keys else "gradcam"


def trained_points(runs: SweepRuns, labeler_id: str, policy: str) -> list[dict[str, Any]]:
    """Test metrics of the trials trained on ``labeler_id``'s masks, by threshold."""
    mask_run = runs.mask_set_run(labeler_id)
    own = threshold_of(mask_run) if mask_run is not None else None
    points = []
    for run in runs.stage("train"):
        if label_keys(run) != [labeler_id] or metric(run, "test", policy, "dice") is None:
            continue
        threshold = threshold_of(run) if threshold_of(run) is not None else own
        if threshold is not None:
            points.append({"source": "trained", "labeler": labeler_id, "threshold": threshold,
                           "run": run.info.run_name, "run_id": run.info.run_id,
                           "weights": "random-init" if is_random_init(run) else "configured",
                           **{m: metric(run, "test", policy, m) for m in ("dice", "iou", "precision",
                                                                         "recall")}})
    return sorted(points, key=lambda p: p["threshold"])


def study_points() -> list[dict[str, Any]]:
    """The study's Table 2.2 (Grad-CAM thresholds -> DLV3)."""
    return [{"source": "study", "labeler": "gradcam", "threshold": float(row.key.split("@")[1]),
             "dice": row.dice, "iou": row.iou, "precision": row.precision, "recall": row.recall}
            for row in ROWS if row.table == "2.2"]


def pseudo_points(sweeps: dict[str, dict[float, dict]]) -> list[dict[str, Any]]:
    return [{"source": "pseudo-masks", "labeler": labeler, "threshold": t,
             **{m: result["micro"][m] for m in ("dice", "iou", "precision", "recall")}}
            for labeler, sweep in sorted(sweeps.items()) for t, result in sorted(sweep.items())
            if result["images"]]


def _lines(axis: Any, points: list[dict], linestyle: str, marker: str, label: str) -> None:
    # shrinking markers: where metrics coincide (e.g. Dice = recall = 0) every one stays visible
    for size, (name, colour) in zip((10, 7, 4), METRIC_COLOURS.items()):
        axis.plot([p["threshold"] for p in points], [p[name] for p in points], linestyle=linestyle,
                  marker=marker, markersize=size if marker != "." else None, color=colour,
                  label=f"{name} ({label})", markerfacecolor="white" if linestyle != "-" else colour)


def _threshold_axis(axis: Any, title: str) -> None:
    axis.set_xscale("log")
    axis.set(ylim=(-0.02, 1.02), xlabel="CAM threshold (log scale)", ylabel="score", title=title)
    axis.grid(alpha=0.3, which="both")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8, loc="best")
    else:
        axis.text(0.5, 0.5, "no data in this sweep", ha="center", transform=axis.transAxes)


def plot_threshold_curves(trained: list[dict], study: list[dict], pseudo: list[dict],
                          labeler: str, policy: str, path: Path,
                          random_init: bool = False) -> Path | None:
    """Three panels: trained models vs threshold (ours and the study's), the labeler's
    pseudo-masks vs threshold, and pseudo-mask Dice of every heatmap labeler."""
    if not (trained or pseudo):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    if trained:
        _lines(axes[0], trained, "-", "o", "ours")
    _lines(axes[0], study, "--", "s", "study")
    _threshold_axis(axes[0], f"Trained on {labeler} masks: test set")
    own = [p for p in pseudo if p["labeler"] == labeler]
    if own:
        _lines(axes[1], own, "-", ".", labeler)
    _threshold_axis(axes[1], f"{labeler} pseudo-masks vs ground truth")
    for labeler_id in sorted({p["labeler"] for p in pseudo}):
        group = [p for p in pseudo if p["labeler"] == labeler_id]
        axes[2].plot([p["threshold"] for p in group], [p["dice"] for p in group], marker=".",
                     label=labeler_id)
    _threshold_axis(axes[2], "Pseudo-mask Dice per CAM method")
    flag = "  —  ⚠ random-init runs (classifier and/or models)" if random_init else ""
    figure.suptitle(f"Dice, precision and recall against the CAM threshold (border: {policy}){flag}",
                    fontsize=13)
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    return save_figure(figure, path)
