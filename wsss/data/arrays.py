"""Decode once: records -> fixed-size arrays, cached on disk and reused by every stage and trial.

Images are resized to ``size`` x ``size`` (area interpolation when shrinking, bilinear when
growing); trimaps with nearest neighbour only. Files that fail to decode are quarantined,
never dropped silently, and the caller decides whether the error budget holds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.decode import DecodeError, check_trimap, decode_image, record_class_truth, record_truth
from wsss.data.quarantine import Quarantine
from wsss.data.records import Record

NO_TRIMAP = 0  # trimap value for images without one: matches none of 1, 2, 3 -> ignored
NO_CLASS_TRUTH = 255  # class map value for images without ground truth: ignored


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (size, size):
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label mask to ``size`` (int: square; tuple: (H, W))."""
    import cv2

    height, width = (size, size) if isinstance(size, int) else size
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def scale_box(box, shape: tuple[int, ...], size: int) -> np.ndarray:
    """A box given in an image's own pixels, on the ``size`` x ``size`` working image (-1s stay)."""
    box = np.asarray(box, np.float64)
    if box[0] < 0:
        return np.full(4, -1, np.int32)
    height, width = shape[:2]
    factors = np.array([size / width, size / height, size / width, size / height])
    scaled = box * factors
    return np.array([np.floor(scaled[0]), np.floor(scaled[1]), np.ceil(scaled[2]), np.ceil(scaled[3])],
                    np.int32).clip(0, size)


def working_boxes(record: Record, size: int, width: int) -> np.ndarray:
    """A record's given box per entry (``entry_boxes``) on the ``size`` x ``size`` working image,
    ``width`` x 4, -1s where it gives none; the image's own size comes from its file header,
    nothing is decoded."""
    from PIL import Image

    boxes = np.full((width, 4), -1, np.int32)
    if not any(box is not None for box in record.entry_boxes):
        return boxes
    with Image.open(record.image_path) as image:
        width_px, height_px = image.size
    for k, box in enumerate(record.entry_boxes[:width]):
        if box is not None:
            boxes[k] = scale_box(box, (height_px, width_px), size)
    return boxes


def working_box(record: Record, size: int) -> np.ndarray:
    """A one-class record's given box on the working image (``working_boxes``' one entry)."""
    return working_boxes(record, size, 1)[0]


@dataclass
class SplitArrays:
    """Decoded, resized images of some records, in record order (quarantined ones left out)."""

    images: np.ndarray  # N x S x S x 3 uint8
    trimaps: np.ndarray  # N x S x S uint8 (0 where the record has no trimap)
    labels: np.ndarray  # N int64
    image_ids: list[str]
    quarantine: Quarantine = field(default_factory=Quarantine)
    folder: str | None = None  # the decode cache folder the arrays are mapped from, if any
    # semantic task only: each image's classes, and its class-indexed truth (255 ignore/none)
    label_sets: list[tuple[int, ...]] | None = None
    classmaps: np.ndarray | None = None  # N x S x S uint8

    def __len__(self) -> int:
        return len(self.image_ids)

    def multi_hot(self, num_classes: int) -> np.ndarray:
        """N x C float32, 1 where the image carries the class (its label set, else its label)."""
        sets = self.label_sets or [(int(label),) for label in self.labels]
        hot = np.zeros((len(sets), num_classes), np.float32)
        for row, present in enumerate(sets):
            hot[row, list(present)] = 1.0
        return hot


def _decode_one(record: Record, size: int) -> tuple[np.ndarray, ...] | str:
    """(image, trimap) at ``size``, plus the class map for a several-class record."""
    try:
        image = decode_image(record.image_path)
        if record.trimap_path is None:
            trimap = np.full((size, size), NO_TRIMAP, np.uint8)
        else:
            trimap = record_truth(record)
            check_trimap(trimap, image.shape, record.trimap_path)  # as `wsss data check` does
            trimap = resize_mask(trimap, size)
        if record.labels:
            classmap = (np.full((size, size), NO_CLASS_TRUTH, np.uint8) if record.trimap_path is None
                        else resize_mask(record_class_truth(record), size))
            return resize_image(image, size), trimap, classmap
    except DecodeError as error:
        return error.reason
    return resize_image(image, size), trimap


