"""One mask set in the tools people review masks in: indexed PNGs, COCO, Label Studio tasks.

A set lives in the store at the study's working size (``data.image_size``, a square) with the
values {0 background, 1 foreground, 255 ignore}; a reviewer looks at masks over the images at
their own size. An export chooses and orders the images, puts each stored mask back on its
image with nearest neighbour only (no new values, no blurred edges) as a class map, and hands
it to the format's writer in ``wsss.formats``, which writes whole files (``wsss.storage``).
Sizes come from the image headers with EXIF orientation applied, because the masks were made
on the oriented image (``wsss.data.decode``), as browsers show it.

Confidence per image: the mean foreground IoU of this set's mask with each other complete set
of the study that holds the image (where generators disagree a person should look); with no
other set, 1 - the mask's ignored fraction. Ignore pixels count as background in the IoU.
``sort="confidence"`` puts the least certain first, so a reviewer fixes the worst first.

Formats (``wsss.formats.png``, ``.coco``, ``.labelstudio``):

- ``png``: a folder of indexed PNGs ``<image_id>.png``: 0 background, class index + 1
  foreground, 255 ignore, with PASCAL VOC's colour map; ``classes.json`` says what each value
  means, ``confidence.csv`` ranks the images.
- ``coco``: a COCO instances JSON; one RLE annotation per class in the image (``category_id`` =
  class index + 1, ``score`` = confidence; with ``split_instances``, one per connected piece of
  each class) and, where a mask has ignore pixels, an ``iscrowd: 1`` annotation over them:
  COCO's own "ignore this region".
- ``labelstudio``: Label Studio import tasks with the masks as brush pre-annotations
  (``predictions``), one region of the class and one labelled ``ignore``, encoded with Label
  Studio's own converter; the labeling config to paste is written beside the JSON as
  ``<out stem>.labeling-config.xml``.

Serving the images to Label Studio: task images are ``<image_root><path under the dataset
root>``. The default ``image_root``, ``/data/local-files/?d=``, is Label Studio's local file
serving; start it with the dataset root as its document root::

    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \\
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=/abs/path/to/dataset/root label-studio start

then, in the project: Settings > Labeling Interface > Code: paste the ``.labeling-config.xml``;
Settings > Cloud Storage > Add Source Storage > Local files with an absolute path under the
document root that holds the images (this grants access; do not sync it, or each image becomes
a second, empty task); then import the JSON. With a document root above the dataset root, pass
``--image-root "/data/local-files/?d=<dataset root relative to it>/"``; any web server that
serves the dataset root works too (``--image-root http://host:port/``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np

from wsss import storage
from wsss.data.arrays import resize_mask
from wsss.data.records import DatasetIndex, Record
from wsss.formats import coco, labelstudio, png
from wsss.labelers.base import MASK_FOREGROUND, MASK_IGNORE
from wsss.masks.store import MaskSet

FORMATS = ("png", "coco", "labelstudio")
SORTS = ("id", "confidence")
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ExportImage:
    """One image to export: its record, its own size, and how sure the set is of its mask."""

    record: Record
    width: int
    height: int
    confidence: float
    foreground_fraction: float
    ignored_fraction: float
    agreement: dict[str, float] = field(default_factory=dict)  # foreground IoU per other set


@dataclass
class ExportResult:
    """What ``export_mask_set`` wrote."""

    images: int
    out: str
    files: list[str]  # the files beside the masks (classes.json, labeling config...)
    not_in_set: list[str]  # ids of the chosen records the set does not hold (quarantined)
    agreement_with: list[str]  # the other sets the confidence compares with


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of an image as decoded, EXIF orientation applied, from its header only."""
    from PIL import Image

    with Image.open(storage.fetch(path)) as image:
        width, height = image.size
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def foreground(mask: np.ndarray, record: Record) -> np.ndarray:
    """Where a mask marks an object: value 1, or any class value of a several-class record."""
    return (mask > 0) & (mask != MASK_IGNORE) if record.labels else mask == MASK_FOREGROUND


