"""Oxford-IIIT Pet: index a root in the official layout into records, with a quarantine.

Layout (as distributed at https://www.robots.ox.ac.uk/~vgg/data/pets/)::

    ROOT/images/<image_id>.jpg
    ROOT/annotations/list.txt, trainval.txt, test.txt    (lines starting with '#' are comments)
    ROOT/annotations/trimaps/<image_id>.png             (1 pet, 2 background, 3 border)
    ROOT/annotations/xmls/<image_id>.xml                (VOC head boxes, trainval only)

``index(root)`` reads the lists only; decoding problems surface when images are decoded
(``check`` decodes everything, the pipeline decodes as it goes) and land in a quarantine.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from wsss.data.breeds import BREEDS, SPECIES, breed_of_image, species_of
from wsss.data.quarantine import Quarantine
from wsss.data.records import (
    SPLITS,
    DatasetIndex,
    DatasetMissingError,
    Entry,
    Record,
    assign_val,
    build_index,
)

DATASET_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
ARCHIVES = ("images.tar.gz", "annotations.tar.gz")
SPLIT_FILES = {"trainval": "trainval.txt", "test": "test.txt"}


def missing_root_message(root: str | os.PathLike) -> str:
    return (
        f"Oxford-IIIT Pet not found at {os.fspath(root)}. Download {' and '.join(ARCHIVES)} "
        f"from {DATASET_URL} and extract both into {os.fspath(root)} so that "
        f"{os.fspath(root)}/images and {os.fspath(root)}/annotations exist; or pass --download "
        f"(data.download: true) on a machine with internet; or generate a synthetic set with "
        f"`wsss data synth --root {os.fspath(root)}`; or read your own images with "
        f"data.format: imagefolder | csv | coco."
    )


def _read_list(path: Path) -> list[tuple[str, int]]:
    """(image_id, 0-based label) per non-comment line of a list file."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"{path}:{number}: expected '<image_id> <class_id> ...', got {line!r}")
        entries.append((parts[0], int(parts[1]) - 1))
    return entries


def read_head_box(path: Path) -> tuple[int, int, int, int] | None:
    """The first object's VOC box in an annotation XML, or None when absent or unreadable."""
    try:
        box = ElementTree.parse(path).getroot().find("object/bndbox")
        if box is None:
            return None
        return tuple(int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (ElementTree.ParseError, OSError, TypeError, ValueError):
        return None


def download(root: str | os.PathLike) -> None:
    """Fetch the dataset into ``root`` with torchvision (needs internet)."""
    from torchvision.datasets import OxfordIIITPet

    root = Path(root)
    staging = root / ".download"
    OxfordIIITPet(root=str(staging), download=True)
    for part in ("images", "annotations"):
        shutil.move(str(staging / "oxford-iiit-pet" / part), str(root / part))
    shutil.rmtree(staging, ignore_errors=True)


def index(
    root: str | os.PathLike,
    *,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    limit: int | None = None,
    download_if_missing: bool = False,
) -> DatasetIndex:
    """Read the lists of an Oxford-IIIT Pet root into records (no image is decoded here)."""
    root = Path(root)
    annotations = root / "annotations"
    if not (annotations / "trainval.txt").is_file() or not (root / "images").is_dir():
        if not download_if_missing:
            raise DatasetMissingError(missing_root_message(root))
        download(root)
    listed = {split: _read_list(annotations / name) for split, name in SPLIT_FILES.items()}
    val_ids = assign_val(listed["trainval"], val_fraction, split_seed)
    quarantine, missing_trimaps, missing_boxes, entries = Quarantine(), [], [], []
    for list_split, items in listed.items():
        for image_id, label in items:
            entry = _make_entry(root, image_id, label, list_split, val_ids, quarantine,
                                missing_trimaps, missing_boxes)
            if entry is not None:
                entries.append(entry)
    result = build_index(str(root), entries, list(BREEDS), quarantine, val_fraction=val_fraction,
                         test_fraction=0.0, split_seed=split_seed, limit=limit, format="oxford-pets")
    result.missing_trimaps, result.missing_boxes = missing_trimaps, missing_boxes
    return result


def _make_entry(root: Path, image_id: str, label: int, list_split: str, val_ids: set[str],
                quarantine: Quarantine, missing_trimaps: list[str],
                missing_boxes: list[str]) -> Entry | None:
    if not 0 <= label < len(BREEDS):
        quarantine.add(image_id, f"class id {label + 1} outside 1..{len(BREEDS)}")
        return None
    image_path = root / "images" / f"{image_id}.jpg"
    if not image_path.is_file():
        quarantine.add(image_id, f"image file missing: {image_path}")
        return None
    trimap_path = root / "annotations" / "trimaps" / f"{image_id}.png"
    if not trimap_path.is_file():
        missing_trimaps.append(image_id)
    head_box = None
    if list_split == "trainval":
        head_box = read_head_box(root / "annotations" / "xmls" / f"{image_id}.xml")
        if head_box is None:
            missing_boxes.append(image_id)
    breed = BREEDS[label]
    if breed_of_image(image_id).lower() != breed.lower():
        quarantine.add(image_id, f"listed as {breed} but named as {breed_of_image(image_id)}")
        return None
    split = "test" if list_split == "test" else ("val" if image_id in val_ids else "train")
    return Entry(image_id=image_id, image_path=str(image_path), class_name=breed, split=split,
                 truth_path=str(trimap_path) if trimap_path.is_file() else None,
                 head_box=head_box, species=species_of(breed))


__all__ = ["Record", "DatasetIndex", "DatasetMissingError", "index", "SPECIES", "SPLITS"]
