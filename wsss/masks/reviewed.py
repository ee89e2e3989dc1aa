"""Reviewed masks back in: a Label Studio export, a COCO file or a folder of PNGs as a mask set.

People correct pseudo-masks in the tools they review in (``wsss export``) and hand back what
they reviewed. ``import_reviewed`` reads that file, brings each mask from its image's own size
to the working size (nearest neighbour: values stay 0 background, k a class, 255 ignore)
and stores it as a mask set like any other (``wsss.masks.store``), under
``reviewed-<name>-<fingerprint>``.

Identity: the set's fingerprint hashes the reviewed file's content (a folder: every PNG's
name and bytes), the dataset's fingerprint and the working size; its manifest lists the images
it covers. Importing the same file again reuses the set without reading it; a changed file, other
data or another size makes a new set.

What counts as reviewed:

- Label Studio JSON export (a list of tasks): a task with at least one annotation that was not
  cancelled; the latest one counts. Brush regions (RLE) and polygons (points in percent of the
  image) paint their class, regions labelled ``ignore`` paint 255. A task without an
  annotation was not reviewed and is skipped quietly.
- COCO: every image with annotations; a region paints its category's class, an ``iscrowd``
  region is ignore (how ``wsss export --format coco`` writes the ignore band). Segmentations
  are RLE (compressed or not) or polygons. An image listed without annotations is not reviewed.
- PNG folder: ``<image_id>.png`` as ``wsss export --format png`` writes them: 0 background,
  255 ignore, k class k. Other files (``classes.json``...) are left alone.

A class paints the value the data's class maps give it (``class_values``): k + 1 for the k-th
class where images carry several classes each, the one foreground (1) where each image is one
class against background (the binary study), so a review of either kind is read the same way.

The image a task or file stands for is found by ``data.image_id`` / ``wsss_image_id`` (what
``wsss export`` writes), else by its path under the dataset root, else by its file name. A task
whose image is not in the dataset, a mask whose size is not its image's, an empty or malformed
annotation: each is one line in ``ImportResult.problems`` naming the task or file, and
everything else is imported.

Reading each format is its module's work (``wsss.formats.labelstudio``, ``.coco``, ``.png``;
polygons are filled by pycocotools, as ground truth is); this module finds each entry's image,
says what counts as reviewed, and makes the set.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from wsss import storage
from wsss.data.arrays import resize_mask
from wsss.data.records import DatasetIndex, Record
from wsss.formats import EntryError, coco, labelstudio, png
from wsss.labelers.base import MASK_FOREGROUND, MASK_IGNORE
from wsss.masks.export import image_size, selection_path
from wsss.masks.integrity import MaskSetError
from wsss.masks.manifest import Manifest, ReviewSelection
from wsss.masks.store import MaskSet, MaskSetWriter, load_manifest, set_fingerprint, set_folder_name

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
    for name in png.mask_files(path):
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
        raise EntryError(f"image {named!r} is not in the dataset {self.dataset.root}")

    def size(self, record: Record) -> tuple[int, int]:
        """(width, height) as decoded, EXIF orientation applied."""
        if record.image_id not in self.sizes:
            self.sizes[record.image_id] = image_size(record.image_path)
        return self.sizes[record.image_id]

    def check_size(self, record: Record, width: int, height: int, what: str) -> None:
        own = self.size(record)
        if (int(width), int(height)) != own:
            raise EntryError(f"{what} is {int(width)}x{int(height)} but image {record.image_id} is "
                             f"{own[0]}x{own[1]}")


# -- Label Studio --------------------------------------------------------------------------------

def class_values(dataset: DatasetIndex) -> dict[str, int]:
    """The value a region of each class paints: its class (k + 1) where images carry several
    classes each, the one foreground (1) where each image is one class against background."""
    several = dataset.pixel_classes is not None
    return {name: k + 1 if several else MASK_FOREGROUND for k, name in enumerate(dataset.classes)}


def region_value(labels: list[str], values: dict[str, int], where: str) -> int:
    """255 for a region labelled ``ignore``, its class's value (``class_values``) for a class of
    the dataset; an EntryError otherwise."""
    if not labels:
        raise EntryError(f"{where}: a region without a label")
    if labels[0] == labelstudio.IGNORE_LABEL:
        return MASK_IGNORE
    if labels[0] not in values:
        raise EntryError(f"{where}: label {labels[0]!r} is neither a class of the dataset nor "
                         f"{labelstudio.IGNORE_LABEL!r}")
    return values[labels[0]]


def paint(regions: list[tuple[np.ndarray, int]], width: int, height: int) -> np.ndarray:
    """Class regions first, in their order, then ignore over them: a reviewer's "unsure" wins."""
    mask = np.zeros((height, width), np.uint8)
    for region, value in regions:
        if value != MASK_IGNORE:
            mask[region] = value
    for region, value in regions:
        if value == MASK_IGNORE:
            mask[region] = MASK_IGNORE
    return mask


