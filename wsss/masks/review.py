"""Reviewed masks back in: a Label Studio export, a COCO file or a folder of PNGs as a mask set.

People correct pseudo-masks in the tools they review in (``wsss export``) and hand back what
they reviewed. ``import_reviewed`` reads that file, brings each mask from its image's own size
to the working size (nearest neighbour: values stay 0 background, 1 foreground, 255 ignore)
and stores it as a mask set like any other (``wsss.masks.store``), under
``reviewed-<name>-<fingerprint>``.

Identity: the set's fingerprint hashes the reviewed file's content (a folder: every PNG's
name and bytes), the dataset's fingerprint and the working size; its manifest lists the images
it covers. Importing the same file again reuses the set without reading it; a changed file, other
data or another size makes a new set.

What counts as reviewed:

- Label Studio JSON export (a list of tasks): a task with at least one annotation that was not
  cancelled; the latest one counts. Brush regions (RLE) and polygons (points in percent of the
  image) of any class paint foreground, regions labelled ``ignore`` paint 255. A task without an
  annotation was not reviewed and is skipped quietly.
- COCO: every image with annotations; a region of any category is foreground, an ``iscrowd``
  region is ignore (how ``wsss export --format coco`` writes the ignore band). Segmentations
  are RLE (compressed or not) or polygons. An image listed without annotations is not reviewed.
- PNG folder: ``<image_id>.png`` as ``wsss export --format png`` writes them: 0 background,
  255 ignore, any other value foreground. Other files (``classes.json``...) are left alone.

The image a task or file stands for is found by ``data.image_id`` / ``wsss_image_id`` (what
``wsss export`` writes), else by its path under the dataset root, else by its file name. A task
whose image is not in the dataset, a mask whose size is not its image's, an empty or malformed
annotation: each is one line in ``ImportResult.problems`` naming the task or file, and
everything else is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

import numpy as np

from wsss import storage
from wsss.data.arrays import resize_mask
from wsss.data.records import DatasetIndex, Record
from wsss.labelers.base import MASK_FOREGROUND, MASK_IGNORE
from wsss.masks.export import IGNORE_LABEL, image_size, selection_path
from wsss.masks.store import (MaskSet, MaskSetError, MaskSetWriter, read_manifest, set_fingerprint,
                              set_folder_name)

FORMATS = ("auto", "labelstudio", "coco", "png")
KIND = "reviewed"
PREFIX = "reviewed-"


class ReviewFileError(ValueError):
    """The reviewed file as a whole cannot be read (not JSON, an unknown layout); the message
    names the file and what was expected."""


@dataclass
class ImportResult:
    """What ``import_reviewed`` made or found."""

    mask_set: MaskSet
    key: str  # the set's labeler id, reviewed-<name>
    reused: bool  # the same file was imported before: nothing was read again
    imported: list[str] = field(default_factory=list)  # image ids
    problems: list[str] = field(default_factory=list)  # one line per task or file left out
    not_reviewed: int = 0  # tasks or images without an annotation
    seconds: float = 0.0


class Problem(ValueError):
    """One task or file that cannot be imported; the message is its line."""


# -- what a reviewed file is ---------------------------------------------------------------------

def detect_format(path: str) -> str:
    """``png`` for a folder, ``labelstudio`` for a JSON list of tasks, ``coco`` for a JSON
    object with images and annotations."""
    if storage.is_file(path):
        document = load_json(path)
        if isinstance(document, list):
            return "labelstudio"
        if isinstance(document, dict) and "images" in document and "annotations" in document:
            return "coco"
        raise ReviewFileError(f"{path}: neither a Label Studio export (a JSON list of tasks) nor a COCO "
                           f"file (an object with 'images' and 'annotations')")
    if Path(path).is_dir():
        return "png"
    raise ReviewFileError(f"{path}: no such file or folder (expected a Label Studio or COCO JSON export, "
                       f"or a folder of <image_id>.png)")


def load_json(path: str) -> Any:
    try:
        return json.loads(storage.read_bytes(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReviewFileError(f"{path}: not JSON ({error})") from None


def source_hash(path: str, format: str) -> str:
    """The reviewed content's hash: the file's bytes, or a folder's PNG names and bytes."""
    digest = hashlib.sha256(format.encode())
    if format != "png":
        digest.update(storage.read_bytes(path))
        return digest.hexdigest()[:16]
    for name in sorted(os.listdir(path)):
        if name.lower().endswith(".png"):
            digest.update(f"{name}\n".encode())
            digest.update(hashlib.sha256(Path(path, name).read_bytes()).digest())
    return digest.hexdigest()[:16]


