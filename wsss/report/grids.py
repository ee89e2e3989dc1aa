"""Figure grids in the study's style: input | ground truth | labels it learnt from | prediction |
overlay.

One run per method (its best by test Dice): a trained model's checkpoint artifact predicts on
the CPU; a direct evaluation's prediction is its stored mask. Two grids per method: the same
fixed sample of test ids for every method, and its worst k test images by Dice (from the
run's ``test_per_image.csv``, or scored here for stored masks).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.arrays import resize_image, resize_mask
from wsss.data.decode import decode_image, record_truth
from wsss.data.index import index
from wsss.data.records import DatasetMissingError
from wsss.masks.files import read_manifest
from wsss.masks.store import MaskSet
from wsss.metrics import confusion, scores, trimap_to_target
from wsss.models.checkpoints import load_segmentation
from wsss.panels import mask_to_rgb, overlay, sample_ids, save_grid
from wsss.report.runs import SweepRuns, is_random_init, metric
from wsss.train.steps import predict_logits

COLUMNS = ["input", "ground truth", "pseudo-mask (its labels)", "prediction",
           "overlay: ground truth\ngreen, prediction red"]
PER_IMAGE_ARTIFACT = "test_per_image.csv"
PREDICT_BATCH = 16
SCORED_HERE = 500  # at most this many test images are predicted here to find a run's worst


@dataclass
class Predictor:
    """Masks of one run: ``predict(ids) -> {id: (image, target, prediction)}``."""

    key: str  # the method, as the grid's file name and caption show it
    run: Any
    # {id: (image, ground truth, prediction, labels it learnt from)}
    predict: Callable[[list[str]], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]


def read_per_image(runs: SweepRuns, run: Any) -> dict[str, float]:
    """{image_id: dice} from a trial's test_per_image.csv ({} when it has none)."""
    local = runs.download(run, PER_IMAGE_ARTIFACT)
    if local is None:
        return {}
    with open(local, newline="") as handle:
        return {row["image_id"]: float(row["dice"]) for row in csv.DictReader(handle)}


def _ground_truth(record: Any, shape: tuple[int, int], policy: str) -> np.ndarray:
    return trimap_to_target(resize_mask(record_truth(record), shape), policy)


def _image(record: Any, size: int) -> np.ndarray:
    return resize_image(decode_image(record.image_path), size)


def stored_masks(runs: SweepRuns, labeler_id: str) -> MaskSet | None:
    """The mask set a labeler id's pseudo_masks run logged, where its store is still readable."""
    mask_run = runs.mask_set_run(labeler_id)
    store = mask_run.data.params.get("store") if mask_run is not None else None
    manifest = read_manifest(store) if store else None
    return MaskSet(store, manifest) if manifest is not None else None


def learnt_from(runs: SweepRuns, run: Any) -> Callable[[str, np.ndarray], np.ndarray]:
    """``(id, ground truth) -> labels`` a trial learnt from last: its pseudo-mask (all ignore
    where the set is not readable here), or the ground truth for a supervised run."""
    text = run.data.params.get("labels") or run.data.tags.get("labels") or "gt"
    last = text.split(",")[-1].split(":")[0].strip()
    mask_set = None if last == "gt" else stored_masks(runs, last)
    present = mask_set.ids() if mask_set is not None else set()

    def labels(image_id: str, target: np.ndarray) -> np.ndarray:
        if last == "gt":
            return target
        if image_id not in present:
            return np.full(target.shape, 255, np.uint8)
        return resize_mask(mask_set.read(image_id), target.shape)

    return labels


def model_predictor(runs: SweepRuns, run: Any, records: dict, policy: str) -> Predictor | None:
    """A trained run's checkpoint artifact, loaded on the CPU."""
    local = runs.download(run, "checkpoint/tested_model.pt")
    if local is None:
        return None
    labels_of = learnt_from(runs, run)

    loaded: list = []  # the model, loaded once on first use

    def predict(ids: list[str]) -> dict:
        import torch

        if not loaded:
            loaded.extend(load_segmentation(local))
        model, payload = loaded
        size, found = payload["image_size"], {}
        for start in range(0, len(ids), PREDICT_BATCH):
            chunk = ids[start:start + PREDICT_BATCH]
            images = np.stack([_image(records[i], size) for i in chunk])
            logits = predict_logits(model, torch.as_tensor(images), torch.device("cpu"))
            masks = (logits[:, 0] > 0).numpy().astype(np.uint8)
            for image_id, image, mask in zip(chunk, images, masks):
                target = _ground_truth(records[image_id], (size, size), policy)
                found[image_id] = (image, target, mask, labels_of(image_id, target))
        return found

    return Predictor(trial_key(run), run, predict)


def trial_key(run: Any) -> str:
    """What a trained run's grid is named by: its method, or the mask set it learnt from where
    that differs (two GrabCut sets, one in the CAM box and one seeded, each get their grids)."""
    method = run.data.tags.get("method") or run.info.run_name
    labels = run.data.tags.get("labels", "")
    return labels if labels and labels not in (method, "gt", "schedule") else method


def mask_predictor(runs: SweepRuns, run: Any, records: dict, policy: str) -> Predictor | None:
    """A direct evaluation: the stored mask set is the prediction (and what it learnt from)."""
    mask_set = stored_masks(runs, run.data.tags.get("labels", ""))
    if mask_set is None:
        return None
    present = mask_set.ids()

    def predict(ids: list[str]) -> dict:
        found = {}
        for image_id in (i for i in ids if i in present):
            mask = mask_set.read(image_id)
            image = _image(records[image_id], mask.shape[0])
            found[image_id] = (image, _ground_truth(records[image_id], mask.shape, policy),
                               (mask == 1).astype(np.uint8), mask)
        return found

    return Predictor(f"{run.data.tags.get('labels')} (mask as prediction)", run, predict)


