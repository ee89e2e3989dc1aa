"""What every dataset reader produces: records, the index that holds them, splits and limits.

A reader (``pets``, ``imagefolder``, ``csvfile``, ``coco``) lists a root into ``Entry`` rows
and a quarantine; ``build_index`` turns them into ``Record``s with class indices, file
versions and train/val/test splits (given ones kept, the rest a seeded stratified split).
Ground truth, when a dataset has it, is a file (``truth_path``) read by ``decode.read_truth``
for scoring only; it never reaches a labeler or a weakly supervised run's choices.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from wsss.data.quarantine import Quarantine
from wsss.identity import file_version

SPLITS = ("train", "val", "test")
# trimap: 1 fg, 2 bg, 3 border; binary: 0 bg, else fg; classes: 0 bg, k the k-th class (1-based)
# of the dataset's class list, 255 ignore
TRUTH_FORMATS = ("trimap", "binary", "classes")
TASKS = ("binary", "semantic")  # one foreground vs background; a channel per class + background


class DatasetMissingError(FileNotFoundError):
    """The dataset root is missing or incomplete; the message says what to fetch and where."""


@dataclass(frozen=True, slots=True)
class Record:
    """One image of a dataset: its file, its image-level class, its split, what it may carry."""

    image_id: str
    image_path: str
    trimap_path: str | None  # ground truth (scoring only): a trimap, or a binary mask (truth_format)
    label: int  # index of class_name in the dataset's classes
    class_name: str
    species: str | None  # Oxford-IIIT Pet: "cat" | "dog"; other datasets: None
    split: str  # "train" | "val" | "test"
    head_box: tuple[int, int, int, int] | None = None  # Oxford's VOC head boxes, 1-based (unused)
    version: str = ""  # what the files are: size and mtime of image and truth (identity.file_version)
    box: tuple[int, int, int, int] | None = None  # a given box around the object, (x0, y0, x1, y1) px
    truth_format: str = "trimap"
    labels: tuple[int, ...] = ()  # every class in the image (semantic task); () means (label,)
    class_boxes: tuple[tuple[int, int, int, int] | None, ...] = ()  # given box per entry of labels

    @property
    def present(self) -> tuple[int, ...]:
        """The class indices in the image: ``labels``, or the one ``label``."""
        return self.labels or (self.label,)

    @property
    def mask_classes(self) -> tuple[int, ...]:
        """The pixel classes its mask paints, one per entry of ``present`` (value k + 1 for class
        k): its classes, or class 0 (value 1, the one foreground) for one class per image."""
        return self.labels or (0,)

    @property
    def entry_boxes(self) -> tuple[tuple[int, int, int, int] | None, ...]:
        """The given box of each entry of ``present`` (None where the data gives none)."""
        return self.class_boxes or (self.box,)

    @property
    def breed(self) -> str:
        """The class name under the Oxford-IIIT Pet dataset's word for it."""
        return self.class_name

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Entry:
    """One image as a reader lists it, before classes are indexed and splits assigned."""

    image_id: str
    image_path: str
    class_name: str
    split: str | None = None  # given by the dataset, or None (assigned by a seeded split)
    truth_path: str | None = None
    truth_format: str = "trimap"
    box: tuple[int, int, int, int] | None = None
    head_box: tuple[int, int, int, int] | None = None
    species: str | None = None
    class_names: tuple[str, ...] = ()  # every class in the image, class_name first; () = one class
    class_boxes: tuple[tuple[int, int, int, int] | None, ...] = ()  # a box per class_names entry


