"""``wsss pseudo``: make a study's mask sets on Ray, score them against ground truth, log them.

Also ``wsss pseudo-eval`` (one labeler, in-process, no store) and ``wsss labelers``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from wsss.config import StudyConfig
from wsss.data.pets import DatasetIndex, Record
from wsss.labelers.base import LabelerContext
from wsss.metrics import SegmentationMeter, flat_metrics, trimap_to_target

BORDER_POLICY_NAMES = ("ignore", "foreground", "background")


def labeler_context(config: StudyConfig, classifier_checkpoint: str | None) -> LabelerContext:
    return LabelerContext(classifier_checkpoint=classifier_checkpoint,
                          allow_random_weights=config.weights_policy == "random",
                          seed=config.classifier.seed)


def needs_classifier(config: StudyConfig, labeler_ids: list[str] | None = None) -> bool:
    """True when a selected labeler builds on a CAM (and so on the breed classifier)."""
    from wsss.labelers.registry import get_labeler_class

    specs = [config.labeler(key) for key in labeler_ids] if labeler_ids else config.labelers
    for spec in specs:
        labeler = get_labeler_class(spec.name)(spec.params)
        if labeler.stage == "heatmap" or labeler.heatmap_ref() is not None:
            return True
    return False


def resolve_classifier(config: StudyConfig, labeler_ids: list[str] | None = None,
                       parent_run_id: str | None = None) -> str | None:
    """The classifier checkpoint the CAMs use: configured, or trained (reused when done)."""
    if not needs_classifier(config, labeler_ids):
        return None
    from wsss.models.classifier import load_classifier

    checkpoint = config.classifier.checkpoint
    if not checkpoint:
        from wsss.classification import run_classifier

        checkpoint = str(run_classifier(config, parent_run_id)["checkpoint"])
    load_classifier(checkpoint)  # a missing or damaged file fails here, before any Ray work
    return checkpoint


def mask_quality(mask_set: Any, records: list[Record], policies=BORDER_POLICY_NAMES) -> dict[str, dict]:
    """Pseudo-mask metrics per border policy at the mask set's resolution (255 counts as 0)."""
    from wsss.data.arrays import resize_mask
    from wsss.data.decode import read_trimap

    meters = {policy: SegmentationMeter() for policy in policies}
    present = mask_set.ids()
    ignored = total = 0
    for record in records:
        if record.image_id not in present or record.trimap_path is None:
            continue
        mask = mask_set.read(record.image_id)
        trimap = resize_mask(read_trimap(record.trimap_path), mask.shape)
        ignored, total = ignored + int((mask == 255).sum()), total + mask.size
        for policy, meter in meters.items():
            meter.update(mask == 1, trimap_to_target(trimap, policy))
    results = {policy: meter.result() for policy, meter in meters.items()}
    for result in results.values():
        result["ignored_fraction"] = ignored / max(total, 1)
    return results


def gallery(mask_set: Any, records: list[Record], config: StudyConfig, path: Path,
            heatmap_set: Any | None = None) -> Path | None:
    """input | heatmap (or box) | pseudo-mask | ground truth, for a fixed sample of ids."""
    import cv2

    from wsss.data.arrays import resize_image, resize_mask
    from wsss.data.decode import decode_image, read_trimap
    from wsss.figures import heatmap_to_rgb, mask_to_rgb, sample_ids, save_grid

    by_id = {r.image_id: r for r in records if r.trimap_path}
    ids = sample_ids(sorted(set(by_id) & mask_set.ids()), config.pipeline.gallery_size)
    if not ids:
        return None
    rows = []
    for image_id in ids:
        mask, extras = mask_set.read_with_extras(image_id)
        image = resize_image(decode_image(by_id[image_id].image_path), mask.shape[0])
        if heatmap_set is not None and image_id in heatmap_set.ids():
            middle = heatmap_to_rgb(heatmap_set.read_heatmap(image_id), image)
        else:
            middle = image.copy()
            if "box" in extras:
                x0, y0, x1, y1 = extras["box"]
                cv2.rectangle(middle, (x0, y0), (x1 - 1, y1 - 1), (255, 0, 0), 1)
        truth = trimap_to_target(resize_mask(read_trimap(by_id[image_id].trimap_path), mask.shape))
        rows.append([image, middle, mask_to_rgb(mask), mask_to_rgb(truth)])
    middle_title = "heatmap" if heatmap_set is not None else "input + box"
    return save_grid(rows, ["input", middle_title, "pseudo-mask", "ground truth"], path, row_labels=ids)