def class_regions(mask: np.ndarray, record: Record) -> list[tuple[np.ndarray, int]]:
    """(region, class index) per class the mask holds: a one-class mask's foreground is the
    record's class; a several-class record's class map has a region per class value."""
    if not record.labels:
        return [(mask == MASK_FOREGROUND, record.label)]
    values = sorted(set(np.unique(mask).tolist()) - {0, MASK_IGNORE})
    return [(mask == value, value - 1) for value in values]


def foreground_iou(mask: np.ndarray, other: np.ndarray) -> float:
    """IoU of two masks' foregrounds, ignore counted as background; 1 when both are empty.
    Class maps agree only where the class agrees (for {0, 1} masks that is every overlap)."""
    mine, theirs = (mask > 0) & (mask != MASK_IGNORE), (other > 0) & (other != MASK_IGNORE)
    union = np.logical_or(mine, theirs).sum()
    return float((mine & theirs & (mask == other)).sum() / union) if union else 1.0


def mask_confidence(mask: np.ndarray, agreement: dict[str, float]) -> float:
    """The mean agreement with the other sets; without any, 1 - the set's own ignored share."""
    if agreement:
        return float(np.mean(list(agreement.values())))
    return 1.0 - float(np.mean(mask == MASK_IGNORE))


def score_image(record: Record, mask: np.ndarray, others: dict[str, MaskSet],
                holdings: dict[str, set[str]]) -> ExportImage:
    """An image's size and confidence; the masks compare at the working size they share."""
    agreement = {key: foreground_iou(mask, resize_mask(other.read(record.image_id), mask.shape[:2]))
                 for key, other in others.items() if record.image_id in holdings[key]}
    width, height = image_size(record.image_path)
    return ExportImage(record, width, height, mask_confidence(mask, agreement),
                       float(np.mean(foreground(mask, record))), float(np.mean(mask == MASK_IGNORE)),
                       agreement)


def score_images(mask_set: MaskSet, records: list[Record],
                 others: dict[str, MaskSet] | None = None) -> list[ExportImage]:
    """Every record the set holds, scored against the other sets (``others``: id -> set)."""
    others = others or {}
    held = mask_set.ids()
    holdings = {key: other.ids() for key, other in others.items()}
    return [score_image(record, mask_set.read(record.image_id), others, holdings)
            for record in records if record.image_id in held]


def order_images(images: list[ExportImage], sort: str = "id") -> list[ExportImage]:
    """By image id, or least confident first (ties by id) so the worst masks come first."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; known: {', '.join(SORTS)}")
    if sort == "confidence":
        return sorted(images, key=lambda image: (image.confidence, image.record.image_id))
    return sorted(images, key=lambda image: image.record.image_id)


SELECT_BY = ("confidence", "disagreement", "random")


def disagreement(image: ExportImage) -> float:
    """1 - the lowest foreground IoU with any other set: high where at least one generator sees
    the object elsewhere, even when the others agree."""
    return 1.0 - min(image.agreement.values())


def select_count(select: str | int, images: int) -> int:
    """``--select``: a count (``30``) or a share of the images (``10%``, rounded, at least one)."""
    text = str(select).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 <= share <= 100:
                raise ValueError
            return min(images, max(1, round(share * images / 100)) if share > 0 else 0)
        count = int(text)
        if count < 0:
            raise ValueError
        return min(images, count)
    except ValueError:
        raise ValueError(f"--select {select!r}: expected a count (30) or a share of the images (10%)") from None


def select_images(images: list[ExportImage], count: int, by: str, seed: int = 0) -> list[ExportImage]:
    """The ``count`` images most worth a review, most first: the least confident, the most
    disagreed on (``disagreement``; needs other sets), or a seeded random draw."""
    if by not in SELECT_BY:
        raise ValueError(f"unknown selection {by!r}; known: {', '.join(SELECT_BY)}")
    ordered = sorted(images, key=lambda image: image.record.image_id)
    if by == "random":
        order = np.random.default_rng(seed).permutation(len(ordered))
        return [ordered[i] for i in order[:count]]
    if by == "disagreement":
        if not all(image.agreement for image in ordered):
            raise ValueError("--by disagreement compares the set with the study's other sets, and "
                             "none holds these images; make them (wsss pseudo) or use --by confidence")
        return sorted(ordered, key=lambda image: -disagreement(image))[:count]
    return order_images(ordered, "confidence")[:count]


def selection_path(out: str, format: str) -> str:
    """Where the choice is recorded: ``selection.json`` in a PNG folder, else beside the JSON."""
    if format == "png":
        return storage.join(out, "selection.json")
    text = str(out)
    return f"{text[: -len('.json')] if text.endswith('.json') else text}.selection.json"


def selection_record(mask_set: MaskSet, chosen: list[ExportImage], by: str, requested: str,
                     seed: int, candidates: int) -> dict[str, Any]:
    """What was chosen and how, so a review can be traced and a random draw repeated."""
    return {"by": by, "select": str(requested), "seed": seed if by == "random" else None,
            "candidates": candidates, "chosen": len(chosen),
            "labeler_id": mask_set.manifest.labeler_id,
            "fingerprint": mask_set.manifest.fingerprint,
            "images": [{"image_id": image.record.image_id, "confidence": round(image.confidence, 6),
                        **({"disagreement": round(disagreement(image), 6)} if image.agreement else {})}
                       for image in chosen]}


def mask_at_image_size(mask_set: MaskSet, image: ExportImage) -> np.ndarray:
    """The stored mask on the image's own pixels (nearest neighbour: values stay 0, 1, 255)."""
    return resize_mask(mask_set.read(image.record.image_id), (image.height, image.width))