def cache_key(records: list[Record], size: int) -> str:
    """Stands for the decoded arrays: the size and every record's id, label, files and their
    versions, so a rewritten image or trimap (same path, new content) is decoded again."""
    digest = hashlib.sha256(f"size={size}\n".encode())
    for record in records:
        files = [os.path.abspath(p) if p else "-" for p in (record.image_path, record.trimap_path)]
        digest.update(f"{record.image_id}|{files[0]}|{files[1]}|{record.label}|{record.version}\n".encode())
        if record.labels:  # several classes: the set and the truth's format decide the arrays
            digest.update(f"{record.labels}|{record.truth_format}\n".encode())
    return digest.hexdigest()[:16]


DECODE_CHUNK = 256  # records decoded at once: the thread pool's queue, not the split, sets memory


def _decoded(records: list[Record], size: int, workers: int | None):
    """(record, (image, trimap) | reason) in record order, ``DECODE_CHUNK`` records in flight
    at a time (``pool.map`` over a whole split would queue every result)."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(records), DECODE_CHUNK):
            chunk = records[start:start + DECODE_CHUNK]
            yield from zip(chunk, pool.map(lambda r: _decode_one(r, size), chunk))


def decode_records(records: list[Record], size: int, workers: int | None = None,
                   progress: Any = None) -> SplitArrays:
    """Decode and resize every record with a thread pool (cv2 and PIL release the GIL), in
    memory; ``progress`` (a ``wsss.console.Stage``) advances per image. For a whole split use
    ``load_arrays`` with a cache folder: it writes to disk as it goes."""
    images, trimaps, classmaps, labels, ids, sets, quarantine = [], [], [], [], [], [], Quarantine()
    for record, result in _decoded(records, size, workers):
        if isinstance(result, str):
            quarantine.add(record.image_id, result)
        else:
            images.append(result[0])
            trimaps.append(result[1])
            classmaps.extend(result[2:])
            labels.append(record.label)
            ids.append(record.image_id)
            sets.append(record.labels)
        if progress:
            progress.advance(1)
    empty = (0, size, size)
    semantic = any(record.labels for record in records)
    return SplitArrays(
        images=np.stack(images) if images else np.zeros(empty + (3,), np.uint8),
        trimaps=np.stack(trimaps) if trimaps else np.zeros(empty, np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        image_ids=ids,
        quarantine=quarantine,
        label_sets=sets if semantic else None,
        classmaps=(np.stack(classmaps) if classmaps else np.zeros(empty, np.uint8)) if semantic else None,
    )


CACHE_META = "meta.json"  # written last: a cache folder without it is incomplete


def open_cached(folder: str | os.PathLike) -> SplitArrays:
    """A decode cache folder (``load_arrays``) as arrays: images and trimaps are read-only
    memory maps, so opening costs no memory and any process on the node can read rows."""
    folder = Path(folder)
    meta = json.loads((folder / CACHE_META).read_text())
    # plain ndarray views of the maps: Ray pickles an np.memmap in-band (a private copy of the
    # whole array in the sender, twice its size), while an ndarray's buffer goes out of band
    semantic = meta.get("label_sets") is not None
    return SplitArrays(np.asarray(np.load(folder / "images.npy", mmap_mode="r")),
                       np.asarray(np.load(folder / "trimaps.npy", mmap_mode="r")),
                       np.load(folder / "labels.npy"), meta["image_ids"],
                       Quarantine(meta["quarantine"]), folder=str(folder),
                       label_sets=[tuple(s) for s in meta["label_sets"]] if semantic else None,
                       classmaps=np.asarray(np.load(folder / "classmaps.npy", mmap_mode="r")) if semantic else None)


def _open_rows(path: Path, rows: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, *shape))


def decode_to_folder(records: list[Record], size: int, folder: Path, progress: Any = None) -> None:
    """Decode ``records`` into ``folder`` as .npy files written row by row (memory stays one
    chunk however large the split); quarantined records leave no row (the files are
    compacted, again in chunks, when any failed)."""
    folder.mkdir(parents=True, exist_ok=True)
    semantic = any(record.labels for record in records)
    images = _open_rows(folder / "images.npy", len(records), (size, size, 3))
    trimaps = _open_rows(folder / "trimaps.npy", len(records), (size, size))
    maps = {"images": images, "trimaps": trimaps}
    if semantic:
        maps["classmaps"] = _open_rows(folder / "classmaps.npy", len(records), (size, size))
    labels, ids, sets, quarantine = [], [], [], Quarantine()
    for record, result in _decoded(records, size, None):
        if isinstance(result, str):
            quarantine.add(record.image_id, result)
        else:
            for rows, value in zip(maps.values(), result):
                rows[len(ids)] = value
            labels.append(record.label)
            ids.append(record.image_id)
            sets.append(list(record.labels))
        if progress:
            progress.advance(1)
    for rows in maps.values():
        rows.flush()
    if len(ids) < len(records):
        for name, full in maps.items():
            kept = _open_rows(folder / f"{name}.kept.npy", len(ids), full.shape[1:])
            for start in range(0, len(ids), DECODE_CHUNK):
                stop = min(start + DECODE_CHUNK, len(ids))
                kept[start:stop] = full[start:stop]
            kept.flush()
            del kept
            os.replace(folder / f"{name}.kept.npy", folder / f"{name}.npy")
    del images, trimaps, maps
    np.save(folder / "labels.npy", np.asarray(labels, dtype=np.int64))
    (folder / CACHE_META).write_text(json.dumps({"size": size, "image_ids": ids, "quarantine": quarantine.entries,
                                                 **({"label_sets": sets} if semantic else {})}))


def _publish(partial: Path, folder: Path) -> None:
    """Rename a finished decode into place. Where the folder exists already, another process
    finished the same split first (ours is dropped) or a killed run left it without
    meta.json (it is replaced); a complete folder is never deleted."""
    try:
        os.replace(partial, folder)
    except OSError:
        if (folder / CACHE_META).is_file():
            shutil.rmtree(partial)
            return
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)


def load_arrays(records: list[Record], size: int, cache_dir: str | os.PathLike | None = None,
                progress: Any = None) -> SplitArrays:
    """``records`` decoded at ``size``; with ``cache_dir``, cached there as one folder per
    (records, size) (``cache_key``) and returned as memory maps (``open_cached``): the caller
    holds no decoded pixels, and workers on this node open the same folder by its path."""
    if cache_dir is None:
        return decode_records(records, size, progress=progress)
    folder = Path(cache_dir) / f"decoded-{cache_key(records, size)}"
    if not (folder / CACHE_META).is_file():
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            decode_to_folder(records, size, partial, progress)
            _publish(partial, folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    elif progress:
        progress.advance(len(records), "cached")
    return open_cached(folder)


@functools.lru_cache(maxsize=16)
def _opened(folder: str) -> SplitArrays:
    """``open_cached`` once per process: a worker building many blocks reads meta.json once."""
    return open_cached(folder)


def split_rows(source: SplitArrays | str) -> SplitArrays:
    """The arrays a ``SplitArrays.reference()`` stands for, opened in this process."""
    return _opened(source) if isinstance(source, str) else source


def reference(arrays: SplitArrays) -> SplitArrays | str:
    """What a task needs to read ``arrays``: its cache folder (a path, on this node) when it has
    one, else the arrays themselves (small in-memory sets: tests, quick checks)."""
    return arrays.folder or arrays


class RowsById(Mapping):
    """image id -> one field's row (``images`` or ``trimaps``) across several splits, opened
    lazily in whichever process reads it, one row at a time (no split's pixels held at once);
    pickled, it is the splits' folders only."""

    def __init__(self, splits: list[SplitArrays], field_name: str):
        self.sources = [reference(arrays) for arrays in splits]
        self.field_name = field_name
        self._rows: dict[str, tuple[int, int]] | None = None

    def _index(self) -> dict[str, tuple[int, int]]:
        if self._rows is None:
            self._rows = {image_id: (k, row) for k, source in enumerate(self.sources)
                          for row, image_id in enumerate(split_rows(source).image_ids)}
        return self._rows

    def __getitem__(self, image_id: str) -> np.ndarray:
        k, row = self._index()[image_id]
        return getattr(split_rows(self.sources[k]), self.field_name)[row]

    def __iter__(self):
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())

    def __getstate__(self) -> dict[str, Any]:
        return {"sources": self.sources, "field_name": self.field_name, "_rows": None}