def per_image_dice(predictor: Predictor, ids: list[str]) -> dict[str, float]:
    """Dice per image, scored here (for predictions that have no logged per-image scores)."""
    return {i: scores(confusion(prediction, target))["dice"]
            for i, (_, target, prediction, _) in predictor.predict(ids).items()}


def test_ids(runs: SweepRuns, logged: dict[str, dict[str, float]]) -> list[str]:
    """The sweep's test ids: from the logged per-image scores, else the dataset index rebuilt
    with the trials' test count as its limit, used only when its fingerprint matches theirs."""
    ids = sorted({i for scores in logged.values() for i in scores})
    trial = next(iter(runs.stage("train")), None)
    if ids or trial is None or not runs.data_root:
        return ids
    params = trial.data.params
    try:
        rebuilt = index(runs.data_root, format=runs.data_format, manifest=runs.data_manifest,
                        limit=int(params.get("test_images", 0)) or None)
    except (DatasetMissingError, ValueError):
        return []
    if rebuilt.fingerprint() != params.get("dataset_fingerprint"):
        return []
    return sorted(record.image_id for record in rebuilt.split("test"))


def representatives(runs: SweepRuns, policy: str) -> list[Any]:
    """Per method, the run with the best test Dice (trials first, then direct evaluations)."""
    best: dict[str, Any] = {}
    for run in runs.stage("train") + runs.stage("direct_eval"):
        score = metric(run, "test", policy, "dice")
        if score is None:
            continue
        direct = run.data.tags.get("stage") == "direct_eval"
        key = (run.data.tags.get("stage"), run.data.tags.get("method") or run.info.run_name,
               run.data.tags.get("labels") if direct else trial_key(run))
        if key not in best or score > metric(best[key], "test", policy, "dice"):
            best[key] = run
    return [best[k] for k in sorted(best, key=lambda k: (k[0] != "train", k[1], k[2]))]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def draw(predictor: Predictor, ids: list[str], scores: dict[str, float], title: str,
         path: Path) -> Path | None:
    """One grid: a row per id, labelled with the id and its Dice."""
    found = predictor.predict(ids) if ids else {}
    if not found:
        return None
    rows, labels = [], []
    for image_id in (i for i in ids if i in found):
        image, target, prediction, learnt = found[image_id]
        rows.append([image, mask_to_rgb(target), mask_to_rgb(learnt), mask_to_rgb(prediction),
                     overlay(image, target, prediction)])
        dice = scores.get(image_id)
        labels.append(image_id if dice is None else f"{image_id}\nDice {dice:.3f}")
    return save_grid(rows, COLUMNS, path, row_labels=labels, panel_inches=2.2, title=title)


def scored_here(predictor: Predictor, ids: list[str], notes: list[str]) -> dict[str, float]:
    """Per-image Dice of stored masks, or of a trial logged before per-image scores existed
    (then at most SCORED_HERE test images, a fixed sample, are predicted on the CPU)."""
    pool = sample_ids(ids, SCORED_HERE) if len(ids) > SCORED_HERE else ids
    if predictor.run.data.tags.get("stage") == "train":
        notes.append(f"{predictor.run.info.run_name}: no {PER_IMAGE_ARTIFACT}; its worst images "
                     f"are searched among {len(pool)} of {len(ids)} test images, scored here.")
    return per_image_dice(predictor, pool)


def make_grids(runs: SweepRuns, records: dict, policy: str, folder: Path, worst: int = 4,
               sample: int = 4) -> tuple[list[dict[str, Any]], list[str]]:
    """Per method: a fixed-sample grid and a worst-k grid; (figures, notes on what is missing)."""
    notes: list[str] = []
    chosen = representatives(runs, policy)
    logged = {run.info.run_id: read_per_image(runs, run) for run in chosen
              if run.data.tags.get("stage") == "train"}
    ids = [i for i in test_ids(runs, logged) if i in records and records[i].trimap_path]
    if not ids:
        return [], ["No figure grids: the test ids or the dataset "
                    f"({runs.data_root}) are not available here."]
    fixed = sample_ids(ids, sample)
    figures = []
    for run in chosen:
        make = model_predictor if run.data.tags.get("stage") == "train" else mask_predictor
        predictor = make(runs, run, records, policy)
        if predictor is None:
            notes.append(f"{run.info.run_name}: no checkpoint or stored masks to draw from.")
            continue
        scores = logged.get(run.info.run_id) or scored_here(predictor, ids, notes)
        worst_ids = sorted(scores, key=lambda i: (scores[i], i))[:worst]
        name, label = slug(predictor.key), f"{predictor.key} — run {run.info.run_name}"
        label += " (⚠ random-init)" if is_random_init(run) else ""
        for kind, chosen_ids, title in (
                ("sample", fixed, f"{label}: fixed test sample"),
                ("worst", worst_ids, f"{label}: worst {len(worst_ids)} test images by Dice")):
            path = draw(predictor, chosen_ids, scores, title, folder / f"{kind}-{name}.png")
            if path is not None:
                figures.append({"kind": kind, "method": predictor.key, "run": run.info.run_name,
                                "run_id": run.info.run_id, "path": path, "title": title})
    return figures, notes