def heatmap_set_for(plan: Any, plans: list[Any]) -> Any | None:
    """The stored heatmaps a plan's gallery can show: its own, or a configured CAM set's."""
    from wsss.masks import MaskSet, read_manifest

    for other in [plan] + plans:
        if other.kind == "heatmaps" and other.heatmap_key == plan.heatmap_key:
            manifest = read_manifest(other.uri)
            return MaskSet(other.uri, manifest) if manifest else None
    return None


def log_mask_set(plan: Any, plans: list[Any], summary: Any, config: StudyConfig,
                 records: list[Record], parent_run_id: str | None = None,
                 extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """One MLflow run per mask set: params, quality per border policy, timings, gallery."""
    import tempfile

    import mlflow

    from wsss import tracking
    from wsss.masks import MaskSet, read_manifest

    manifest = read_manifest(plan.uri)
    mask_set = MaskSet(plan.uri, manifest)
    quality = mask_quality(mask_set, records)
    main = quality[config.data.border_policy]
    params = {"labeler": plan.spec.name, "labeler_id": plan.spec.key, "params": plan.spec.params,
              "fingerprint": plan.fingerprint, "kind": plan.kind, "image_size": config.data.image_size,
              "border_policy": config.data.border_policy, "dataset_index": manifest["dataset_index"],
              "store": plan.uri}
    tags = {"stage": "pseudo_masks", "method": plan.spec.name, "labeler_id": plan.spec.key,
            **(extra_tags or {})}
    with tracking.run(f"masks-{plan.spec.key}", tags=tags, params=params, parent_run_id=parent_run_id,
                      random_weights=config.weights_policy == "random") as active:
        metrics = flat_metrics(main, prefix="pseudo_")
        for policy, result in quality.items():
            metrics.update(flat_metrics(result, prefix=f"pseudo_{policy}_"))
        metrics.update({"pseudo_images": main["images"], "pseudo_ignored_fraction": main["ignored_fraction"],
                        "images_present": manifest["images_present"],
                        "images_quarantined": len(manifest["quarantine"]),
                        "written_last_run": manifest["last_run"]["written"]})
        for stage, rate in summary.stage_rates().items():
            metrics[f"images_per_second_{stage}"] = rate
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as scratch:
            figure = gallery(mask_set, records, config, Path(scratch) / f"gallery-{plan.spec.key}.png",
                             heatmap_set_for(plan, plans))
            if figure is not None:
                mlflow.log_artifact(str(figure))
            (Path(scratch) / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            mlflow.log_artifact(str(Path(scratch) / "manifest.json"))
    return {"labeler_id": plan.spec.key, "run_id": active.info.run_id, "quality": main,
            "uri": plan.uri, "fingerprint": plan.fingerprint}


def run_pseudo(config: StudyConfig, labeler_ids: list[str] | None = None,
               parent_run_id: str | None = None, dataset: DatasetIndex | None = None,
               log: bool = True) -> dict[str, Any]:
    """Generate (or finish) the selected mask sets, then score and log each one."""
    from wsss import tracking
    from wsss.data.prepare import prepare_dataset
    from wsss.pipeline import generate_masks
    from wsss.raycluster import ensure_ray

    dataset = dataset or prepare_dataset(config.data)
    checkpoint = resolve_classifier(config, labeler_ids)
    ensure_ray()
    summary = generate_masks(config, dataset, labeler_context(config, checkpoint), labeler_ids)
    print(summary.format(), flush=True)
    results = []
    if log:
        tracking.configure(config.tracking)
        records = dataset.split("trainval", "test")
        results = [log_mask_set(plan, summary.plans, summary, config, records, parent_run_id)
                   for plan in summary.plans]
        for result in results:
            q = result["quality"]["micro"]
            print(f"  {result['labeler_id']:<24} pseudo-mask Dice {q['dice']:.4f}  IoU {q['iou']:.4f}")
    return {"summary": summary, "mask_sets": results, "classifier": checkpoint}


def pseudo_eval(labeler: Any, records: list[Record], size: int, border_policy: str = "ignore",
                batch_size: int = 16) -> dict[str, Any]:
    """Score one labeler's masks against the trimaps, in this process (no Ray, no store)."""
    from wsss.data.arrays import decode_records

    meter = SegmentationMeter()
    quarantined = []
    for start in range(0, len(records), batch_size):
        arrays = decode_records(records[start:start + batch_size], size)
        quarantined += arrays.quarantine.entries
        if not len(arrays):
            continue
        batch = {"image": arrays.images, "label": arrays.labels,
                 "image_id": np.asarray(arrays.image_ids, dtype=object)}
        masks = labeler(batch)["mask"]
        for mask, trimap in zip(masks, arrays.trimaps):
            meter.update(mask == 1, trimap_to_target(trimap, border_policy))
    result = meter.result()
    result.update({"border_policy": border_policy, "labeler": labeler.name,
                   "params": labeler.params.model_dump(mode="json"), "quarantine": quarantined})
    return result


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    import yaml

    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        params[key] = yaml.safe_load(value)
    return params


def cmd_pseudo_eval(args: argparse.Namespace) -> int:
    from wsss.config import load_config
    from wsss.data.pets import index
    from wsss.labelers.registry import get_labeler_class

    config = load_config(args.config) if args.config else StudyConfig()
    spec = next((s for s in config.labelers if s.key == args.labeler), None)
    name, params = (spec.name, dict(spec.params)) if spec else (args.labeler, {})
    params.update(_parse_params(args.param))
    context = LabelerContext(classifier_checkpoint=args.classifier or config.classifier.checkpoint,
                             allow_random_weights=args.random_weights or config.weights_policy == "random")
    records = index(args.root, limit=args.limit).split(args.split)
    with get_labeler_class(name)(params, context) as labeler:
        result = pseudo_eval(labeler, records, args.size or config.data.image_size, args.border_policy)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for aggregation in ("micro", "per_image"):
            print(f"{aggregation:>9}: " + "  ".join(f"{k} {v:.4f}" for k, v in result[aggregation].items()))
        print(f"{result['images']} images, labeler {name}, border policy {args.border_policy}")
    return 0


def cmd_pseudo(args: argparse.Namespace) -> int:
    from wsss.config import load_config, parse_overrides

    config = load_config(args.config, parse_overrides(args.set))
    run_pseudo(config, args.labeler or None)
    return 0


def cmd_labelers(args: argparse.Namespace) -> int:
    from wsss.labelers.registry import get_labeler_class, list_labelers

    for name, description in list_labelers().items():
        stage = get_labeler_class(name).stage
        print(f"{name:<16} [{stage:<7}] {description}")
    return 0


def add_pseudo_parsers(verbs: Any) -> None:
    """The ``pseudo``, ``pseudo-eval`` and ``labelers`` verbs."""
    from wsss.config import BORDER_POLICIES

    pseudo = verbs.add_parser("pseudo", help="generate a study's mask sets on Ray (resumable)")
    pseudo.add_argument("--config", required=True)
    pseudo.add_argument("--labeler", action="append", default=[], help="labeler id (repeatable)")
    pseudo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. pipeline.batch_size=32")
    pseudo.set_defaults(handler=cmd_pseudo)
    evaluate = verbs.add_parser("pseudo-eval", help="score one labeler's masks against ground truth")
    evaluate.add_argument("--labeler", required=True, help="registered name, or a labeler id in --config")
    evaluate.add_argument("--root", required=True)
    evaluate.add_argument("--split", default="trainval")
    evaluate.add_argument("--config", help="take params, classifier and image size from a study config")
    evaluate.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--classifier", help="breed classifier checkpoint (for CAM-based labelers)")
    evaluate.add_argument("--size", type=int, help="working resolution (default: data.image_size)")
    evaluate.add_argument("--limit", type=int, help="at most this many images per split")
    evaluate.add_argument("--border-policy", default="ignore", choices=BORDER_POLICIES)
    evaluate.add_argument("--random-weights", action="store_true",
                          help="allow random-init models (smoke tests only; results are meaningless)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_pseudo_eval)
    labelers = verbs.add_parser("labelers", help="list the registered pseudo-mask generators")
    labelers.set_defaults(handler=cmd_labelers)