def default_name(path: str) -> str:
    """The set's name from the file's: ``reviewed-<stem>`` (letters, digits, - and _ only)."""
    stem = Path(str(path).rstrip("/")).name
    stem = stem[: -len(".json")] if stem.endswith(".json") else stem
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "import"


# -- finding an annotation's image ---------------------------------------------------------------

@dataclass
class ImageLookup:
    """Records by id, by path under the dataset root, and by file name; sizes read on demand."""

    dataset: DatasetIndex
    by_id: dict[str, Record] = field(default_factory=dict)
    by_path: dict[str, Record] = field(default_factory=dict)
    by_name: dict[str, Record | None] = field(default_factory=dict)  # None: the name is ambiguous
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for record in self.dataset.records:
            self.by_id[record.image_id] = record
            self.by_path[os.path.relpath(record.image_path, self.dataset.root).replace(os.sep, "/")] = record
            name = os.path.basename(record.image_path)
            self.by_name[name] = None if name in self.by_name else record

    def find(self, image_id: str | None, reference: str | None) -> Record:
        """The record of an id, or of an image path or URL (Label Studio's ``?d=`` paths too)."""
        if image_id is not None and str(image_id) in self.by_id:
            return self.by_id[str(image_id)]
        if reference:
            path = unquote(str(reference).split("?d=", 1)[-1]).split("?", 1)[0].lstrip("/")
            for start in range(path.count("/") + 1):  # the longest suffix that is a dataset path
                suffix = path.split("/", start)[-1]
                if suffix in self.by_path:
                    return self.by_path[suffix]
            record = self.by_name.get(os.path.basename(path))
            if record is not None:
                return record
        named = image_id if image_id is not None else reference
        raise Problem(f"image {named!r} is not in the dataset {self.dataset.root}")

    def size(self, record: Record) -> tuple[int, int]:
        """(width, height) as decoded, EXIF orientation applied."""
        if record.image_id not in self.sizes:
            self.sizes[record.image_id] = image_size(record.image_path)
        return self.sizes[record.image_id]

    def check_size(self, record: Record, width: int, height: int, what: str) -> None:
        own = self.size(record)
        if (int(width), int(height)) != own:
            raise Problem(f"{what} is {int(width)}x{int(height)} but image {record.image_id} is "
                          f"{own[0]}x{own[1]}")


# -- Label Studio --------------------------------------------------------------------------------

def decode_brush_rle(rle: list[int]) -> np.ndarray:
    """Label Studio's brush RLE -> the flat uint8 RGBA values, as ``label_studio_converter.brush.
    decode_rle`` gives them. Its bytes-to-bits step is a Python call per bit (80 % of an import,
    ~13 ms a region at 384 px); here numpy unpacks the bits and only the runs are walked."""
    bits = (np.unpackbits(np.asarray(rle, dtype=np.uint8)) + ord("0")).tobytes().decode("ascii")
    position = 0

    def read(size: int) -> int:
        nonlocal position
        position += size
        return int(bits[position - size:position], 2)

    count, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.uint8)
    i = 0
    while i < count:
        repeated = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeated:
            out[i:j] = read(word)
        else:
            out[i:j] = [read(word) for _ in range(j - i)]
        i = j
    return out


