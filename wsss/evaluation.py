"""Score a folder of predicted masks (``<image_id>.png``) against the dataset's trimaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wsss.data.decode import DecodeError, read_trimap
from wsss.data.pets import Record
from wsss.metrics import SegmentationMeter, binarize_prediction, trimap_to_target


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


def evaluate_folder(pred_dir: str | Path, records: list[Record], border_policy: str = "ignore") -> dict:
    """Metrics of the masks in ``pred_dir`` against ``records``' trimaps (see ``wsss.metrics``)."""
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
    meter = SegmentationMeter()
    for image_id in sorted(set(expected) & set(present)):
        try:
            prediction = read_prediction(present[image_id])
            target = trimap_to_target(read_trimap(expected[image_id].trimap_path), border_policy)
        except (OSError, ValueError, DecodeError) as error:
            problems["unreadable"].append(f"{image_id} ({error})")
            continue
        if prediction.shape != target.shape:
            problems["wrong size"].append(
                f"{image_id} ({prediction.shape[1]}x{prediction.shape[0]}, "
                f"expected {target.shape[1]}x{target.shape[0]})"
            )
            continue
        meter.update(prediction, target)
    if any(problems.values()):
        raise PredictionError(_problems_message(problems))
    result = meter.result()
    result["border_policy"] = border_policy
    return result
