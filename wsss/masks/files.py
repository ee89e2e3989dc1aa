"""A mask set's files as they lie in the store: paths, encodings, listings and the manifest.

Layout (a local folder or any fsspec URI such as ``s3://bucket/masks``)::

    <store>/<labeler id>-<fingerprint>/
        manifest.json           labeler, params, fingerprint, dataset index hash, counts,
                                quarantine, timings, ``store_format`` and ``files`` (each
                                stored file's digest); rewritten at the end of every run
        masks/<image_id>.png    uint8 class map {0 background, k class, 255 ignore}; by-products
                                (box, prompts) ride in the PNG's "wsss" text chunk as JSON
        heatmaps/<image_id>.npy float16 in [0, 1], for heatmap labelers (CAM family); with
                                several classes per image a K x H x W map per class, and
                                heatmaps/<image_id>.json naming the K classes

Why one file per image rather than parquet shards: a killed run loses at most the images in
flight, a rerun finds finished ids with one listing, training reads masks by id, and every
file is written whole (temporary name, then rename) so no reader ever sees half a mask.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import numpy as np

MANIFEST = "manifest.json"


PNG_TEXT_KEY = "wsss"


def filesystem(uri: str):
    """(filesystem, path) with fresh listings: s3fs caches them per instance, and other
    processes (pipeline tasks on other nodes) write into the same folders."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return fs, path


def join_path(*parts: str) -> str:
    return "/".join(part.rstrip("/") for part in parts if part)


def encode_mask_png(mask: np.ndarray, extras: dict[str, Any] | None = None) -> bytes:
    """PNG bytes of an H x W uint8 mask; ``extras`` as sorted JSON in a text chunk."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if extras:
        info.add_text(PNG_TEXT_KEY, json.dumps(extras, sort_keys=True, separators=(",", ":")))
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), mode="L").save(
        buffer, format="PNG", pnginfo=info, compress_level=6)
    return buffer.getvalue()


def decode_mask_png(data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """(mask, extras) from ``encode_mask_png``'s bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        extras = json.loads(image.text.get(PNG_TEXT_KEY, "{}")) if hasattr(image, "text") else {}
        return np.asarray(image, dtype=np.uint8).copy(), extras


def encode_heatmap(heatmap: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(heatmap, dtype=np.float16), allow_pickle=False)
    return buffer.getvalue()


def file_digest(data: bytes) -> str:
    """What the manifest keeps of a stored file's bytes: blake2b, fast, and 16 bytes is plenty
    to tell a damaged file from a sound one."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def image_files(kind: str, image_id: str) -> tuple[str, ...]:
    """The relative paths one image may have in a set of ``kind``, the mask or heatmap first."""
    if kind == "heatmaps":
        return f"heatmaps/{image_id}.npy", f"heatmaps/{image_id}.json"
    return (f"masks/{image_id}.png",)


def file_image_id(relative: str) -> str:
    """The image id of a stored file's relative path (``masks/<id>.png`` -> ``<id>``)."""
    return relative.split("/", 1)[1].rsplit(".", 1)[0]


def stored_files(uri: str, kind: str) -> set[str]:
    """Relative paths of the finished files of ``kind`` in a mask set folder (one listing)."""
    fs, path = filesystem(uri)
    folder = join_path(path, kind)
    if not fs.exists(folder):
        return set()
    names = (os.path.basename(p) for p in fs.ls(folder, detail=False))
    return {f"{kind}/{name}" for name in names if not name.startswith(".") and ".tmp-" not in name}


def present_ids(uri: str, kind: str) -> set[str]:
    """Ids with a finished file of ``kind`` ("masks" or "heatmaps") in a mask set folder."""
    suffix = ".png" if kind == "masks" else ".npy"
    return {file_image_id(name) for name in stored_files(uri, kind) if name.endswith(suffix)}


def read_manifest(uri: str) -> dict[str, Any] | None:
    fs, path = filesystem(uri)
    target = join_path(path, MANIFEST)
    if not fs.exists(target):
        return None
    return json.loads(fs.cat_file(target))


def decode_stored(relative: str, data: bytes) -> Any:
    """A stored file's content: (mask, extras) of a PNG, a heatmap's array, a class list."""
    if relative.endswith(".png"):
        return decode_mask_png(data)
    if relative.endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    return json.loads(data)
