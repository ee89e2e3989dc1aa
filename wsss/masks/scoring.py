"""Masks scored against ground truth: a mask set (``mask_quality``), one labeler run in
process (``pseudo_eval``), and a folder of predicted ``<image_id>.png`` (``evaluate_folder``;
class maps of several classes per image: ``evaluate_class_folder``).

Ground truth is read here for scoring only; nothing in this module feeds a labeler or training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsss.data.arrays import decode_records, resize_mask, working_boxes
from wsss.data.decode import DecodeError, record_class_truth, record_truth
from wsss.data.records import Record
from wsss.labelers.entries import padded
from wsss.metrics import BORDER_POLICIES, SegmentationMeter, binarize_prediction, trimap_to_target


class PredictionError(ValueError):
    """Predictions that cannot be scored; the message lists every bad id by problem."""


def read_prediction(path: Path) -> np.ndarray:
    """A predicted mask PNG with values {0, 1} or {0, 255} -> bool foreground."""
    with Image.open(path) as image:
        mask = np.asarray(image.convert("L") if image.mode not in ("L", "P", "1") else image)
    values = set(np.unique(mask).tolist())
    if not values <= {0, 1} and not values <= {0, 255}:
        raise ValueError(f"values {sorted(values)[:6]} are not {{0, 1}} or {{0, 255}}")
    return binarize_prediction(mask)


def _problems_message(problems: dict[str, list[str]]) -> str:
    lines = ["predictions cannot be scored:"]
    for kind, ids in problems.items():
        if ids:
            shown = ", ".join(ids[:50]) + (f", ... ({len(ids)} in all)" if len(ids) > 50 else "")
            lines.append(f"  {kind} ({len(ids)}): {shown}")
    return "\n".join(lines)


def read_class_prediction(path: Path, values: np.ndarray) -> np.ndarray:
    """A predicted class map PNG (indexed or grey; 0 background, k + 1 class k, 255 ignore) with
    its values mapped to the dataset's (``values[v]``: the dataset value of predicted value v)."""
    with Image.open(path) as image:
        mask = np.asarray(image if image.mode in ("L", "P") else image.convert("L"))
    unknown = sorted(set(np.unique(mask).tolist()) - {255} - set(range(len(values))))
    if unknown:
        raise ValueError(f"values {unknown[:6]} name no class (0..{len(values) - 1}, 255 ignore)")
    return np.where(mask == 255, 0, values[np.minimum(mask, len(values) - 1)]).astype(np.uint8)


def _score_folder(pred_dir: str | Path, records: list[Record], score: Any) -> int:
    """Call ``score(record, path)`` (it raises OSError/ValueError/DecodeError for a bad file, or
    returns the (prediction shape, truth shape) it compared) for every record with ground truth;
    PredictionError listing every missing, extra, unreadable or wrong-size mask. Images scored."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise PredictionError(f"{pred_dir}: no such folder of predicted masks")
    expected = {r.image_id: r for r in records if r.trimap_path is not None}
    present = {p.stem: p for p in pred_dir.glob("*.png") if not p.name.startswith("._")}
    problems: dict[str, list[str]] = {
        "missing": sorted(set(expected) - set(present)),
        "extra": sorted(set(present) - set(expected)),
        "wrong size": [],
        "unreadable": [],
    }
    for image_id in sorted(set(expected) & set(present)):
        try:
            shape, truth_shape = score(expected[image_id], present[image_id])
        except (OSError, ValueError, DecodeError) as error:
            problems["unreadable"].append(f"{image_id} ({error})")
            continue
        if shape != truth_shape:
            problems["wrong size"].append(f"{image_id} ({shape[1]}x{shape[0]}, expected "
                                          f"{truth_shape[1]}x{truth_shape[0]})")
    if any(problems.values()):
        raise PredictionError(_problems_message(problems))
    return len(set(expected) & set(present))


def evaluate_folder(pred_dir: str | Path, records: list[Record], border_policy: str = "ignore") -> dict:
    """Metrics of the masks in ``pred_dir`` against ``records``' trimaps (see ``wsss.metrics``)."""
    meter = SegmentationMeter()

    def score(record: Record, path: Path) -> tuple:
        prediction = read_prediction(path)
        target = trimap_to_target(record_truth(record), border_policy)
        if prediction.shape == target.shape:
            meter.update(prediction, target)
        return prediction.shape, target.shape

    _score_folder(pred_dir, records, score)
    result = meter.result()
    result["border_policy"] = border_policy
    return result


