"""Pseudo-mask quality against final-model quality, and quality against the CAM threshold.

- ``threshold_sweep``: Dice / precision / recall of a stored heatmap set at many thresholds,
  each heatmap and trimap read once (thresholds are applied exactly as ``MaskSet.read`` does).
- ``quality_points``: one point per trial: x = pseudo-mask Dice of the labels it trained on
  (MLflow's ``pseudo_micro_dice``, or the heatmap sweep at the trial's own threshold), y = its
  test Dice. ``claim_check`` turns the points into the correlation and the spread across
  label sources versus across architectures (the study: labels matter more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsss.data.arrays import resize_mask
from wsss.data.decode import record_truth
from wsss.data.imagefolder import DatasetFormatError
from wsss.data.index import index
from wsss.data.records import DatasetMissingError
from wsss.labelers.base import ThresholdParams, apply_threshold, class_map
from wsss.masks.files import read_manifest
from wsss.masks.store import MaskSet
from wsss.metrics import SegmentationMeter, trimap_to_target
from wsss.report.runs import SweepRuns, is_random_init, label_keys, metric, threshold_of

THRESHOLDS = (1e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GROUND_TRUTH = "gt"


def dataset_records(runs: SweepRuns) -> dict[str, Any]:
    """Records of the sweep's dataset root by image id ({} when the data is not here)."""
    if not runs.data_root:
        return {}
    try:
        dataset = index(runs.data_root, format=runs.data_format, manifest=runs.data_manifest)
        return {record.image_id: record for record in dataset.records}
    except (DatasetMissingError, DatasetFormatError):
        return {}


def threshold_sweep(uri: str, records: dict[str, Any], policy: str,
                    thresholds: tuple[float, ...] = THRESHOLDS) -> dict[float, dict]:
    """{threshold: SegmentationMeter.result()} of a heatmap mask set against the trimaps."""
    mask_set = MaskSet(uri, read_manifest(uri) or {})
    cuts = {t: ThresholdParams(threshold=t) for t in thresholds}
    meters = {t: SegmentationMeter() for t in thresholds}
    for image_id in sorted(mask_set.ids()):
        record = records.get(image_id)
        if record is None or record.trimap_path is None:
            continue
        heatmap = mask_set.read_heatmap(image_id)
        target = trimap_to_target(resize_mask(record_truth(record), heatmap.shape[-2:]), policy)
        classes = mask_set.read_heatmap_classes(image_id) if heatmap.ndim == 3 else None
        for t, meter in meters.items():
            if classes is None:
                meter.update(apply_threshold(heatmap, cuts[t]) == 1, target)
            else:  # a map per class: any class against background
                cut = class_map(heatmap, classes, cuts[t])
                meter.update((cut > 0) & (cut != 255), target)
    return {t: meter.result() for t, meter in meters.items()}


@dataclass
class QualitySource:
    """Pseudo-mask quality of the stored heatmap sets, swept lazily and cached."""

    runs: SweepRuns
    records: dict[str, Any]
    policy: str
    sweeps: dict[str, dict[float, dict]] = field(default_factory=dict)

    def heatmap_sets(self) -> list[Any]:
        """pseudo_masks runs whose store holds heatmaps that are still on disk."""
        found = []
        for run in self.runs.stage("pseudo_masks"):
            store = run.data.params.get("store")
            if run.data.params.get("kind") == "heatmaps" and store and read_manifest(store):
                found.append(run)
        return found

    def sweep(self, labeler_id: str, extra: tuple[float, ...] = ()) -> dict[float, dict]:
        """{threshold: result} over THRESHOLDS and every trial's threshold (one pass per set)."""
        run = self.runs.mask_set_run(labeler_id)
        trials = {threshold_of(r) for r in self.runs.stage("train")} - {None}
        wanted = tuple(sorted(set(THRESHOLDS) | trials | set(extra)))
        cached = self.sweeps.get(labeler_id, {})
        if run is None or not self.records or set(wanted) <= set(cached):
            return cached
        self.sweeps[labeler_id] = threshold_sweep(run.data.params["store"], self.records,
                                                  self.policy, wanted)
        return self.sweeps[labeler_id]