def relative_image_path(record: Record, dataset_root: str) -> str:
    """The image's path under the dataset root, with forward slashes (a URL or COCO file name)."""
    return os.path.relpath(record.image_path, dataset_root).replace(os.sep, "/")


def confidence_csv(images: list[ExportImage]) -> str:
    """One row per image in export order: confidence, size, shares, and IoU with each set."""
    keys = sorted({key for image in images for key in image.agreement})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_id", "confidence", "class_name", "width", "height", "foreground_fraction",
                     "ignored_fraction", *(f"iou_{key}" for key in keys)])
    for image in images:
        writer.writerow([image.record.image_id, f"{image.confidence:.6f}", image.record.class_name,
                         image.width, image.height, f"{image.foreground_fraction:.6f}",
                         f"{image.ignored_fraction:.6f}",
                         *(f"{image.agreement[key]:.6f}" if key in image.agreement else "" for key in keys)])
    return buffer.getvalue()


def class_map_at_image_size(mask_set: MaskSet, image: ExportImage) -> np.ndarray:
    """The image's stored mask on its own pixels as a class map (0, class index + 1, 255)."""
    return class_values(mask_at_image_size(mask_set, image), image.record)


def class_values(mask: np.ndarray, record: Record) -> np.ndarray:
    """0 background, ``label + 1`` for each class, 255 ignore: one value per class, as in VOC
    (a several-class record's class map is that already)."""
    values = np.where(mask == MASK_IGNORE, 255, 0).astype(np.uint8)
    for region, label in class_regions(mask, record):
        values[region] = label + 1
    return values


def write_png_folder(mask_set: MaskSet, images: list[ExportImage], classes: list[str], out: str) -> list[str]:
    """Indexed PNGs, ``classes.json`` and ``confidence.csv`` in folder ``out``; the side files."""
    png.check_classes(classes)
    palette = png.voc_palette()
    for image in images:
        png.write_class_map(storage.join(out, f"{image.record.image_id}.png"),
                            class_map_at_image_size(mask_set, image), palette)
    return [png.write_legend(out, classes, mask_set.manifest.labeler_id),
            storage.write_text(storage.join(out, "confidence.csv"), confidence_csv(images))]


