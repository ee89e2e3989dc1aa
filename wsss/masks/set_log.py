"""MLflow for mask sets: one run per set with its quality per border policy, timings and a
gallery of input | heatmap or box | pseudo-mask | ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wsss import tracking
from wsss.config import StudyConfig
from wsss.data.arrays import resize_image, resize_mask
from wsss.data.decode import decode_image, record_class_truth, record_truth
from wsss.data.prepare import prepare_dataset
from wsss.data.records import Record
from wsss.masks.scoring import mask_quality
from wsss.masks.store import MaskSet, load_manifest
from wsss.metrics import flat_metrics, trimap_to_target
from wsss.panels import class_map_to_rgb, heatmap_to_rgb, mask_to_rgb, sample_ids, save_grid


def gallery(mask_set: Any, records: list[Record], config: StudyConfig, path: Path,
            heatmap_set: Any | None = None) -> Path | None:
    """input | heatmap (or box) | pseudo-mask [| ground truth, where the data has it], for a
    fixed sample of ids."""
    import cv2

    by_id = {r.image_id: r for r in records}
    ids = sample_ids(sorted(set(by_id) & mask_set.ids()), config.pipeline.gallery_size)
    with_truth = all(by_id[image_id].trimap_path for image_id in ids)
    if not ids:
        return None
    rows = []
    for image_id in ids:
        mask, extras = mask_set.read_with_extras(image_id)
        image = resize_image(decode_image(by_id[image_id].image_path), mask.shape[0])
        several = bool(by_id[image_id].labels)  # class maps: each class its colour
        if heatmap_set is not None and image_id in heatmap_set.ids():
            heatmap = heatmap_set.read_heatmap(image_id)
            middle = heatmap_to_rgb(heatmap.max(axis=0) if heatmap.ndim == 3 else heatmap, image)
        else:
            middle = image.copy()
            if "box" in extras:
                x0, y0, x1, y1 = extras["box"]
                cv2.rectangle(middle, (x0, y0), (x1 - 1, y1 - 1), (255, 0, 0), 1)
        rows.append([image, middle, class_map_to_rgb(mask) if several else mask_to_rgb(mask)])
        if with_truth and several:
            rows[-1].append(class_map_to_rgb(resize_mask(record_class_truth(by_id[image_id]), mask.shape)))
        elif with_truth:
            rows[-1].append(mask_to_rgb(trimap_to_target(resize_mask(record_truth(by_id[image_id]),
                                                                     mask.shape))))
    titles = ["input", "heatmap" if heatmap_set is not None else "input + box", "pseudo-mask"]
    return save_grid(rows, titles + (["ground truth"] if with_truth else []), path, row_labels=ids)


def heatmap_set_for(plan: Any, plans: list[Any]) -> Any | None:
    """The stored heatmaps a plan's gallery can show: its own, or a configured CAM set's."""
    for other in [plan] + plans:
        if other.kind == "heatmaps" and other.heatmap_key == plan.heatmap_key:
            manifest = load_manifest(other.uri)
            return MaskSet(other.uri, manifest) if manifest is not None else None
    return None


def made_on_random_weights(plan: Any, plans: list[Any]) -> bool:
    """Whether a set's masks come from random-init weights: its own (SAM2 without a checkpoint),
    the CAM it reads (no trained classifier), or any set it is built on. Only those sets are
    flagged random-init; a study's ``weights_policy: random`` merely allows them."""
    labeler = plan.labeler
    if labeler.weights_id().startswith("random-"):
        return True
    if plan.heatmap_key and labeler.context.classifier_checkpoint is None:
        return True
    by_key = {other.spec.key: other for other in plans}
    return any(made_on_random_weights(by_key[key], plans) for key in labeler.source_ids() if key in by_key)


def pixel_classes(config: StudyConfig) -> list[str] | None:
    """The classes a study's class maps are indexed by (None: one class per image)."""
    classes = prepare_dataset(config.data).pixel_classes
    return list(classes) if classes else None


def log_mask_set(plan: Any, plans: list[Any], summary: Any, config: StudyConfig,
                 records: list[Record], parent_run_id: str | None = None,
                 extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """One MLflow run per mask set: params, quality per border policy, timings, gallery."""
    import tempfile

    import mlflow

    manifest = load_manifest(plan.uri)
    mask_set = MaskSet(plan.uri, manifest)
    classes = pixel_classes(config)
    quality = mask_quality(mask_set, records, classes=classes, background=config.data.background)
    main = quality[config.data.border_policy]
    params = {"labeler": plan.spec.name, "labeler_id": plan.spec.key, "params": plan.spec.params,
              "fingerprint": plan.fingerprint, "kind": plan.kind, "image_size": config.data.image_size,
              "border_policy": config.data.border_policy, "dataset_index": manifest.dataset_index,
              "store": plan.uri}
    tags = {"stage": "pseudo_masks", "method": plan.spec.name, "labeler_id": plan.spec.key,
            **(extra_tags or {})}
    with tracking.run(f"masks-{plan.spec.key}", tags=tags, params=params, parent_run_id=parent_run_id,
                      random_weights=made_on_random_weights(plan, plans)) as active:
        metrics = {}
        if main["images"]:  # scored against ground truth only where the data has it
            metrics.update(flat_metrics(main, prefix="pseudo_"))
            for policy, result in quality.items():
                metrics.update(flat_metrics(result, prefix=f"pseudo_{policy}_"))
            if "miou" in main:
                metrics.update({f"pseudo_{key}": main[key] for key in ("miou", "pixel_accuracy", "class_accuracy")})
        metrics.update({"pseudo_images": main["images"], "pseudo_ignored_fraction": main["ignored_fraction"],
                        "images_present": manifest.images_present,
                        "images_quarantined": len(manifest.quarantine),
                        "written_last_run": manifest.last_run.written})
        for stage, rate in summary.stage_rates().items():
            metrics[f"images_per_second_{stage}"] = rate
        mlflow.log_metrics(metrics)
        tracking.log_input(plan.uri, f"masks:{plan.spec.key}", plan.fingerprint, "pseudo-masks")
        with tempfile.TemporaryDirectory() as scratch:
            figure = gallery(mask_set, records, config, Path(scratch) / f"gallery-{plan.spec.key}.png",
                             heatmap_set_for(plan, plans))
            if figure is not None:
                mlflow.log_artifact(str(figure))
            (Path(scratch) / "manifest.json").write_text(manifest.to_json())
            mlflow.log_artifact(str(Path(scratch) / "manifest.json"))
    return {"labeler_id": plan.spec.key, "run_id": active.info.run_id, "quality": main,
            "uri": plan.uri, "fingerprint": plan.fingerprint}
