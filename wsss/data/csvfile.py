"""A CSV manifest: ``ROOT/labels.csv`` (or ``data.manifest``) with one row per image.

Columns: ``image`` (a path relative to ROOT) and ``label`` (a class name) or ``labels``
(every class in the image, ``;``-separated; the first is the image's main class) are
required; ``split`` (train | val | test), ``box`` (``x0 y0 x1 y1`` in pixels, the object's
box: a cheap label the box labelers can start from), ``boxes`` (a box per class,
``name:x0 y0 x1 y1;...``) and ``mask`` (a ground-truth mask file relative to ROOT; used to
score only) are optional. A mask is binary (0 background, anything else foreground) for the
binary task, and class-indexed for the semantic one (0 background, k the k-th class of the
dataset's class list, 255 ignore). A row that cannot be used (a missing image, a label
outside ``data.classes``, empty labels, a bad split or box, a box outside the image, a mask
value outside the classes) is quarantined with its row number and reason, never dropped
silently.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from wsss.data.decode import DecodeError, read_trimap
from wsss.data.imagefolder import DatasetFormatError, image_id_of
from wsss.data.quarantine import Quarantine
from wsss.data.records import SPLITS, DatasetMissingError, Entry

DEFAULT_MANIFEST = "labels.csv"
REQUIRED, OPTIONAL = ("image",), ("label", "labels", "split", "box", "boxes", "mask")


def parse_box(text: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``x0 y0 x1 y1`` (spaces or commas) inside an image of ``size`` (width, height)."""
    parts = text.replace(",", " ").split()
    if len(parts) != 4:
        raise ValueError(f"box {text!r}: expected 'x0 y0 x1 y1'")
    x0, y0, x1, y1 = (int(round(float(part))) for part in parts)
    width, height = size
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {text!r} is outside the {width}x{height} image or empty")
    return x0, y0, x1, y1


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header (no decode); OSError when it is no image."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _class_names(row: dict[str, str], classes: list[str] | None) -> tuple[str, ...]:
    """The row's classes, main class first (``labels``, else ``label``); ValueError if none."""
    text = row.get("labels") if (row.get("labels") or "").strip() else row.get("label")
    names = tuple(dict.fromkeys(name.strip() for name in (text or "").split(";") if name.strip()))
    if not names:
        raise ValueError("empty labels: an image needs at least one class")
    unknown = [name for name in names if classes and name not in classes]
    if unknown:
        raise ValueError(f"label {unknown[0]!r} is not in data.classes ({', '.join(classes)})")
    return names


def _class_boxes(text: str, names: tuple[str, ...], path: Path) -> tuple:
    """``name:x0 y0 x1 y1;...`` as a box per entry of ``names`` (None where not given)."""
    given = {}
    for part in (p for p in text.split(";") if p.strip()):
        name, _, box = part.partition(":")
        if name.strip() not in names:
            raise ValueError(f"boxes name {name.strip()!r}, which is not among the row's labels")
        try:
            given[name.strip()] = parse_box(box, image_size(path))
        except OSError as error:
            raise ValueError(f"{path} is not an image ({error})") from None
    return tuple(given.get(name) for name in names)


def _entry(root: Path, row: dict[str, str], number: int, classes: list[str] | None, task: str) -> Entry:
    """One row as an Entry; ValueError (with the reason) when the row cannot be used."""
    relative = Path((row.get("image") or "").strip())
    if not relative.parts:
        raise ValueError("empty image")
    names = _class_names(row, classes)
    path = root / relative
    if not path.is_file():
        raise ValueError(f"image file missing: {path}")
    split = (row.get("split") or "").strip() or None
    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r}; allowed: {', '.join(SPLITS)}")
    box = None
    if (row.get("box") or "").strip():
        try:
            box = parse_box(row["box"], image_size(path))
        except OSError as error:
            raise ValueError(f"{path} is not an image ({error})") from None
    class_boxes = _class_boxes(row.get("boxes") or "", names, path)
    if box is None and class_boxes and class_boxes[0] is not None and len(names) == 1:
        box = class_boxes[0]
    mask = (row.get("mask") or "").strip()
    return Entry(image_id=image_id_of(relative), image_path=str(path), class_name=names[0], split=split,
                 truth_path=str(root / mask) if mask else None,
                 truth_format="classes" if task == "semantic" else "binary", box=box,
                 class_names=names, class_boxes=class_boxes if any(class_boxes) else ())


def check_class_mask(path: str, classes: list[str]) -> None:
    """ValueError naming the values when a class-indexed mask holds any outside 0..C and 255."""
    try:
        values = set(np.unique(read_trimap(path)).tolist())
    except DecodeError as error:
        raise ValueError(str(error)) from None
    extra = sorted(values - set(range(len(classes) + 1)) - {255})
    if extra:
        raise ValueError(f"mask {path} has values {extra} outside the classes (0 background, "
                         f"1..{len(classes)} for {', '.join(classes)}, 255 ignore)")


def read_csv_manifest(root: str | os.PathLike, manifest: str | None = None,
                      classes: list[str] | None = None, task: str = "binary"
                      ) -> tuple[list[Entry], list[str], Quarantine, list[str]]:
    """(entries, classes, quarantine, ids whose named mask file is missing) of a CSV root."""
    root = Path(root)
    path = root / (manifest or DEFAULT_MANIFEST)
    if not path.is_file():
        raise DatasetMissingError(f"no CSV manifest at {path}: write one with columns "
                                  f"image,label[,split,box,mask] (see docs/guide.md), or set data.manifest")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        missing = [c for c in REQUIRED if c not in columns] + ([] if columns & {"label", "labels"} else
                                                               ["label (or labels)"])
        if missing:
            raise DatasetFormatError(f"{path}: missing column(s) {', '.join(missing)}; found "
                                     f"{', '.join(sorted(columns)) or 'none'}")
        rows = list(reader)
    entries, quarantine, missing_masks, seen = [], Quarantine(), [], set()
    numbers = {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        try:
            entry = _entry(root, row, number, classes, task)
            if entry.image_id in seen:
                raise ValueError(f"{row['image']} is listed twice")
        except ValueError as error:
            quarantine.add(image_id_of(Path((row.get("image") or f"row{number}").strip() or f"row{number}")),
                           f"{path.name} row {number}: {error}")
            continue
        seen.add(entry.image_id)
        numbers[entry.image_id] = number
        if entry.truth_path and not Path(entry.truth_path).is_file():
            missing_masks.append(entry.image_id)
            entry.truth_path = None
        entries.append(entry)
    present = [e.class_names if task == "semantic" else (e.class_name,) for e in entries]
    names = list(classes or sorted({name for found in present for name in found}))
    if task == "semantic":  # class-indexed masks: their values must name the classes
        entries = [e for e in entries if _mask_fits(e, names, quarantine, f"{path.name} row {numbers[e.image_id]}")]
    return entries, names, quarantine, missing_masks


def _mask_fits(entry: Entry, classes: list[str], quarantine: Quarantine, where: str) -> bool:
    if not entry.truth_path:
        return True
    try:
        check_class_mask(entry.truth_path, classes)
    except ValueError as error:
        quarantine.add(entry.image_id, f"{where}: {error}")
        return False
    return True
