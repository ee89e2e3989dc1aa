"""Choose CAM thresholds and GrabCut seeds on the development half only, with ground truth.

    python jobs/calibrate.py --config jobs/configs/pets.yaml --set data.root=DIR [--out F.json] [--model F ...]

Reads the study's ``trainval`` images (train + val; never ``test``, whose figures the tables
report) and the classifier the study trained (``wsss classify`` first), and scores against the
trimaps: the CAM (of the study's classifier, and of the ImageNet classifier that saw none of the
data: ``imagenet_cam``) at several thresholds, one view and averaged over scales and the mirror
image; the box of each, GrabCut in it, and GrabCut seeded by each, over their thresholds and
seeds; the centred ellipse. Runs in this process (no Ray): ~8 minutes for 150 photos on 2 cores (two maps).
Prints a table (pseudo-mask micro Dice, border ignored) and writes it as JSON with ``--out``.

With ``--model F`` (a ``wsss train`` run's ``tested_model.pt``) it scores instead what a second
self-training round would train on: the model's own predictions on those images, and GrabCut
seeded by its probabilities (``train.self_training: grabcut``) under a grid of seeds. With
``--model`` given several times, the mean of the models' probabilities
(``train.self_training_models``) stands for the model.

With several classes per image (``data.task: semantic``) it compares the class-map cut rules
instead, by mIoU over the data's classes: a CAM per class each image carries, cut against a
background threshold, with every pixel the best of its image's classes above a threshold
(``data.background: false``), after PAMR with the maps competing at their peaks or by their
means, and the pixel head (``pixel_head``) fitted on those photos' image labels, without and
with its refits and PAMR. On MSRC-v2's 237 train and val photos at 320 px: ~10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from wsss import console
from wsss.cli.common import add_config_arguments, study_config
from wsss.data.arrays import decode_records, resize_mask
from wsss.data.prepare import prepare_dataset
from wsss.labelers.base import LabelerContext
from wsss.labelers.registry import get_labeler_class
from wsss.metrics import SegmentationMeter, trimap_to_target
from wsss.train.classifier import find_classifier

VIEWS = {"one view": {"scales": [1.0], "flip": False},
         "3 scales + mirror": {"scales": [0.6, 1.0, 1.4], "flip": True}}
CAM_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
BOX_THRESHOLDS = (0.1, 0.2, 0.3)
SEEDS = ((0.2, 0.5), (0.3, 0.7), (0.3, 0.9))
# the study's classifier's CAM, and the ImageNet classifier's own (trained on nothing of the data)
HEATMAP_METHODS = ("cam", "imagenet_cam")
BATCH = 16


def heatmaps(arrays, checkpoint: str, views: dict, method: str = "cam") -> np.ndarray:
    """The CAM (or another heatmap method's map) of every dev image under one view setting."""
    cam = get_labeler_class(method)(views, LabelerContext(classifier_checkpoint=checkpoint))
    with cam, console.Stage(f"{method}, {len(views['scales'])} scale(s)", total=len(arrays), unit="images") as stage:
        maps = []
        for start in range(0, len(arrays), BATCH):
            maps.append(cam.heatmaps(arrays.images[start:start + BATCH], arrays.labels[start:start + BATCH]))
            stage.advance(len(maps[-1]))
        stage.done(f"{len(arrays)} images")
    return np.concatenate(maps)


def dice(masks: np.ndarray, arrays, border_policy: str) -> float:
    meter = SegmentationMeter()
    for mask, trimap in zip(masks, arrays.trimaps):
        meter.update(mask == 1, trimap_to_target(trimap, border_policy))
    return meter.result()["micro"]["dice"]


def labeled(name: str, params: dict, arrays, maps: np.ndarray) -> np.ndarray:
    """One labeler's masks of the dev images, given their heatmaps (read by box labelers)."""
    labeler = get_labeler_class(name)(params)
    masks = []
    for start in range(0, len(arrays), BATCH):
        rows = slice(start, start + BATCH)
        batch = {"image": arrays.images[rows], "label": arrays.labels[rows],
                 "image_id": np.asarray(arrays.image_ids[rows]), "heatmap": maps[rows]}
        masks.append(labeler(batch)["mask"])
    return np.concatenate(masks)


CLASS_CUTS = (0.0, 0.1, 0.2, 0.3)


def calibrate_classes(config, checkpoint: str, records, dataset) -> list[dict]:
    """Class-map cut rules of the CAM on the dev images, by mIoU (module doc)."""
    from wsss.data.decode import record_class_truth
    from wsss.labelers.base import ThresholdParams, cut_heatmaps
    from wsss.labelers.entries import padded
    from wsss.labelers.pamr import PamrParams, competing, refine_maps

    with console.Stage("decode dev images", total=len(records), unit="images") as stage:
        arrays = decode_records(records, config.data.image_size, progress=stage)
        stage.done(f"{len(arrays)} images at {config.data.image_size} px")
    by_id = {record.image_id: record for record in records}
    chosen = [by_id[image_id] for image_id in arrays.image_ids]
    labels = padded([record.present for record in chosen])
    cam = get_labeler_class("cam")({}, LabelerContext(classifier_checkpoint=checkpoint))
    with cam, console.Stage("CAM per class", total=len(arrays), unit="images") as stage:
        maps = []
        for start in range(0, len(arrays), BATCH):
            maps.append(cam.class_heatmaps(arrays.images[start:start + BATCH], labels[start:start + BATCH]))
            stage.advance(len(maps[-1]))
        stage.done(f"{len(arrays)} images")
    maps = np.concatenate(maps)
    truth = [record_class_truth(record) for record in chosen]

    def miou(cut: np.ndarray) -> float:
        meter = SegmentationMeter(len(dataset.classes))
        for mask, target in zip(cut, truth):
            meter.update(np.where(mask == 255, 0, mask), resize_mask(target, mask.shape))
        return meter.result(dataset.classes, background=config.data.background)["miou"]

    rows = []
    # against a background at each threshold; without one, every pixel its image's best class (a
    # threshold above 0 only ignores what the background cut would call background: scored alike)
    cuts = [(threshold, True) for threshold in CLASS_CUTS[1:]] + ([] if config.data.background else [(0.0, False)])
    for threshold, background in cuts:
        params = ThresholdParams(threshold=threshold, background=background)
        name = f"cam @ {threshold}, else background" if background else "cam, every pixel its best class"
        rows.append({"view": "one view", "method": name, "miou": miou(cut_heatmaps(maps, labels, params))})
    for compete in ("peak", "mean"):
        params = PamrParams(threshold=0.0, iterations=20, dilations=(1, 2, 4, 8, 16, 32), compete=compete,
                            background=config.data.background)
        refined = np.concatenate([refine_maps(arrays.images[start:start + BATCH],
                                              competing(maps[start:start + BATCH], compete), params)
                                  for start in range(0, len(arrays), BATCH)])
        rows.append({"view": "one view", "method": f"pamr ({compete}) @ 0.0",
                     "miou": miou(cut_heatmaps(refined, labels, params))})
    for name, settings in PIXEL_HEADS.items():  # fitted on these photos' image labels, scored here
        head = get_labeler_class("pixel_head")({**settings, "background": config.data.background},
                                               LabelerContext(classifier_checkpoint=checkpoint))
        with head, console.Stage(name, total=len(arrays), unit="images") as stage:
            head.fit(arrays.images, labels, labels, heatmaps=maps, progress=stage)
            masks = np.concatenate([head({"image": arrays.images[start:start + BATCH],
                                          "labels": labels[start:start + BATCH],
                                          "heatmap": maps[start:start + BATCH]})["mask"]
                                    for start in range(0, len(arrays), BATCH)])
            stage.done(f"fitted on {len(arrays)} images")
        rows.append({"view": "one view", "method": name, "miou": miou(masks)})
    return rows


# self-training through GrabCut: (sure background, probable, sure) seeds on a model's probabilities
SELF_TRAINING_SEEDS = tuple((below, lo, hi) for lo in (0.4, 0.5, 0.6) for hi in (0.8, 0.9, 0.95)
                            for below in (0.1, 0.2, 0.3) if below < lo)


def calibrate_self_training(config, model_files: list[str], records, dataset) -> list[dict]:
    """Trained models' own predictions on the dev images (the mean of their probabilities,
    as self-training reads them), and GrabCut seeded by those probabilities
    (``train.self_training: grabcut``) under every ``SELF_TRAINING_SEEDS``, scored by Dice (one
    class per image) or mIoU (several): the labels a second round would train on."""
    import torch

    from wsss.data.decode import record_class_truth
    from wsss.train.labels import SelfTrainingSource, grabcut_class_map, own_classes
    from wsss.train.steps import predicted_classes

    size = config.train.image_size  # the size self-training decodes the images at
    with console.Stage("decode dev images", total=len(records), unit="images") as stage:
        arrays = decode_records(records, size, progress=stage)
        stage.done(f"{len(arrays)} images at {size} px")
    ids = list(arrays.image_ids)
    source = SelfTrainingSource("dev", tuple(model_files), (0.3, 0.7), background=config.data.background,
                                classes=own_classes(dataset))
    models = source.load()
    with console.Stage(f"model{'s' if len(models) > 1 else ''}", total=len(arrays), unit="images") as stage:
        probabilities = []
        for start in range(0, len(arrays), BATCH):
            probabilities.append(source.probabilities(models, arrays.images[start:start + BATCH],
                                                      ids[start:start + BATCH]))
            stage.advance(len(probabilities[-1]))
        stage.done(f"{len(arrays)} images, {len(models)} model{'s' if len(models) > 1 else ''}")
    probabilities = np.concatenate(probabilities)
    allowed = source.allowed(ids, probabilities.shape[1])
    if dataset.pixel_classes:
        by_id = {record.image_id: record for record in records}
        truth = [resize_mask(record_class_truth(by_id[image_id]), size) for image_id in ids]

        def score(masks: np.ndarray) -> dict:
            meter = SegmentationMeter(len(dataset.classes))
            for mask, target in zip(masks, truth):
                meter.update(np.where(mask == 255, 0, mask), target)
            return {"miou": meter.result(dataset.classes, background=config.data.background)["miou"]}
    else:
        def score(masks: np.ndarray) -> dict:
            return {"dice": dice(masks, arrays, config.data.border_policy)}
    # the mean probabilities' own classes: their log is a logit for the argmax (and the class's
    # log-odds for one channel)
    scores = torch.as_tensor(probabilities).clamp(1e-7, 1 - 1e-7)
    scores = torch.logit(scores) if scores.shape[1] == 1 else torch.log(scores)
    predicted = predicted_classes(scores, config.data.background).numpy().astype(np.uint8)
    rows = [{"view": "model", "method": "the model's own prediction", **score(predicted)}]
    with console.Stage("GrabCut on the model's probabilities", total=len(SELF_TRAINING_SEEDS),
                       unit="seed settings") as stage:
        for seeds in SELF_TRAINING_SEEDS:
            masks = np.concatenate([grabcut_class_map(arrays.images[start:start + BATCH],
                                                      probabilities[start:start + BATCH], seeds,
                                                      config.data.background,
                                                      None if allowed is None else allowed[start:start + BATCH])
                                    for start in range(0, len(arrays), BATCH)])
            rows.append({"view": "model", "method": "grabcut (seeds {}/{}/{})".format(*seeds), **score(masks)})
            stage.advance(1)
        stage.done(f"{len(SELF_TRAINING_SEEDS)} settings")
    return rows


PIXEL_HEADS = {"pixel head, no refit": {"rounds": 0, "refine_iterations": 0},
               "pixel head, 5 refits": {"refine_iterations": 0},
               "pixel head, 5 refits + PAMR": {}}


def candidates(view: str, method: str = "cam"):
    """(row name, labeler, params) of every setting tried under one view setting; rows on
    another map than the study's CAM name it."""
    ref = {"method": method, **VIEWS[view]}
    on = "" if method == "cam" else f" on {method}"
    for threshold in CAM_THRESHOLDS:
        yield f"{method} @ {threshold}", method, None, threshold
    for threshold in BOX_THRESHOLDS:
        yield f"box{on} @ {threshold}", "box", {"threshold": threshold, "heatmap": ref}, None
        yield f"grabcut (box){on} @ {threshold}", "grabcut", {"threshold": threshold, "heatmap": ref}, None
    for lo, hi in SEEDS:
        params = {"init": "seeds", "seeds": [lo, hi], "threshold": 0.2, "heatmap": ref}
        yield f"grabcut (seeds {lo}/{hi}){on}", "grabcut", params, None


def calibrate(config, checkpoint: str, records) -> list[dict]:
    with console.Stage("decode dev images", total=len(records), unit="images") as stage:
        arrays = decode_records(records, config.data.image_size, progress=stage)
        stage.done(f"{len(arrays)} images at {config.data.image_size} px")
    policy = config.data.border_policy
    rows = [{"view": "-", "method": "ellipse",
             "dice": dice(labeled("ellipse", {}, arrays, np.zeros(arrays.images.shape[:3])), arrays, policy)}]
    for (view, settings), method in itertools.product(VIEWS.items(), HEATMAP_METHODS):
        maps = heatmaps(arrays, checkpoint, settings, method)
        with console.Stage(f"score ({method}, {view})", total=None) as stage:
            for row, name, params, threshold in candidates(view, method):
                masks = (maps >= threshold).astype(np.uint8) if threshold is not None else \
                    labeled(name, params, arrays, maps)
                rows.append({"view": view, "method": row, "dice": dice(masks, arrays, policy)})
                stage.advance(1, row)
            stage.done(f"{len(rows)} settings")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    parser.add_argument("--model", action="append", help="a trained model (a run's tested_model.pt): score "
                        "GrabCut seeded by its probabilities (train.self_training: grabcut) instead; "
                        "several: their mean probability (train.self_training_models)")
    args = parser.parse_args(argv)
    console.setup(verbose_output=args.verbose)
    try:
        return run(args)
    finally:
        console.teardown()  # the console as it was found (a caller, or a test, goes on)


def run(args: argparse.Namespace) -> int:
    config = study_config(args)
    dataset = prepare_dataset(config.data)
    records = dataset.split("trainval")  # the development half: never the test split
    metric = "miou" if dataset.pixel_classes else "dice"
    if args.model:
        for model in args.model:
            if not Path(model).is_file():
                console.say(f"--model {model}: no such file (a `wsss train` run's tested_model.pt)")
                return 2
        return report(calibrate_self_training(config, args.model, records, dataset), metric, records, args.out)
    checkpoint = find_classifier(config, dataset)
    if checkpoint is None:
        console.say(f"no classifier trained for this study: run `wsss classify --config {args.config}` "
                    "(with the same --set options) first")
        return 2
    rows = calibrate_classes(config, checkpoint, records, dataset) if dataset.pixel_classes else \
        calibrate(config, checkpoint, records)
    return report(rows, metric, records, args.out)


def report(rows: list[dict], metric: str, records, out: Path | None) -> int:
    """Print the table; write it as JSON to ``out``."""
    lines = [f"| view | method | dev {'mIoU' if metric == 'miou' else 'Dice'} |", "|---|---|---|"]
    lines += [f"| {r['view']} | {r['method']} | {r[metric]:.3f} |" for r in rows]
    console.echo("\n".join(lines))
    if out:
        out.write_text(json.dumps({"images": len(records), "split": "trainval", "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