def pseudo_dice(source: QualitySource, labeler_id: str, threshold: float | None) -> tuple[float | None, str]:
    """(pseudo-mask Dice of a mask set at a threshold, where the number comes from)."""
    run = source.runs.mask_set_run(labeler_id)
    if run is None:
        return None, "no mask set run"
    own = threshold_of(run)
    heatmaps = run.data.params.get("kind") == "heatmaps"
    if threshold is None or not heatmaps or (own is not None and abs(own - threshold) < 1e-12):
        return metric(run, "pseudo", source.policy, "dice"), "MLflow pseudo_micro_dice"
    swept = source.sweep(labeler_id, (threshold,)).get(threshold)
    if swept is None:
        return None, "heatmaps not on disk"
    return swept["micro"]["dice"], f"stored heatmaps at {threshold:g}"


def quality_points(source: QualitySource) -> list[dict[str, Any]]:
    """One point per trial with test metrics (ground-truth trials at x = 1)."""
    points = []
    for run in source.runs.stage("train"):
        test = metric(run, "test", source.policy, "dice")
        keys = label_keys(run)
        if test is None or not keys:
            continue
        final = keys[-1]  # a curriculum ends on its last source: the one the model ends up fitting
        if final == GROUND_TRUTH:
            x, origin = 1.0, "ground truth"
        else:
            x, origin = pseudo_dice(source, final, threshold_of(run))
        points.append({"run": run.info.run_name, "run_id": run.info.run_id,
                       "method": run.data.tags.get("method", final), "labels": ",".join(keys),
                       "model": run.data.params.get("model", ""), "threshold": threshold_of(run),
                       "mask_set": final, "pseudo_dice": x, "pseudo_source": origin,
                       "test_dice": test, "weights": "random-init" if is_random_init(run) else "configured"})
    return points


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def claim_check(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Correlation of pseudo-mask Dice with test Dice (pseudo-label trials), and the spread of
    test Dice across label sources (one model) versus across architectures (ground truth)."""
    weak = [p for p in points if p["mask_set"] != GROUND_TRUTH and p["pseudo_dice"] is not None]
    result: dict[str, Any] = {"n": len(weak), "pearson": None, "spearman": None}
    if len(weak) >= 3:
        x = np.array([p["pseudo_dice"] for p in weak])
        y = np.array([p["test_dice"] for p in weak])
        if x.std() > 0 and y.std() > 0:
            result["pearson"] = float(np.corrcoef(x, y)[0, 1])
            result["spearman"] = _spearman(x, y)
    models = [p["model"] for p in weak]
    main_model = max(set(models), key=models.count) if models else None
    by_labels = [p["test_dice"] for p in weak if p["model"] == main_model]
    by_model = {}
    for p in points:
        if p["mask_set"] == GROUND_TRUTH:
            by_model[p["model"]] = max(by_model.get(p["model"], 0.0), p["test_dice"])
    result.update(model=main_model, label_sources=len(by_labels),
                  label_spread=float(np.ptp(by_labels)) if len(by_labels) > 1 else None,
                  architectures=len(by_model),
                  architecture_spread=float(np.ptp(list(by_model.values()))) if len(by_model) > 1 else None,
                  random_init=any(p["weights"] == "random-init" for p in points))
    return result


def claim_text(check: dict[str, Any]) -> str:
    """What the numbers say about 'pseudo-mask quality matters more than the architecture'."""
    parts = []
    if check["pearson"] is None:
        parts.append(f"Too few pseudo-label trials with varying scores ({check['n']}) for a "
                     f"correlation.")
    else:
        strength = "strong" if abs(check["pearson"]) >= 0.7 else (
            "moderate" if abs(check["pearson"]) >= 0.4 else "weak")
        parts.append(f"Across {check['n']} pseudo-label trials, the pseudo-mask Dice and the trained "
                     f"model's test Dice correlate {strength}ly (Pearson r = {check['pearson']:.2f}, "
                     f"Spearman ρ = {check['spearman']:.2f}).")
    if check["label_spread"] is not None and check["architecture_spread"] is not None:
        verdict = ("supports" if check["label_spread"] > check["architecture_spread"] else
                   "does not support")
        parts.append(f"Test Dice spans {check['label_spread']:.3f} across {check['label_sources']} "
                     f"pseudo-label trials with one model ({check['model']}) and "
                     f"{check['architecture_spread']:.3f} across {check['architectures']} "
                     f"architectures on ground truth: this {verdict} the study's claim that "
                     f"pseudo-mask quality matters more than the architecture.")
    if check["random_init"]:
        parts.append("Caution: random-init runs are included; their scores reflect the smoke "
                     "set-up, not the methods.")
    return " ".join(parts)
