"""A CSV manifest: ``ROOT/labels.csv`` (or ``data.manifest``) with one row per image.

Columns: ``image`` (a path relative to ROOT) and ``label`` (a class name) are required;
``split`` (train | val | test), ``box`` (``x0 y0 x1 y1`` in pixels, the object's box: a cheap
label the box labelers can start from) and ``mask`` (a ground-truth mask file relative to
ROOT: 0 background, anything else foreground; used to score only) are optional. A row that
cannot be used (a missing image, a label outside ``data.classes``, a bad split or box, a box
outside the image) is quarantined with its row number and reason, never dropped silently.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from wsss.data.imagefolder import DatasetFormatError, image_id_of
from wsss.data.quarantine import Quarantine
from wsss.data.records import SPLITS, DatasetMissingError, Entry

DEFAULT_MANIFEST = "labels.csv"
REQUIRED, OPTIONAL = ("image", "label"), ("split", "box", "mask")


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


def _entry(root: Path, row: dict[str, str], number: int, classes: list[str] | None) -> Entry:
    """One row as an Entry; ValueError (with the reason) when the row cannot be used."""
    relative = Path((row.get("image") or "").strip())
    label = (row.get("label") or "").strip()
    if not relative.parts or not label:
        raise ValueError("empty image or label")
    path = root / relative
    if not path.is_file():
        raise ValueError(f"image file missing: {path}")
    if classes and label not in classes:
        raise ValueError(f"label {label!r} is not in data.classes ({', '.join(classes)})")
    split = (row.get("split") or "").strip() or None
    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r}; allowed: {', '.join(SPLITS)}")
    box = None
    if (row.get("box") or "").strip():
        try:
            box = parse_box(row["box"], image_size(path))
        except OSError as error:
            raise ValueError(f"{path} is not an image ({error})") from None
    mask = (row.get("mask") or "").strip()
    return Entry(image_id=image_id_of(relative), image_path=str(path), class_name=label, split=split,
                 truth_path=str(root / mask) if mask else None, truth_format="binary", box=box)


def read_csv_manifest(root: str | os.PathLike, manifest: str | None = None,
                      classes: list[str] | None = None
                      ) -> tuple[list[Entry], list[str], Quarantine, list[str]]:
    """(entries, classes, quarantine, ids whose named mask file is missing) of a CSV root."""
    root = Path(root)
    path = root / (manifest or DEFAULT_MANIFEST)
    if not path.is_file():
        raise DatasetMissingError(f"no CSV manifest at {path}: write one with columns "
                                  f"image,label[,split,box,mask] (see the README), or set data.manifest")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise DatasetFormatError(f"{path}: missing column(s) {', '.join(missing)}; found "
                                     f"{', '.join(sorted(columns)) or 'none'}")
        rows = list(reader)
    entries, quarantine, missing_masks, seen = [], Quarantine(), [], set()
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        try:
            entry = _entry(root, row, number, classes)
            if entry.image_id in seen:
                raise ValueError(f"{row['image']} is listed twice")
        except ValueError as error:
            quarantine.add(image_id_of(Path((row.get("image") or f"row{number}").strip() or f"row{number}")),
                           f"{path.name} row {number}: {error}")
            continue
        seen.add(entry.image_id)
        if entry.truth_path and not Path(entry.truth_path).is_file():
            missing_masks.append(entry.image_id)
            entry.truth_path = None
        entries.append(entry)
    return entries, list(classes or sorted({e.class_name for e in entries})), quarantine, missing_masks