@dataclass
class DatasetIndex:
    """Every usable record of a root, its classes, and what was wrong with the rest."""

    root: str
    records: list[Record]
    quarantine: Quarantine = field(default_factory=Quarantine)
    missing_trimaps: list[str] = field(default_factory=list)
    missing_boxes: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    format: str = "oxford-pets"
    skipped: list[str] = field(default_factory=list)  # files a reader passed over (not images)
    task: str = "binary"
    background: bool = True  # whether a pixel may belong to none of its image's classes (data.background)

    def split(self, *names: str) -> list[Record]:
        """Records of the named splits ('trainval' means train and val)."""
        wanted = {s for name in names for s in (("train", "val") if name == "trainval" else (name,))}
        unknown = wanted - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split {sorted(unknown)}; known: trainval, {', '.join(SPLITS)}")
        return [record for record in self.records if record.split in wanted]

    @property
    def pixel_classes(self) -> tuple[str, ...] | None:
        """The classes a mask's pixels may take besides background when images carry several
        classes each (value k + 1 is ``classes[k]``); None when each image is one foreground
        against background (the binary study: there the classes name the image, not a pixel)."""
        return tuple(self.classes) if self.task != "binary" else None

    @property
    def has_truth(self) -> bool:
        """Whether any record carries ground truth (scores need it; nothing else does)."""
        return any(record.trimap_path for record in self.records)

    def fingerprint(self) -> str:
        """Hash of the classes and every record's id, split, label, files and their versions:
        changes when the index changes and when any image or truth file is rewritten (a new
        size, a regenerated set). Paths count relative to the root, so the same files named
        from another directory (a relative root, or the absolute one a sweep hands its
        workers) are the same dataset."""
        digest = hashlib.sha256("|".join(self.classes).encode())
        if self.task != "binary":  # binary indexes hash as they always did
            digest.update(f"task={self.task}".encode())
        if not self.background:  # so do indexes with a background
            digest.update(b"background=no")
        for record in sorted(self.records, key=lambda r: r.image_id):
            files = [os.path.relpath(p, self.root) if p else "-" for p in (record.image_path, record.trimap_path)]
            digest.update(f"{record.image_id}|{record.split}|{record.label}|{files[0]}|{files[1]}|"
                          f"{record.version}|{record.box}\n".encode())
            if record.labels:
                digest.update(f"labels={record.labels}|{record.class_boxes}|{record.truth_format}\n".encode())
        return digest.hexdigest()[:16]


def assign_val(trainval: list[tuple[str, int]], fraction: float, seed: int) -> set[str]:
    """A seeded, per-class (stratified) ``fraction`` of (id, label) pairs to hold out."""
    by_label: dict[int, list[str]] = defaultdict(list)
    for image_id, label in trainval:
        by_label[label].append(image_id)
    labels = sorted(by_label)
    # Largest-remainder allocation: each class gets floor(fraction * n) and the leftover goes to
    # the classes with the largest remainders, so tiny sets still get round(fraction * total).
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


def limit_per_split(records: list[Record], limit: int | None) -> list[Record]:
    """At most ``limit`` records per split, spread over classes (round-robin by class)."""
    if limit is None:
        return records
    kept = []
    for split in SPLITS:
        in_split = [r for r in records if r.split == split]
        rank: dict[str, int] = defaultdict(int)
        keyed = []
        for record in sorted(in_split, key=lambda r: r.image_id):
            keyed.append((rank[record.class_name], record.label, record.image_id, record))
            rank[record.class_name] += 1
        kept.extend(item[-1] for item in sorted(keyed)[:limit])
    return kept


def assign_splits(entries: list[Entry], labels: dict[str, int], val_fraction: float,
                  test_fraction: float, seed: int) -> dict[str, str]:
    """{image_id: split}: given splits kept; the rest split by class with a seed: first
    ``test_fraction`` of them to test (when the dataset gives no test split), then
    ``val_fraction`` of what is left to val."""
    given = {e.image_id: e.split for e in entries if e.split}
    open_ = [(e.image_id, labels[e.class_name]) for e in entries if not e.split]
    splits = dict(given)
    test = set()
    if test_fraction > 0 and "test" not in given.values():
        test = assign_val(open_, test_fraction, seed + 7)
    rest = [(image_id, label) for image_id, label in open_ if image_id not in test]
    val = assign_val(rest, val_fraction, seed)
    for image_id, _ in open_:
        splits[image_id] = "test" if image_id in test else ("val" if image_id in val else "train")
    return splits


def build_index(root: str, entries: list[Entry], classes: list[str], quarantine: Quarantine, *,
                val_fraction: float, test_fraction: float, split_seed: int, limit: int | None,
                format: str, task: str = "binary") -> DatasetIndex:
    """Records from a reader's entries: class indices, versions, splits, the per-split limit.
    Splits are stratified by each image's first class."""
    if task not in TASKS:
        raise ValueError(f"task {task!r}; known: {', '.join(TASKS)}")
    labels = {name: index for index, name in enumerate(classes)}
    splits = assign_splits(entries, labels, val_fraction, test_fraction, split_seed)
    records = [Record(
        image_id=e.image_id, image_path=e.image_path, trimap_path=e.truth_path,
        label=labels[e.class_name], class_name=e.class_name, species=e.species,
        split=splits[e.image_id], head_box=e.head_box, box=e.box, truth_format=e.truth_format,
        labels=tuple(labels[name] for name in e.class_names or (e.class_name,)) if task == "semantic" else (),
        class_boxes=(tuple(e.class_boxes) or (e.box,)) if task == "semantic" else (),
        version=f"{file_version(e.image_path)}/{file_version(e.truth_path)}") for e in entries]
    index = DatasetIndex(root=str(root), records=limit_per_split(records, limit),
                         quarantine=quarantine, classes=list(classes), format=format, task=task)
    return index
