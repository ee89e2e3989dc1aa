"""The mask store: one folder per mask set, one file per image, a manifest; atomic, resumable.

Layout (a local folder or any fsspec URI such as ``s3://bucket/masks``)::

    <store>/<labeler id>-<fingerprint>/
        manifest.json           labeler, params, fingerprint, dataset index hash, counts,
                                quarantine, timings; rewritten at the end of every run
        masks/<image_id>.png    uint8 {0 background, 1 foreground, 255 ignore}; by-products
                                (box, prompts) ride in the PNG's "wsss" text chunk as JSON
        heatmaps/<image_id>.npy float16 in [0, 1], for heatmap labelers (CAM family); with
                                several classes per image a K x H x W map per class, and
                                heatmaps/<image_id>.json naming the K classes

Why one file per image rather than parquet shards: a killed run loses at most the images in
flight, a rerun finds finished ids with one listing, training reads masks by id, and every
file is written whole (temporary name, then rename) so no reader ever sees half a mask.

Heatmap sets keep the heatmap, not a mask: the threshold is applied when masks are read, so
a threshold sweep never recomputes a CAM (``open_mask_set(..., threshold=t)``).

A set knows what it was made from: its folder's fingerprint hashes the labeler's own
fingerprint (name, params, weights), the dataset's fingerprint (every file's identity) and the
image size, and the manifest records each. Readers ask for the set of an exact identity, so a
changed dataset, size or labeler never reads another's masks.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsss import storage
from wsss.identity import stable_hash
from wsss.labelers.base import ThresholdParams, apply_threshold, class_map

MANIFEST = "manifest.json"
PNG_TEXT_KEY = "wsss"


def _filesystem(uri: str):
    """(filesystem, path) with fresh listings: s3fs caches them per instance, and other
    processes (pipeline tasks on other nodes) write into the same folders."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    fs.invalidate_cache()
    return fs, path


def _join(*parts: str) -> str:
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


@dataclass
class MaskSetWriter:
    """Writes one mask set's files; every write is whole or absent."""

    uri: str  # the mask set's folder

    def put(self, relative: str, data: bytes) -> None:
        """Write ``data`` at ``relative`` whole or not at all (``storage.write_bytes``)."""
        storage.write_bytes(storage.join(self.uri, relative), data)

    def write_mask(self, image_id: str, mask: np.ndarray, extras: dict[str, Any] | None = None) -> None:
        self.put(f"masks/{image_id}.png", encode_mask_png(mask, extras))

    def write_heatmap(self, image_id: str, heatmap: np.ndarray, extras: dict[str, Any] | None = None) -> None:
        self.put(f"heatmaps/{image_id}.npy", encode_heatmap(heatmap))
        if extras:
            self.put(f"heatmaps/{image_id}.json", json.dumps(extras, sort_keys=True).encode())

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.put(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())


def set_folder_name(labeler_id: str, fingerprint: str) -> str:
    return f"{labeler_id}-{fingerprint}"


def present_ids(uri: str, kind: str) -> set[str]:
    """Ids with a finished file of ``kind`` ("masks" or "heatmaps") in a mask set folder."""
    fs, path = _filesystem(uri)
    folder = _join(path, kind)
    suffix = ".png" if kind == "masks" else ".npy"
    if not fs.exists(folder):
        return set()
    names = (os.path.basename(p) for p in fs.ls(folder, detail=False))
    return {name[: -len(suffix)] for name in names
            if name.endswith(suffix) and not name.startswith(".") and ".tmp-" not in name}


def read_manifest(uri: str) -> dict[str, Any] | None:
    fs, path = _filesystem(uri)
    target = _join(path, MANIFEST)
    if not fs.exists(target):
        return None
    return json.loads(fs.cat_file(target))


