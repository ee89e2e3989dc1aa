"""Decode once: records -> fixed-size arrays, cached on disk and reused by every stage and trial.

Images are resized to ``size`` x ``size`` (area interpolation when shrinking, bilinear when
growing); trimaps with nearest neighbour only. Files that fail to decode are quarantined,
never dropped silently, and the caller decides whether the error budget holds.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.decode import DecodeError, check_trimap, decode_image, record_truth
from wsss.data.pets import Record
from wsss.data.quarantine import Quarantine
from wsss.storage import writing

NO_TRIMAP = 0  # trimap value for images without one: matches none of 1, 2, 3 -> ignored


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


def working_box(record: Record, size: int) -> np.ndarray:
    """A record's given box on the ``size`` x ``size`` working image (-1s when it has none);
    the image's own size comes from its file header, nothing is decoded."""
    from PIL import Image

    if record.box is None:
        return np.full(4, -1, np.int32)
    with Image.open(record.image_path) as image:
        width, height = image.size
    return scale_box(record.box, (height, width), size)


@dataclass
class SplitArrays:
    """Decoded, resized images of some records, in record order (quarantined ones left out)."""

    images: np.ndarray  # N x S x S x 3 uint8
    trimaps: np.ndarray  # N x S x S uint8 (0 where the record has no trimap)
    labels: np.ndarray  # N int64
    image_ids: list[str]
    quarantine: Quarantine = field(default_factory=Quarantine)

    def __len__(self) -> int:
        return len(self.image_ids)


def _decode_one(record: Record, size: int) -> tuple[np.ndarray, np.ndarray] | str:
    try:
        image = decode_image(record.image_path)
        if record.trimap_path is None:
            trimap = np.full((size, size), NO_TRIMAP, np.uint8)
        else:
            trimap = record_truth(record)
            check_trimap(trimap, image.shape, record.trimap_path)  # as `wsss data check` does
            trimap = resize_mask(trimap, size)
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
    return digest.hexdigest()[:16]


def decode_records(records: list[Record], size: int, workers: int | None = None,
                   progress: Any = None) -> SplitArrays:
    """Decode and resize every record with a thread pool (cv2 and PIL release the GIL);
    ``progress`` (a ``wsss.console.Stage``) advances per image."""
    workers = workers or min(8, os.cpu_count() or 1)
    images, trimaps, labels, ids, quarantine = [], [], [], [], Quarantine()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda r: _decode_one(r, size), records)
        for done, (record, result) in enumerate(zip(records, results), start=1):
            if isinstance(result, str):
                quarantine.add(record.image_id, result)
            else:
                images.append(result[0])
                trimaps.append(result[1])
                labels.append(record.label)
                ids.append(record.image_id)
            if progress:
                progress.advance(1)
    empty = (0, size, size)
    return SplitArrays(
        images=np.stack(images) if images else np.zeros(empty + (3,), np.uint8),
        trimaps=np.stack(trimaps) if trimaps else np.zeros(empty, np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        image_ids=ids,
        quarantine=quarantine,
    )


def load_arrays(records: list[Record], size: int, cache_dir: str | os.PathLike | None = None,
                progress: Any = None) -> SplitArrays:
    """``decode_records``, cached as one .npz per (records, size) under ``cache_dir``."""
    if cache_dir is None:
        return decode_records(records, size, progress=progress)
    path = Path(cache_dir) / f"decoded-{cache_key(records, size)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            quarantine = Quarantine(
                [{"image_id": i, "reason": r} for i, r in zip(data["q_ids"], data["q_reasons"])]
            )
            if progress:
                progress.advance(len(records), "cached")
            return SplitArrays(data["images"], data["trimaps"], data["labels"],
                               [str(i) for i in data["image_ids"]], quarantine)
    arrays = decode_records(records, size, progress=progress)
    with writing(path) as temporary:
        np.savez(
            temporary, images=arrays.images, trimaps=arrays.trimaps, labels=arrays.labels,
            image_ids=np.asarray(arrays.image_ids, dtype=str),
            q_ids=np.asarray([e["image_id"] for e in arrays.quarantine.entries], dtype=str),
            q_reasons=np.asarray([e["reason"] for e in arrays.quarantine.entries], dtype=str),
        )
    return arrays