def labelstudio_mask(task: dict[str, Any], lookup: ImageLookup,
                     values: dict[str, int]) -> tuple[Record, np.ndarray] | None:
    """(record, mask at the image's own size) of one task; None when it was not reviewed."""
    annotation = labelstudio.latest_annotation(task)
    if annotation is None:
        return None
    record = lookup.find(*labelstudio.task_image(task))
    width, height = lookup.size(record)
    regions = []
    for result, where in labelstudio.region_results(annotation):
        drawn_on = labelstudio.region_size(result)
        if drawn_on is not None:
            lookup.check_size(record, *drawn_on, f"{where}'s image")
        regions.append((labelstudio.region_pixels(result, width, height),
                        region_value(labelstudio.region_labels(result), values, where)))
    if not regions or not any(region.any() for region, _ in regions):
        raise EntryError("empty annotation (no painted region)")
    return record, paint(regions, width, height)


def read_labelstudio(path: str, lookup: ImageLookup) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(task name, reader) per task; a reader returns (record, mask) or None (not reviewed)."""
    tasks = load_json(path)
    if not isinstance(tasks, list):
        raise ReviewFileError(f"{path}: a Label Studio export is a JSON list of tasks")
    values = class_values(lookup.dataset)
    for number, task in enumerate(tasks):
        name = f"task {task.get('id', f'#{number}')}" if isinstance(task, dict) else f"task #{number}"
        if not isinstance(task, dict):
            yield name, _raise(EntryError("not a JSON object"))
            continue
        yield name, lambda task=task: labelstudio_mask(task, lookup, values)


def _raise(error: Exception) -> Callable[[], Any]:
    def reader() -> Any:
        raise error
    return reader


# -- COCO ----------------------------------------------------------------------------------------

def coco_image_mask(entry: dict[str, Any], annotations: list[dict[str, Any]], lookup: ImageLookup,
                    categories: dict[int, str]) -> tuple[Record, np.ndarray]:
    """(record, mask at the image's own size) of one COCO image: ``iscrowd`` regions ignore, the
    others their category's class value (``class_values``; with one class per image any
    category is the foreground)."""
    record = lookup.find(entry.get("wsss_image_id"), entry.get("file_name"))
    width, height = lookup.size(record)
    if "width" in entry and "height" in entry:
        lookup.check_size(record, entry["width"], entry["height"], "the COCO image entry")
    regions = []
    for annotation in annotations:
        if annotation.get("category_id") not in categories:
            raise EntryError(f"annotation {annotation.get('id')}: category {annotation.get('category_id')} "
                             f"is not in the file's categories")
        value = MASK_IGNORE if annotation.get("iscrowd") else category_value(
            categories[annotation["category_id"]], lookup.dataset, f"annotation {annotation.get('id')}")
        regions.append((coco.decode_segmentation(annotation.get("segmentation"), height, width), value))
    if not any(region.any() for region, _ in regions):
        raise EntryError("empty annotation (no pixel in any region)")
    return record, paint(regions, width, height)


def category_value(name: str, dataset: DatasetIndex, where: str) -> int:
    """The value a COCO category paints: its class's (``class_values``), or the foreground for
    any category where each image is one class."""
    if dataset.pixel_classes is None:
        return MASK_FOREGROUND
    values = class_values(dataset)
    if name not in values:
        raise EntryError(f"{where}: category {name!r} is not a class of the dataset ({', '.join(values)})")
    return values[name]


def read_coco(path: str, lookup: ImageLookup) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(image name, reader) per image listed; a reader returns (record, mask) or None."""
    document = load_json(path)
    try:
        categories, images, by_image = coco.index_document(document)
    except (KeyError, TypeError, ValueError) as error:
        raise ReviewFileError(f"{path}: not a COCO file ({type(error).__name__}: {error})") from None
    for entry in images:
        name = f"image {entry.get('id')} ({entry.get('file_name')})"
        annotations = by_image.get(entry.get("id"))
        if not annotations:
            yield name, lambda: None  # listed, not annotated: not reviewed
            continue
        yield name, lambda entry=entry, annotations=annotations: coco_image_mask(entry, annotations, lookup,
                                                                                 categories)


