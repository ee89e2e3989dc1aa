"""One entry point for every dataset format: ``index(root, format=...)`` -> ``DatasetIndex``.

Formats (``data.format``): ``oxford-pets`` (the study's layout, ``wsss.data.pets``),
``imagefolder`` (class folders), ``csv`` (a manifest), ``coco`` (an instances JSON) and ``voc``
(a PASCAL VOC segmentation tree, CVAT's export too; its labels are read from its masks). Every
reader lists files, image-level classes, given splits and boxes, and ground truth where the
dataset has it; decoding problems surface later, in a quarantine under the error budget.
"""

from __future__ import annotations

import os
from dataclasses import replace

from wsss.data import pets
from wsss.data.coco import read_coco
from wsss.data.csvfile import read_csv_manifest
from wsss.data.imagefolder import DatasetFormatError, read_imagefolder
from wsss.data.records import TASKS, DatasetIndex, build_index
from wsss.data.voc import read_voc

FORMATS = ("oxford-pets", "imagefolder", "csv", "coco", "voc")
READERS = {"imagefolder": lambda root, manifest, classes, task: read_imagefolder(root, classes),
           "csv": read_csv_manifest, "coco": read_coco,
           "voc": lambda root, manifest, classes, task: read_voc(root, classes, task)}


def index(root: str | os.PathLike, *, format: str = "oxford-pets", manifest: str | None = None,
          classes: list[str] | None = None, val_fraction: float = 0.2, test_fraction: float = 0.2,
          split_seed: int = 0, limit: int | None = None,
          download_if_missing: bool = False, task: str = "binary") -> DatasetIndex:
    """Records of a dataset root in ``format`` (no image is decoded here); see the module doc.

    ``test_fraction`` applies where a dataset gives no test split (Oxford-IIIT Pet gives one).
    ``task="semantic"`` keeps every class of an image (csv ``labels``, every COCO category)
    and reads class-indexed ground truth."""
    if format == "oxford-pets":
        result = pets.index(root, val_fraction=val_fraction, split_seed=split_seed, limit=limit,
                            download_if_missing=download_if_missing)
        return with_task(result, task)
    if format not in READERS:
        raise DatasetFormatError(f"unknown dataset format {format!r}; known: {', '.join(FORMATS)}")
    entries, names, quarantine, no_truth = READERS[format](root, manifest, classes, task)
    if format == "voc" and any(entry.split == "val" for entry in entries):
        val_fraction = 0.0  # VOC's val.txt is the val split; train.txt gives test only (read_voc)
    result = build_index(str(root), entries, names, quarantine, val_fraction=val_fraction,
                         test_fraction=test_fraction, split_seed=split_seed, limit=limit, format=format,
                         task=task)
    if format == "imagefolder":
        result.skipped = no_truth  # the reader's fourth list: files passed over by extension
    else:
        result.missing_trimaps = no_truth
    return result


def with_task(dataset: DatasetIndex, task: str) -> DatasetIndex:
    """A one-class-per-image index (Oxford-IIIT Pet) for ``task``: semantic gives each record
    its one class as its label set, so the binary study is the one-class case."""
    if task == "binary":
        return dataset
    if task not in TASKS:
        raise ValueError(f"task {task!r}; known: {', '.join(TASKS)}")
    dataset.records = [replace(r, labels=(r.label,), class_boxes=(r.box,)) for r in dataset.records]
    dataset.task = task
    return dataset