def brush_region(value: dict[str, Any], width: int, height: int) -> np.ndarray:
    """A brush region's pixels from Label Studio's RLE (RGBA; painted where alpha is set)."""
    if value.get("format", "rle") != "rle" or not value.get("rle"):
        raise Problem(f"brush region without RLE (format {value.get('format')!r})")
    flat = decode_brush_rle(value["rle"])
    if flat.size != width * height * 4:
        raise Problem(f"brush RLE holds {flat.size // 4} pixels, not {width}x{height}")
    return flat.reshape(height, width, 4)[:, :, 3] >= 128


def polygon_region(points: list[list[float]], width: int, height: int, scale: tuple[float, float]) -> np.ndarray:
    """A filled polygon's pixels; ``scale`` turns its points into pixels (percent -> px)."""
    import cv2

    vertices = np.asarray(points, np.float64).reshape(-1, 2) * np.asarray(scale)
    if len(vertices) < 3:
        raise Problem(f"polygon with {len(vertices)} points")
    canvas = np.zeros((height, width), np.uint8)
    cv2.fillPoly(canvas, [np.rint(vertices - 0.5).astype(np.int32)], 1)
    return canvas.astype(bool)


def region_value(labels: list[str], classes: set[str], where: str) -> int:
    """255 for a region labelled ``ignore``, 1 for a class of the dataset; a Problem otherwise."""
    if not labels:
        raise Problem(f"{where}: a region without a label")
    if labels[0] == IGNORE_LABEL:
        return MASK_IGNORE
    if labels[0] not in classes:
        raise Problem(f"{where}: label {labels[0]!r} is neither a class of the dataset nor "
                      f"{IGNORE_LABEL!r}")
    return MASK_FOREGROUND


def paint(regions: list[tuple[np.ndarray, int]], width: int, height: int) -> np.ndarray:
    """Foreground regions first, ignore over them: a reviewer's "unsure" wins."""
    mask = np.zeros((height, width), np.uint8)
    for value in (MASK_FOREGROUND, MASK_IGNORE):
        for region, region_value_ in regions:
            if region_value_ == value:
                mask[region] = value
    return mask


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's latest annotation that was not cancelled (by update time, then id)."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not kept:
        return None
    return max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def labelstudio_mask(task: dict[str, Any], lookup: ImageLookup, classes: set[str]) -> tuple[Record, np.ndarray] | None:
    """(record, mask at the image's own size) of one task; None when it was not reviewed."""
    annotation = latest_annotation(task)
    if annotation is None:
        return None
    data = task.get("data") or {}
    record = lookup.find(data.get("image_id"), data.get("image"))
    width, height = lookup.size(record)
    regions = []
    for result in annotation.get("result") or []:
        kind, value = result.get("type"), result.get("value") or {}
        if kind not in ("brushlabels", "polygonlabels"):
            continue  # choices, ratings...: not a region
        where = f"region {result.get('id', '?')}"
        if "original_width" in result:
            lookup.check_size(record, result["original_width"], result["original_height"], f"{where}'s image")
        if kind == "brushlabels":
            regions.append((brush_region(value, width, height),
                            region_value(value.get("brushlabels", []), classes, where)))
        else:
            regions.append((polygon_region(value.get("points", []), width, height, (width / 100, height / 100)),
                            region_value(value.get("polygonlabels", []), classes, where)))
    if not regions or not any(region.any() for region, _ in regions):
        raise Problem("empty annotation (no painted region)")
    return record, paint(regions, width, height)


