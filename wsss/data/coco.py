"""A COCO instances JSON (``images``, ``categories``, ``annotations``) as an image-level dataset.

For the binary task each image gets one class: the category covering the largest annotated
area in it; its box is the box around that category's annotations (``bbox``, x y w h); its
ground truth, when annotations carry a ``segmentation`` (polygons or RLE), is the union of all
its annotated objects. For the semantic task an image carries every category present (largest
area first), a box per category, and a class-indexed ground truth (0 background, k the k-th
class of the dataset's class list; larger categories drawn first, so smaller ones on top
stay visible). Ground truth is rasterised once by ``wsss.formats.coco`` (pycocotools, the
rasteriser reviews use too) into a cache keyed by the JSON's identity and the task (scoring
only). Images without annotations, annotations of images the JSON does not list, files that
are missing and segmentations that cannot be drawn (an RLE of another size, a polygon of fewer
than three points) are quarantined with the annotation or image id and the reason.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from wsss.data.imagefolder import DatasetFormatError, image_id_of
from wsss.data.quarantine import Quarantine
from wsss.data.records import DatasetMissingError, Entry
from wsss.formats import EntryError, coco
from wsss.identity import file_version, stable_hash
from wsss.storage import cache_dir, writing

DEFAULT_MANIFEST = "annotations.json"


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetFormatError(f"{path}: not a readable COCO JSON ({error})") from None
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise DatasetFormatError(f"{path}: missing {', '.join(missing)} (a COCO instances JSON has "
                                 f"images, annotations and categories)")
    return data


def _write_truth(mask: np.ndarray, path: Path, scale: int = 255) -> None:
    from PIL import Image

    if path.is_file():
        return
    with writing(path) as temporary:
        Image.fromarray((mask * scale).astype(np.uint8), mode="L").save(temporary)


def _box(annotations: list[dict], width: int, height: int) -> tuple[int, int, int, int] | None:
    boxes = [a["bbox"] for a in annotations if a.get("bbox")]
    if not boxes:
        return None
    x0 = max(0, int(np.floor(min(b[0] for b in boxes))))
    y0 = max(0, int(np.floor(min(b[1] for b in boxes))))
    x1 = min(width, int(np.ceil(max(b[0] + b[2] for b in boxes))))
    y1 = min(height, int(np.ceil(max(b[1] + b[3] for b in boxes))))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def read_coco(root: str | os.PathLike, manifest: str | None = None, classes: list[str] | None = None,
              task: str = "binary") -> tuple[list[Entry], list[str], Quarantine, list[str]]:
    """(entries, classes, quarantine, ids without ground truth) of a COCO root."""
    root = Path(root)
    path = root / (manifest or DEFAULT_MANIFEST)
    if not path.is_file():
        raise DatasetMissingError(f"no COCO JSON at {path}: set data.manifest to its path relative "
                                  f"to data.root")
    data = _load(path)
    names = {c["id"]: c["name"] for c in data["categories"]}
    images = {image["id"]: image for image in data["images"]}
    quarantine, by_image = Quarantine(), defaultdict(list)
    for annotation in data["annotations"]:
        if annotation.get("image_id") not in images:
            quarantine.add(f"annotation-{annotation.get('id')}", f"{path.name}: annotation "
                           f"{annotation.get('id')} names image {annotation.get('image_id')}, "
                           f"which the JSON does not list")
        elif annotation.get("category_id") not in names:
            quarantine.add(f"annotation-{annotation.get('id')}", f"{path.name}: annotation "
                           f"{annotation.get('id')} has unknown category {annotation.get('category_id')}")
        else:
            by_image[annotation["image_id"]].append(annotation)
    ordered = list(classes or [names[i] for i in sorted(names)])
    key = [str(path.resolve()), file_version(path)] + ([task, *ordered] if task != "binary" else [])
    truth_dir = cache_dir("coco-truth") / stable_hash(key, 16)
    entries, no_truth = [], []
    for image_id, image in sorted(images.items(), key=lambda item: str(item[1].get("file_name"))):
        entry = _entry(root, image, by_image[image_id], names, classes, truth_dir, quarantine,
                       ordered if task == "semantic" else None)
        if entry is not None:
            entries.append(entry)
            if entry.truth_path is None:
                no_truth.append(entry.image_id)
    return entries, ordered, quarantine, no_truth


def _entry(root: Path, image: dict, annotations: list[dict], names: dict, classes: list[str] | None,
           truth_dir: Path, quarantine: Quarantine, semantic: list[str] | None = None) -> Entry | None:
    """One COCO image as an Entry (None, quarantined, when unusable); ``semantic``: the
    dataset's class list, for an entry with every category present."""
    relative = Path(image.get("file_name", ""))
    image_id = image_id_of(relative)
    path = root / relative
    if not path.is_file():
        quarantine.add(image_id, f"image file missing: {path} (COCO image {image.get('id')})")
        return None
    if not annotations:
        quarantine.add(image_id, f"COCO image {image.get('id')} has no annotation, so no class")
        return None
    area = defaultdict(float)
    for annotation in annotations:
        area[names[annotation["category_id"]]] += float(annotation.get("area") or
                                                        np.prod(annotation.get("bbox", [0, 0, 0, 0])[2:]))
    present = sorted(area, key=lambda name: (-area[name], name))  # largest first
    class_name = present[0]
    outside = [name for name in (present if semantic else [class_name]) if classes and name not in classes]
    if outside:
        quarantine.add(image_id, f"COCO image {image.get('id')}: class {outside[0]!r} is not in data.classes")
        return None
    width, height = int(image["width"]), int(image["height"])
    try:
        if semantic:
            return _semantic_entry(path, image_id, annotations, names, present, semantic, truth_dir,
                                   width, height)
        mask = coco.union_mask(annotations, height, width)
    except EntryError as error:  # its ground truth cannot be drawn: score nothing against it
        quarantine.add(image_id, f"COCO image {image.get('id')}: {error}")
        return None
    mine = [a for a in annotations if names[a["category_id"]] == class_name]
    truth = None
    if mask is not None:
        truth = truth_dir / f"{image_id}.png"
        _write_truth(mask, truth)
    return Entry(image_id=image_id, image_path=str(path), class_name=class_name,
                 truth_path=None if truth is None else str(truth), truth_format="binary",
                 box=_box(mine, width, height))


def _semantic_entry(path: Path, image_id: str, annotations: list[dict], names: dict, present: list[str],
                    classes: list[str], truth_dir: Path, width: int, height: int) -> Entry:
    truth = coco.class_map(annotations, names, classes, present, height, width)
    truth_path = None
    if truth is not None:
        truth_path = truth_dir / f"{image_id}.png"
        _write_truth(truth, truth_path, scale=1)
    boxes = tuple(_box([a for a in annotations if names[a["category_id"]] == name], width, height)
                  for name in present)
    return Entry(image_id=image_id, image_path=str(path), class_name=present[0],
                 truth_path=None if truth_path is None else str(truth_path), truth_format="classes",
                 box=boxes[0] if len(present) == 1 else None, class_names=tuple(present),
                 class_boxes=boxes)
