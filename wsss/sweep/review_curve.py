"""What a review is worth: a simulated review of K % of the training images, chosen by
confidence or at random, and the test Dice of a model trained on the result.

The ground truth of the chosen images (and only of those) stands in for the person reviewing
them: it is written as the folder of ``<image_id>.png`` that ``wsss import`` reads, with the
choice recorded as ``wsss export --select`` records it. Each point is then a trial of one sweep
(``labels: <base>``, ``reviewed: <folder>``), beside full supervision (``labels: gt``) and no
review (K = 0): one MLflow parent run with a child per point, and the report draws the curve
(``wsss.report.review_gain``). Nothing else reads ground truth: checkpoints are chosen on the run's
own labels (the reviewed val images are not reviewed here: the review covers training images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsss import console, storage
from wsss.config import StudyConfig, parse_config
from wsss.data.arrays import resize_mask
from wsss.data.decode import record_truth
from wsss.data.records import DatasetIndex
from wsss.masks.export import ExportImage, score_images, select_count, select_images, selection_path, selection_record
from wsss.masks.plan import agreement_sets, labeler_context, open_study_mask_set
from wsss.metrics import SegmentationMeter, trimap_to_target

REVIEW_TABLE = "review"
POINTS = (0, 5, 10, 20, 50)
SELECTIONS = ("confidence", "random")


def reviewer_folder(chosen: list[ExportImage], folder: Path, border_policy: str, record: dict) -> Path:
    """The chosen images' ground truth at their own size (0 background, 1 pet, 255 where the
    border policy ignores), as a reviewer's PNG folder, with the choice beside it."""
    import json

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for image in chosen:
        target = trimap_to_target(record_truth(image.record), border_policy)
        with storage.writing(folder / f"{image.record.image_id}.png") as temporary:
            Image.fromarray(target, mode="L").save(temporary, format="PNG")
    storage.write_text(selection_path(str(folder), "png"), json.dumps(record, indent=2))
    return folder


def scored_training_images(config: StudyConfig, dataset: DatasetIndex, base: str,
                           checkpoint: str | None) -> tuple[Any, list[ExportImage]]:
    """The base set and its training images, each with its confidence against the study's
    other sets (as ``wsss export --sort confidence`` ranks them)."""
    context = labeler_context(config, checkpoint)
    mask_set = open_study_mask_set(config, dataset, context, base)
    others = agreement_sets(config, dataset, context, base)
    return mask_set, score_images(mask_set, dataset.split("train"), others)


@dataclass(frozen=True)
class ReviewPoint:
    folder: Path  # the reviewer's PNG folder (wsss import reads it)
    replaced_dice: float  # the base masks of the chosen images against their ground truth


def labels_dice(mask_set: Any, images: list[ExportImage], border_policy: str) -> float:
    """Micro Dice of the set's masks of ``images`` against their ground truth (scoring only:
    how bad the masks a selection hands to the reviewer were)."""
    meter = SegmentationMeter()
    for image in images:
        mask = mask_set.read(image.record.image_id)
        truth = trimap_to_target(resize_mask(record_truth(image.record), mask.shape[:2]), border_policy)
        meter.update(mask == 1, truth)
    return meter.result()["micro"]["dice"]


def review_folders(mask_set: Any, images: list[ExportImage], points: list[int], selections: list[str],
                   seed: int, root: Path, border_policy: str) -> dict[tuple[str, int], ReviewPoint]:
    """One reviewer folder per (selection, K % > 0), with how good the masks it replaces were."""
    folders = {}
    for by in selections:
        for share in (p for p in points if p > 0):
            chosen = select_images(images, select_count(f"{share}%", len(images)), by, seed)
            record = selection_record(mask_set, chosen, by, f"{share}%", seed, len(images))
            folders[(by, share)] = ReviewPoint(reviewer_folder(chosen, root / f"{by}-{share}", border_policy, record),
                                               labels_dice(mask_set, chosen, border_policy))
    return folders


def curve_config(config: StudyConfig, base: str, folders: dict[tuple[str, int], ReviewPoint],
                 weight: float) -> StudyConfig:
    """The study with the curve's trials: full supervision, the base labels unreviewed, and
    one trial per reviewer folder; its own experiment name (``<name>-review``). The weak trials
    take the study's train section whole (``train.rounds`` and ``train.self_training``
    included: a reviewed image keeps its reviewed mask in every round); full supervision is
    one round."""
    trials = [{"name": "review-gt", "table": REVIEW_TABLE, "labels": "gt", "rounds": 1,  # never self-trained
               "self_training_models": 1},
              {"name": "review-0%", "table": REVIEW_TABLE, "labels": base}]
    trials += [{"name": f"review-{by}-{share}%", "table": REVIEW_TABLE, "labels": base,
                "reviewed": str(point.folder), "reviewed_weight": weight}
               for (by, share), point in sorted(folders.items())]
    data = config.model_dump(mode="json")
    data["name"] = f"{config.name}-review"
    data["sweep"] = {**data["sweep"], "trials": trials, "space": {}, "direct_eval": []}
    return parse_config(data, "review curve")


def note_selection(folders: dict[tuple[str, int], ReviewPoint], images: int) -> None:
    for (by, share), point in sorted(folders.items()):
        count = sum(1 for _ in point.folder.glob("*.png"))
        console.say(f"  review {by} {share} %: {count} of {images} training images, their masks' Dice "
                    f"{point.replaced_dice:.3f} ({point.folder})")


def share_points(text: str) -> list[int]:
    """``0,5,10,20,50`` -> [0, 5, 10, 20, 50] (percent of the training images)."""
    try:
        points = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--points {text!r}: expected percentages such as 0,5,10,20,50") from None
    if not points or points[0] < 0 or points[-1] > 100:
        raise ValueError(f"--points {text!r}: percentages between 0 and 100")
    return points