# -- a folder of PNGs ----------------------------------------------------------------------------

def png_mask(file: Path, lookup: ImageLookup) -> tuple[Record, np.ndarray]:
    """(record, mask) of one ``<image_id>.png``: 255 ignore; with one class per image any other
    value but 0 is the foreground, with several each value is its class (1..C, as exported)."""
    record = lookup.find(file.stem, None)
    values = png.read_class_map(file)
    lookup.check_size(record, values.shape[1], values.shape[0], "the mask")
    classes = lookup.dataset.pixel_classes
    if classes is None:
        return record, np.where(values == MASK_IGNORE, MASK_IGNORE, (values > 0).astype(np.uint8)).astype(np.uint8)
    unknown = sorted(set(np.unique(values).tolist()) - {MASK_IGNORE, *range(len(classes) + 1)})
    if unknown:
        raise EntryError(f"values {unknown} are no class of the dataset (0 background, 1..{len(classes)}, 255 ignore)")
    return record, values.astype(np.uint8)


def read_png_folder(path: str, lookup: ImageLookup) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(file name, reader) per PNG in the folder."""
    for name in png.mask_files(path):
        yield name, lambda file=Path(path, name): png_mask(file, lookup)


READERS = {"labelstudio": read_labelstudio, "coco": read_coco, "png": read_png_folder}


def recorded_selection(path: str, format: str) -> ReviewSelection | None:
    """How the reviewed images were chosen, where ``wsss export --select`` recorded it (in the
    PNG folder, or beside the JSON): by, share, seed; None when there is no readable record."""
    target = selection_path(path, format)
    if not storage.exists(target):
        return None
    try:
        record = json.loads(storage.read_text(target))
        return ReviewSelection(**{key: record.get(key) for key in ReviewSelection.model_fields})
    except (ValueError, AttributeError):  # not JSON, not an object, or not the fields export writes
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
    manifest = load_manifest(uri)
    if manifest is not None and manifest.complete:
        return ImportResult(MaskSet(uri, manifest), key, True, list(manifest.images),
                            list(manifest.problems or []), manifest.not_reviewed or 0,
                            time.perf_counter() - start)
    lookup, writer = ImageLookup(dataset), MaskSetWriter(uri)
    imported, problems, not_reviewed, seen = [], [], 0, {}
    items = list(READERS[format](path, lookup))
    for number, (item, read) in enumerate(items, start=1):
        if progress:
            progress(number, len(items))
        try:
            found = read()
        except EntryError as error:
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
    manifest = writer.write_manifest(Manifest(
        labeler_id=key, name=KIND, kind="masks", fingerprint=fingerprint, **identity,
        params={"source": str(path), "format": format, "source_hash": source},
        selection=recorded_selection(path, format), images=sorted(imported), images_present=len(imported),
        images_expected=len(imported), problems=problems, not_reviewed=not_reviewed, complete=True,
        updated=time.time()))
    return ImportResult(MaskSet(uri, manifest), key, False, sorted(imported), problems, not_reviewed,
                        time.perf_counter() - start)