def evaluate_class_folder(pred_dir: str | Path, records: list[Record], classes: list[str]) -> dict:
    """mIoU, per-class IoU and any-class foreground scores of the class maps in ``pred_dir``
    against the class-indexed truth (several classes per image). A ``classes.json`` beside the
    maps (``wsss predict`` and ``wsss export`` write one) names what each value means; without
    one the values follow ``classes``. A predicted 255 counts as background (as in
    ``mask_quality``); pixels the truth ignores are not scored."""
    import json

    legend = Path(pred_dir) / "classes.json"
    values = np.arange(len(classes) + 1)
    if legend.is_file():
        named = json.loads(legend.read_text())["values"]
        order = ["background", *classes]
        unknown = [name for key, name in named.items() if key != "255" and name not in order]
        if unknown:
            raise PredictionError(f"{legend}: classes {unknown} are not in the dataset ({', '.join(classes)})")
        values = np.zeros(max(int(k) for k in named if k != "255") + 1, np.int64)
        for key, name in named.items():
            if key != "255":
                values[int(key)] = order.index(name)
    meter = SegmentationMeter(len(classes))

    def score(record: Record, path: Path) -> tuple:
        prediction, target = read_class_prediction(path, values), record_class_truth(record)
        if prediction.shape == target.shape:
            meter.update(prediction, target)
        return prediction.shape, target.shape

    _score_folder(pred_dir, records, score)
    return meter.result(classes)


def mask_quality(mask_set: Any, records: list[Record], policies=BORDER_POLICIES,
                 classes: list[str] | None = None, background: bool = True) -> dict[str, dict]:
    """Pseudo-mask metrics per border policy at the mask set's resolution (255 counts as 0).
    With ``classes`` (several classes per image: class maps) the foreground is any class,
    and each result also carries the class view (``SegmentationMeter.class_view``: over the
    data's classes, ``background`` or not) against the class-indexed truth."""
    meters = {policy: SegmentationMeter() for policy in policies}
    by_class = SegmentationMeter(len(classes)) if classes else None
    present = mask_set.ids()
    ignored = total = 0
    for record in records:
        if record.image_id not in present or record.trimap_path is None:
            continue
        mask = mask_set.read(record.image_id)
        trimap = resize_mask(record_truth(record), mask.shape)
        ignored, total = ignored + int((mask == 255).sum()), total + mask.size
        foreground = (mask > 0) & (mask != 255) if classes else mask == 1
        for policy, meter in meters.items():
            meter.update(foreground, trimap_to_target(trimap, policy))
        if by_class is not None:
            by_class.update(np.where(mask == 255, 0, mask), resize_mask(record_class_truth(record), mask.shape))
    results = {policy: meter.result() for policy, meter in meters.items()}
    extra = {}
    if by_class is not None and by_class.images:
        scored = by_class.result(classes, background)
        extra = {key: scored[key] for key in ("miou", "class_iou", "pixel_accuracy", "class_accuracy")}
    for result in results.values():
        result["ignored_fraction"] = ignored / max(total, 1)
        result.update(extra)
    return results


def pseudo_eval(labeler: Any, records: list[Record], size: int, border_policy: str = "ignore",
                batch_size: int = 16, classes: list[str] | None = None) -> dict[str, Any]:
    """Score one labeler's masks against the trimaps, in this process (no Ray, no store). With
    ``classes`` (several classes per image) the labeler gets each image's classes and the data's
    box per class, and its class maps are scored by mIoU against the class-indexed truth."""
    meter = SegmentationMeter(len(classes) if classes else 1)
    quarantined = []
    for start in range(0, len(records), batch_size):
        arrays = decode_records(records[start:start + batch_size], size)
        quarantined += arrays.quarantine.entries
        if not len(arrays):
            continue
        by_id = {record.image_id: record for record in records[start:start + batch_size]}
        chunk = [by_id[i] for i in arrays.image_ids]
        width = max(len(r.present) for r in chunk)
        batch = {"image": arrays.images, "image_id": np.asarray(arrays.image_ids, dtype=object),
                 "labels": padded([r.present for r in chunk], width),
                 "classes": padded([r.mask_classes for r in chunk], width),
                 "given_box": np.stack([working_boxes(r, size, width) for r in chunk])}
        masks = labeler(batch)["mask"]
        if classes:
            meter.update_batch(np.where(masks == 255, 0, masks), arrays.classmaps)
            continue
        for mask, trimap in zip(masks, arrays.trimaps):
            meter.update(mask == 1, trimap_to_target(trimap, border_policy))
    result = meter.result(classes, getattr(labeler.params, "background", True))
    result.update({"border_policy": border_policy, "labeler": labeler.name,
                   "params": labeler.params.model_dump(mode="json"), "quarantine": quarantined})
    return result
