"""The synthetic pets in a user's layouts: class folders, a CSV manifest, a COCO JSON, a VOC tree.

``write_layout(source, root, layout)`` copies a synthetic Oxford-layout set (``synthesize``)
into ``imagefolder`` (``ROOT/<breed>/<id>.jpg``, nothing else: a user's images with cheap
labels and no masks), ``csv`` (``images/``, ``labels.csv`` with image, label, box and, with
``masks``, a binary mask per image) or ``coco`` (``images/``, ``annotations.json`` with one
annotation per image: its box and, with ``masks``, its segmentation as polygons, or as RLE
with ``rle``) or ``voc`` (``JPEGImages/``, palette ``SegmentationClass/`` PNGs: the breed's value
on the pet, 255 void on the trimap's border band; ``ImageSets/Segmentation/train.txt`` and
``val.txt``, val the source's val split; a CVAT ``labelmap.txt`` naming the breeds). Boxes are
the pet's bounding box from the trimap (x0 y0 x1 y1, exclusive ends).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from wsss.data import voc
from wsss.data.decode import read_trimap
from wsss.data.pets import index
from wsss.data.synthetic.writer import synthesize
from wsss.storage import write_text

LAYOUTS = ("imagefolder", "csv", "coco", "voc")


def pet_box(trimap: np.ndarray) -> tuple[int, int, int, int] | None:
    """The pet's (x0, y0, x1, y1) box, ends exclusive (pet or border pixels)."""
    rows, cols = np.nonzero(trimap != 2)
    if not len(rows):
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def _copy(record, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(record.image_path, target)


def _imagefolder(records, root: Path) -> None:
    for record in records:
        _copy(record, root / record.class_name / f"{record.image_id}.jpg")


def _write_mask(trimap: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((trimap != 2) * 255).astype(np.uint8), mode="L").save(path)


def _csv(records, root: Path, masks: bool) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["image", "label", "box"] + (["mask"] if masks else []))
    for record in records:
        _copy(record, root / "images" / f"{record.image_id}.jpg")
        trimap = read_trimap(record.trimap_path)
        box = pet_box(trimap)
        row = [f"images/{record.image_id}.jpg", record.class_name, " ".join(map(str, box)) if box else ""]
        if masks:
            _write_mask(trimap, root / "masks" / f"{record.image_id}.png")
            row.append(f"masks/{record.image_id}.png")
        writer.writerow(row)
    write_text(root / "labels.csv", buffer.getvalue())


def _segmentation(trimap: np.ndarray, rle: bool):
    import cv2
    from pycocotools import mask as coco_mask

    binary = np.asfortranarray((trimap != 2).astype(np.uint8))
    if rle:
        encoded = coco_mask.encode(binary)
        return {"size": encoded["size"], "counts": encoded["counts"].decode()}
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _coco(records, root: Path, masks: bool, rle: bool) -> None:
    classes = sorted({r.class_name for r in records})
    images, annotations = [], []
    for number, record in enumerate(records, start=1):
        _copy(record, root / "images" / f"{record.image_id}.jpg")
        trimap = read_trimap(record.trimap_path)
        height, width = trimap.shape
        images.append({"id": number, "file_name": f"images/{record.image_id}.jpg",
                       "width": width, "height": height})
        x0, y0, x1, y1 = pet_box(trimap)
        annotation = {"id": number, "image_id": number, "category_id": classes.index(record.class_name) + 1,
                      "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(np.count_nonzero(trimap != 2)),
                      "iscrowd": 0}
        if masks:
            annotation["segmentation"] = _segmentation(trimap, rle)
        annotations.append(annotation)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    write_text(root / "annotations.json", json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))


def _voc(records, root: Path) -> None:
    classes = sorted({r.class_name for r in records})

    def samples():
        for record in records:
            _copy(record, root / voc.IMAGES / f"{record.image_id}.jpg")
            trimap = read_trimap(record.trimap_path)
            class_map = np.select([trimap == 1, trimap == 3], [classes.index(record.class_name) + 1, voc.VOID], 0)
            yield record.image_id, class_map.astype(np.uint8), "val" if record.split == "val" else "train"

    voc.write_annotations(root, samples(), classes)


def write_layout(source: str | Path, root: str | Path, layout: str, *, masks: bool = True,
                 rle: bool = False) -> dict:
    """Copy the synthetic set at ``source`` into ``root`` in ``layout``; a summary."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "voc" and not masks:
        raise ValueError("the voc layout reads each image's classes from its mask: it cannot go without masks")
    records = index(source).records
    root = Path(root)
    if layout == "imagefolder":
        _imagefolder(records, root)
    elif layout == "csv":
        _csv(records, root, masks)
    elif layout == "voc":
        _voc(records, root)
    else:
        _coco(records, root, masks, rle)
    return {"root": str(root), "layout": layout, "images": len(records), "masks": masks and layout != "imagefolder"}


def synthesize_layout(root: str | Path, layout: str, images: int, size: int = 128, seed: int = 0,
                      *, masks: bool = True, progress: bool = False) -> dict:
    """Synthetic pets written straight into ``layout`` at ``root`` (rendered in a scratch
    folder beside it, removed after)."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{root.name}-", dir=root.parent) as scratch:
        summary = synthesize(Path(scratch) / "pets", images=images, size=size, seed=seed, progress=progress)
        written = write_layout(Path(scratch) / "pets", Path(scratch) / "out", layout, masks=masks)
        if root.exists():  # an earlier run's remains (none of it usable: it never got renamed)
            shutil.rmtree(root)
        os.replace(Path(scratch) / "out", root)  # whole or not at all
    return {**summary, **written, "root": str(root)}


def layout_present(root: str | Path, layout: str, manifest: str | None = None) -> bool:
    """Whether ``root`` already holds a dataset in ``layout`` (so it is not written again)."""
    root = Path(root)
    if layout == "oxford-pets":
        return (root / "annotations" / "trainval.txt").is_file()
    if layout == "voc":
        return (root / voc.IMAGES).is_dir()
    if layout == "imagefolder":
        return root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    default = "labels.csv" if layout == "csv" else "annotations.json"
    return (root / (manifest or default)).is_file()