def coco_document(mask_set: MaskSet, images: list[ExportImage], dataset: DatasetIndex,
                  split_instances: bool = False) -> dict[str, Any]:
    """COCO instances: every image listed (empty masks too), an annotation per class region
    (with ``split_instances``, per 8-connected piece of it: one animal, one annotation), the
    ignore region as an ``iscrowd`` annotation of the image's class (what COCO evaluation ignores)."""
    entries, annotations = [], []
    for number, image in enumerate(images, start=1):
        entries.append({"id": number, "file_name": relative_image_path(image.record, dataset.root),
                        "width": image.width, "height": image.height,
                        "wsss_image_id": image.record.image_id, "confidence": round(image.confidence, 6)})
        annotations += coco.class_map_annotations(class_map_at_image_size(mask_set, image), number,
                                                  len(annotations) + 1, image.confidence,
                                                  image.record.label + 1, split_instances)
    info = {"description": f"wsss mask set {mask_set.manifest.labeler_id}",
            "version": mask_set.manifest.fingerprint or ""}
    return coco.document(entries, annotations, dataset.classes, info)


def write_labelstudio(mask_set: MaskSet, images: list[ExportImage], dataset: DatasetIndex, out: str,
                      image_root: str = labelstudio.LOCAL_FILES_ROOT) -> list[str]:
    """The tasks JSON at ``out`` and its labeling config beside it; returns the config's path."""
    manifest = mask_set.manifest
    model_version = f"{manifest.labeler_id}-{(manifest.fingerprint or '')[:12]}".rstrip("-")
    tasks = []
    for image in images:
        data = {"image": image_root + quote(relative_image_path(image.record, dataset.root), safe="/"),
                "image_id": image.record.image_id, "confidence": round(image.confidence, 6)}
        tasks.append(labelstudio.task(class_map_at_image_size(mask_set, image), data, image.confidence,
                                      model_version, dataset.classes, one_class=not image.record.labels))
    storage.write_text(out, json.dumps(tasks, separators=(",", ":")))
    return [storage.write_text(labelstudio.labeling_config_path(out), labelstudio.labeling_config(dataset.classes))]


def write_format(mask_set: MaskSet, images: list[ExportImage], dataset: DatasetIndex, format: str, out: str,
                 image_root: str, split_instances: bool) -> list[str]:
    """The chosen images in ``format`` at ``out``; the side files written beside them."""
    if format == "png":
        return write_png_folder(mask_set, images, dataset.classes, out)
    if format == "coco":
        storage.write_text(out, json.dumps(coco_document(mask_set, images, dataset, split_instances),
                                           separators=(",", ":")))
        return []
    return write_labelstudio(mask_set, images, dataset, out, image_root)


def export_mask_set(mask_set: MaskSet, dataset: DatasetIndex, records: list[Record], format: str, out: str,
                    *, others: dict[str, MaskSet] | None = None, sort: str = "id",
                    image_root: str = labelstudio.LOCAL_FILES_ROOT, select: str | int | None = None,
                    by: str = "confidence", seed: int = 0, split_instances: bool = False) -> ExportResult:
    """Write the masks ``mask_set`` holds for ``records`` in ``format`` at ``out``, ranked by
    agreement with ``others`` (id -> set of the same study and data); with ``select``, only
    the images ``select_images`` chooses, the choice recorded at ``selection_path``; with
    ``split_instances`` (COCO only) an annotation per connected piece of each class."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    if split_instances and format != "coco":
        raise ValueError(f"--instances splits COCO annotations; format {format!r} has one region per class")
    order_images([], sort)  # an unknown sort fails before any image is read
    if by not in SELECT_BY:
        raise ValueError(f"unknown selection {by!r}; known: {', '.join(SELECT_BY)}")
    if select is not None:
        select_count(select, len(records))  # a malformed count fails before any image is read
    images = score_images(mask_set, records, others)
    if select is None:
        images = order_images(images, sort)
    else:  # the chosen images, most worth a review first
        images = select_images(images, select_count(select, len(images)), by, seed)
        record = selection_record(mask_set, images, by, str(select), seed, len(records))
    files = write_format(mask_set, images, dataset, format, out, image_root, split_instances)
    if select is not None:
        files.append(storage.write_text(selection_path(out, format), json.dumps(record, indent=2)))
    held = {image.record.image_id for image in images}
    return ExportResult(len(images), str(out), files,
                        [record.image_id for record in records if record.image_id not in held],
                        sorted(others or {}))
