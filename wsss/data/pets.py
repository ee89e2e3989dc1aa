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

import hashlib
import os
import shutil
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wsss.data.breeds import BREEDS, SPECIES, breed_of_image, species_of
from wsss.data.quarantine import Quarantine
from wsss.identity import file_version

DATASET_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
ARCHIVES = ("images.tar.gz", "annotations.tar.gz")
SPLIT_FILES = {"trainval": "trainval.txt", "test": "test.txt"}
SPLITS = ("train", "val", "test")


class DatasetMissingError(FileNotFoundError):
    """The dataset root is missing or incomplete; the message says what to fetch and where."""


@dataclass(frozen=True)
class Record:
    """One image of the dataset and where its annotations are."""

    image_id: str
    image_path: str
    trimap_path: str | None
    label: int  # 0..36, position in BREEDS
    breed: str
    species: str  # "cat" | "dog"
    split: str  # "train" | "val" | "test"
    head_box: tuple[int, int, int, int] | None = None  # VOC (xmin, ymin, xmax, ymax), 1-based
    version: str = ""  # what the files are: size and mtime of image and trimap (identity.file_version)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DatasetIndex:
    """Every usable record of a root, and what was wrong with the rest."""

    root: str
    records: list[Record]
    quarantine: Quarantine = field(default_factory=Quarantine)
    missing_trimaps: list[str] = field(default_factory=list)
    missing_boxes: list[str] = field(default_factory=list)

    def split(self, *names: str) -> list[Record]:
        """Records of the named splits ('trainval' means train and val)."""
        wanted = {s for name in names for s in (("train", "val") if name == "trainval" else (name,))}
        unknown = wanted - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split {sorted(unknown)}; known: trainval, {', '.join(SPLITS)}")
        return [record for record in self.records if record.split in wanted]

    def fingerprint(self) -> str:
        """Hash of every record's id, split, label, files and their versions: changes when the
        index changes and when any image or trimap is rewritten (a new size, a regenerated set).
        Paths count relative to the root, so the same files named from another directory (a
        relative root, or the absolute one a sweep hands its workers) are the same dataset."""
        digest = hashlib.sha256()
        for record in sorted(self.records, key=lambda r: r.image_id):
            files = [os.path.relpath(p, self.root) if p else "-" for p in (record.image_path, record.trimap_path)]
            digest.update(f"{record.image_id}|{record.split}|{record.label}|{files[0]}|{files[1]}|"
                          f"{record.version}\n".encode())
        return digest.hexdigest()[:16]


def missing_root_message(root: str | os.PathLike) -> str:
    return (
        f"Oxford-IIIT Pet not found at {os.fspath(root)}. Download {' and '.join(ARCHIVES)} "
        f"from {DATASET_URL} and extract both into {os.fspath(root)} so that "
        f"{os.fspath(root)}/images and {os.fspath(root)}/annotations exist; or pass --download "
        f"(data.download: true) on a machine with internet; or generate a synthetic set with "
        f"`wsss data synth --root {os.fspath(root)}`."
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


def assign_val(trainval: list[tuple[str, int]], fraction: float, seed: int) -> set[str]:
    """A seeded, per-breed (stratified) ``fraction`` of trainval ids to hold out as val."""
    by_label: dict[int, list[str]] = defaultdict(list)
    for image_id, label in trainval:
        by_label[label].append(image_id)
    labels = sorted(by_label)
    # Largest-remainder allocation: each breed gets floor(fraction * n) and the leftover goes to
    # the breeds with the largest remainders, so tiny sets still get round(fraction * total).
    exact = {label: fraction * len(by_label[label]) for label in labels}
    counts = {label: int(np.floor(exact[label])) for label in labels}
    leftover = int(round(fraction * len(trainval))) - sum(counts.values())
    tie_break = np.random.default_rng([seed, 1_000_003]).permutation(len(labels))
    ranked = sorted(labels, key=lambda label: (-(exact[label] - counts[label]), tie_break[labels.index(label)]))
    for label in ranked[:max(leftover, 0)]:
        counts[label] += 1
    val: set[str] = set()
    for label in labels:
        ids = sorted(by_label[label])
        order = np.random.default_rng([seed, label]).permutation(len(ids))
        val.update(ids[i] for i in order[:counts[label]])
    return val


def _limit(records: list[Record], limit: int | None) -> list[Record]:
    """At most ``limit`` records per split, spread over breeds (round-robin by breed)."""
    if limit is None:
        return records
    kept = []
    for split in SPLITS:
        in_split = [r for r in records if r.split == split]
        rank: dict[str, int] = defaultdict(int)
        keyed = []
        for record in sorted(in_split, key=lambda r: r.image_id):
            keyed.append((rank[record.breed], record.label, record.image_id, record))
            rank[record.breed] += 1
        kept.extend(item[-1] for item in sorted(keyed)[:limit])
    return kept


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
    entries = {split: _read_list(annotations / name) for split, name in SPLIT_FILES.items()}
    val_ids = assign_val(entries["trainval"], val_fraction, split_seed)
    result = DatasetIndex(root=str(root), records=[])
    for list_split, items in entries.items():
        for image_id, label in items:
            record = _make_record(root, image_id, label, list_split, val_ids, result)
            if record is not None:
                result.records.append(record)
    result.records = _limit(result.records, limit)
    return result


def _make_record(root: Path, image_id: str, label: int, list_split: str,
                 val_ids: set[str], result: DatasetIndex) -> Record | None:
    if not 0 <= label < len(BREEDS):
        result.quarantine.add(image_id, f"class id {label + 1} outside 1..{len(BREEDS)}")
        return None
    image_path = root / "images" / f"{image_id}.jpg"
    if not image_path.is_file():
        result.quarantine.add(image_id, f"image file missing: {image_path}")
        return None
    trimap_path = root / "annotations" / "trimaps" / f"{image_id}.png"
    if not trimap_path.is_file():
        result.missing_trimaps.append(image_id)
    head_box = None
    if list_split == "trainval":
        head_box = read_head_box(root / "annotations" / "xmls" / f"{image_id}.xml")
        if head_box is None:
            result.missing_boxes.append(image_id)
    split = "test" if list_split == "test" else ("val" if image_id in val_ids else "train")
    breed = BREEDS[label]
    if breed_of_image(image_id).lower() != breed.lower():
        result.quarantine.add(image_id, f"listed as {breed} but named as {breed_of_image(image_id)}")
        return None
    return Record(
        image_id=image_id,
        image_path=str(image_path),
        trimap_path=str(trimap_path) if trimap_path.is_file() else None,
        label=label,
        breed=breed,
        species=species_of(breed),
        split=split,
        head_box=head_box,
        version=f"{file_version(image_path)}/{file_version(trimap_path if trimap_path.is_file() else None)}",
    )


__all__ = ["Record", "DatasetIndex", "DatasetMissingError", "index", "SPECIES", "SPLITS"]