@dataclass
class MaskSet:
    """Read access to a finished (or partial) mask set; heatmap sets threshold on read."""

    uri: str
    manifest: dict[str, Any]
    threshold: float | None = None
    band: tuple[float, float] | None = None
    _fs: Any = field(default=None, repr=False)
    _path: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self._fs, self._path = _filesystem(self.uri)
        params = self.manifest.get("params", {})
        if self.kind != "heatmaps" or (self.threshold is None and self.band is None):
            # masks are stored cut already: a read-time threshold would change nothing
            self.threshold = params.get("threshold")
            self.band = tuple(params["band"]) if params.get("band") else None

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "masks")

    def ids(self) -> set[str]:
        return present_ids(self.uri, self.kind)

    def read_heatmap(self, image_id: str) -> np.ndarray:
        data = self._fs.cat_file(_join(self._path, f"heatmaps/{image_id}.npy"))
        return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)

    def read_heatmap_classes(self, image_id: str) -> list[int]:
        """The class indices of a several-class heatmap's maps, in order."""
        data = self._fs.cat_file(_join(self._path, f"heatmaps/{image_id}.json"))
        return list(json.loads(data)["labels"])

    def read_with_extras(self, image_id: str) -> tuple[np.ndarray, dict[str, Any]]:
        if self.kind == "heatmaps":
            params = ThresholdParams(threshold=self.threshold if self.threshold is not None else 0.5,
                                     band=self.band)
            heatmap = self.read_heatmap(image_id)
            if heatmap.ndim == 3:  # a map per class the image carries: a class-indexed mask
                return class_map(heatmap, self.read_heatmap_classes(image_id), params), {}
            return apply_threshold(heatmap, params), {}
        return decode_mask_png(self._fs.cat_file(_join(self._path, f"masks/{image_id}.png")))

    def read(self, image_id: str) -> np.ndarray:
        """H x W uint8 mask {0, 1, 255} of one image; for a several-class set (``data.task:
        semantic``) a class map: 0 background, k + 1 for class index k, 255 ignore."""
        return self.read_with_extras(image_id)[0]


def list_mask_sets(store: str) -> list[dict[str, Any]]:
    """Manifests of every mask set in a store (with ``uri`` added), newest first."""
    fs, path = _filesystem(store)
    if not fs.exists(path):
        return []
    manifests = []
    for folder in fs.ls(path, detail=False):
        uri = _join(store, os.path.basename(folder.rstrip("/")))
        manifest = read_manifest(uri)
        if manifest is not None:
            manifests.append({**manifest, "uri": uri})
    return sorted(manifests, key=lambda m: m.get("updated", 0), reverse=True)


class MaskSetError(FileNotFoundError):
    """A mask set that is not there as the study needs it (missing, incomplete, or made from
    other data, size, parameters or weights); the message names both and how to regenerate."""


IDENTITY_FIELDS = {"dataset_index": "dataset", "image_size": "image size",
                   "labeler_fingerprint": "labeler parameters and weights"}


def set_fingerprint(identity: dict[str, Any]) -> str:
    """A mask set's id from what it is made from: the labeler (name, params, weights), the
    dataset's fingerprint and the image size. Any change gives a new set, never a stale one."""
    return stable_hash(identity)


def identity_differences(manifest: dict[str, Any], identity: dict[str, Any]) -> str:
    changed = [f"{label} {manifest.get(key)!s:.16} (this study: {identity[key]!s:.16})"
               for key, label in IDENTITY_FIELDS.items() if manifest.get(key) != identity.get(key)]
    return "; ".join(changed) or "same identity"


def open_mask_set(store: str, set_key: str, identity: dict[str, Any], *,
                  threshold: float | None = None, band: tuple[float, float] | None = None) -> MaskSet:
    """The complete mask set of labeler id ``set_key`` made from exactly ``identity`` (see
    ``set_fingerprint``); MaskSetError naming what differs and how to regenerate otherwise."""
    uri = _join(store, set_folder_name(set_key, set_fingerprint(identity)))
    manifest = read_manifest(uri)
    regenerate = f"generate it with `wsss pseudo --config C --labeler {set_key}`"
    if manifest is None:
        others = [m for m in list_mask_sets(store) if m.get("labeler_id") == set_key]
        found = "".join(f"\n  {m['uri']}: made from another {identity_differences(m, identity)}" for m in others)
        raise MaskSetError(f"no mask set {set_key!r} in {store} made from this study's dataset "
                           f"{identity['dataset_index']} at {identity['image_size']} px"
                           f"{' (present: none)' if not others else ':'}{found}\n{regenerate}")
    if not manifest.get("complete"):
        raise MaskSetError(f"mask set {set_key!r} at {uri} is incomplete ({manifest.get('images_present')} "
                           f"of {manifest.get('images_expected')} images); {regenerate} to finish it")
    return MaskSet(uri, manifest, threshold=threshold, band=band)