def read_labelstudio(path: str, lookup: ImageLookup) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(task name, reader) per task; a reader returns (record, mask) or None (not reviewed)."""
    tasks = load_json(path)
    if not isinstance(tasks, list):
        raise ReviewFileError(f"{path}: a Label Studio export is a JSON list of tasks")
    classes = set(lookup.dataset.classes)
    for number, task in enumerate(tasks):
        name = f"task {task.get('id', f'#{number}')}" if isinstance(task, dict) else f"task #{number}"
        if not isinstance(task, dict):
            yield name, _raise(Problem("not a JSON object"))
            continue
        yield name, lambda task=task: labelstudio_mask(task, lookup, classes)


def _raise(error: Exception) -> Callable[[], Any]:
    def reader() -> Any:
        raise error
    return reader


# -- COCO ----------------------------------------------------------------------------------------

def coco_region(segmentation: Any, width: int, height: int) -> np.ndarray:
    """An annotation's pixels: compressed or uncompressed RLE, or polygons in pixels."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, dict):
        size = [int(n) for n in segmentation.get("size", [])]
        if size != [height, width]:
            raise Problem(f"RLE of size {size} on a {height}x{width} image")
        rle = segmentation if isinstance(segmentation.get("counts"), str) else \
            coco_mask.frPyObjects(segmentation, height, width)
        return coco_mask.decode(rle).astype(bool)
    if isinstance(segmentation, list) and segmentation:
        parts = [polygon_region(polygon, width, height, (1.0, 1.0)) for polygon in segmentation]
        return np.logical_or.reduce(parts)
    raise Problem(f"segmentation is neither RLE nor polygons: {str(segmentation)[:60]}")


def coco_mask(entry: dict[str, Any], annotations: list[dict[str, Any]], lookup: ImageLookup,
              categories: dict[int, str]) -> tuple[Record, np.ndarray]:
    record = lookup.find(entry.get("wsss_image_id"), entry.get("file_name"))
    width, height = lookup.size(record)
    if "width" in entry and "height" in entry:
        lookup.check_size(record, entry["width"], entry["height"], "the COCO image entry")
    regions = []
    for annotation in annotations:
        if annotation.get("category_id") not in categories:
            raise Problem(f"annotation {annotation.get('id')}: category {annotation.get('category_id')} "
                          f"is not in the file's categories")
        value = MASK_IGNORE if annotation.get("iscrowd") else MASK_FOREGROUND
        regions.append((coco_region(annotation.get("segmentation"), width, height), value))
    if not any(region.any() for region, _ in regions):
        raise Problem("empty annotation (no pixel in any region)")
    return record, paint(regions, width, height)


def read_coco(path: str, lookup: ImageLookup) -> Iterator[tuple[str, Callable[[], Any]]]:
    document = load_json(path)
    try:
        categories = {int(c["id"]): str(c.get("name", c["id"])) for c in document.get("categories", [])}
        by_image: dict[Any, list[dict[str, Any]]] = {}
        for annotation in document["annotations"]:
            by_image.setdefault(annotation["image_id"], []).append(annotation)
        images = list(document["images"])
    except (KeyError, TypeError, ValueError) as error:
        raise ReviewFileError(f"{path}: not a COCO file ({type(error).__name__}: {error})") from None
    for entry in images:
        name = f"image {entry.get('id')} ({entry.get('file_name')})"
        annotations = by_image.get(entry.get("id"))
        if not annotations:
            yield name, lambda: None  # listed, not annotated: not reviewed
            continue
        yield name, lambda entry=entry, annotations=annotations: coco_mask(entry, annotations, lookup, categories)


# -- a folder of PNGs ----------------------------------------------------------------------------

def png_mask(file: Path, lookup: ImageLookup) -> tuple[Record, np.ndarray]:
    from PIL import Image

    record = lookup.find(file.stem, None)
    try:
        with Image.open(file) as image:
            if image.mode not in ("L", "P"):
                raise Problem(f"mode {image.mode}: expected a one-channel (L or P) PNG of class values")
            values = np.asarray(image, np.uint8)
    except OSError as error:
        raise Problem(f"cannot decode: {error}") from None
    lookup.check_size(record, values.shape[1], values.shape[0], "the mask")
    return record, np.where(values == MASK_IGNORE, MASK_IGNORE, (values > 0).astype(np.uint8)).astype(np.uint8)


def read_png_folder(path: str, lookup: ImageLookup) -> Iterator[tuple[str, Callable[[], Any]]]:
    for name in sorted(os.listdir(path)):
        if name.lower().endswith(".png"):
            yield name, lambda file=Path(path, name): png_mask(file, lookup)


READERS = {"labelstudio": read_labelstudio, "coco": read_coco, "png": read_png_folder}


def recorded_selection(path: str, format: str) -> dict[str, Any] | None:
    """How the reviewed images were chosen, where ``wsss export --select`` recorded it (in the
    PNG folder, or beside the JSON): by, share, seed; None when there is no record."""
    target = selection_path(path, format)
    if not storage.exists(target):
        return None
    try:
        record = json.loads(storage.read_text(target))
        return {key: record.get(key) for key in ("by", "select", "seed", "labeler_id", "fingerprint")}
    except (json.JSONDecodeError, AttributeError):
        return None


# -- the set -------------------------------------------------------------------------------------

def reviewed_identity(source: str, format: str, dataset: DatasetIndex, image_size: int) -> dict[str, Any]:
    """What a reviewed set is made from: the reviewed content, the dataset, the working size."""
    return {"labeler_fingerprint": f"{KIND}:{format}:{source}", "dataset_index": dataset.fingerprint(),
            "image_size": image_size}


def import_reviewed(store: str, path: str, dataset: DatasetIndex, size: int, *, format: str = "auto",
                    name: str | None = None, progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Import reviewed masks from ``path`` into ``store`` at ``size`` x ``size`` (or find the set
    this exact content made before)."""
    if format not in FORMATS:
        raise ReviewFileError(f"unknown review format {format!r}; known: {', '.join(FORMATS)}")
    start = time.perf_counter()
    format = detect_format(path) if format == "auto" else format
    source = source_hash(path, format)
    key = PREFIX + (name or default_name(path))
    identity = reviewed_identity(source, format, dataset, size)
    fingerprint = set_fingerprint(identity)
    uri = storage.join(store, set_folder_name(key, fingerprint))
    manifest = read_manifest(uri)
    if manifest is not None and manifest.get("complete"):
        return ImportResult(MaskSet(uri, manifest), key, True, list(manifest["images"]),
                            list(manifest.get("problems", [])), manifest.get("not_reviewed", 0),
                            time.perf_counter() - start)
    lookup, writer = ImageLookup(dataset), MaskSetWriter(uri)
    imported, problems, not_reviewed, seen = [], [], 0, {}
    items = list(READERS[format](path, lookup))
    for number, (item, read) in enumerate(items, start=1):
        if progress:
            progress(number, len(items))
        try:
            found = read()
        except Problem as error:
            problems.append(f"{item}: {error}")
            continue
        except (KeyError, TypeError, ValueError, IndexError) as error:  # a malformed entry
            problems.append(f"{item}: malformed ({type(error).__name__}: {error})")
            continue
        if found is None:
            not_reviewed += 1
            continue
        record, mask = found
        if record.image_id in seen:
            problems.append(f"{item}: image {record.image_id} was already imported from {seen[record.image_id]}; "
                            f"this one is left out")
            continue
        seen[record.image_id] = item
        writer.write_mask(record.image_id, resize_mask(mask, size), {"source": item})
        imported.append(record.image_id)
    if not imported:
        raise MaskSetError(f"{path}: no reviewed mask to import ({len(problems)} problems, "
                           f"{not_reviewed} not reviewed){''.join(chr(10) + '  ' + p for p in problems[:20])}")
    manifest = {"labeler_id": key, "name": KIND, "kind": "masks", "fingerprint": fingerprint,
                **identity, "params": {"source": str(path), "format": format, "source_hash": source},
                "selection": recorded_selection(path, format),
                "images": sorted(imported), "images_present": len(imported),
                "images_expected": len(imported), "problems": problems, "not_reviewed": not_reviewed,
                "complete": True, "updated": time.time()}
    writer.write_manifest(manifest)
    return ImportResult(MaskSet(uri, manifest), key, False, sorted(imported), problems, not_reviewed,
                        time.perf_counter() - start)
