"""The mask store: one folder per mask set, one file per image, a manifest; atomic, resumable.

The files and their layout are ``wsss.masks.files``; the checks of their bytes
``wsss.masks.integrity``. This module writes and reads sets as a whole.

Heatmap sets keep the heatmap, not a mask: the threshold is applied when masks are read, so
a threshold sweep never recomputes a CAM (``open_mask_set(..., threshold=t)``).

A set knows what it was made from: its folder's fingerprint hashes the labeler's own
fingerprint (name, params, weights), the dataset's fingerprint (every file's identity) and the
image size, and the manifest records each. Readers ask for the set of an exact identity, so a
changed dataset, size or labeler never reads another's masks. Manifests of an older store (no
``store_format``) are refused on open. What a manifest holds is ``wsss.masks.manifest.Manifest``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsss import storage
from wsss.identity import stable_hash
from wsss.labelers.base import ThresholdParams, class_map
from wsss.masks.files import (
    MANIFEST,
    decode_stored,
    encode_heatmap,
    encode_mask_png,
    file_digest,
    filesystem,
    join_path,
    present_ids,
    read_manifest,
)
from wsss.masks.integrity import MaskSetError, check_files, damaged_files_error, file_problem
from wsss.masks.manifest import STORE_FORMAT, Manifest


@dataclass
class MaskSetWriter:
    """Writes one mask set's files; every write is whole or absent. It keeps the digest of each
    file it wrote (``files``), which its ``write_manifest`` records."""

    uri: str  # the mask set's folder
    files: dict[str, str] = field(default_factory=dict)  # relative path -> digest, written here

    def put(self, relative: str, data: bytes) -> str:
        """Write ``data`` at ``relative`` whole or not at all (``storage.write_bytes``); its digest."""
        storage.write_bytes(storage.join(self.uri, relative), data)
        self.files[relative] = file_digest(data)
        return self.files[relative]

    def write_mask(self, image_id: str, mask: np.ndarray, extras: dict[str, Any] | None = None) -> dict[str, str]:
        """Store one mask; {relative path: digest} of what was written."""
        relative = f"masks/{image_id}.png"
        return {relative: self.put(relative, encode_mask_png(mask, extras))}

    def write_heatmap(self, image_id: str, heatmap: np.ndarray,
                      extras: dict[str, Any] | None = None) -> dict[str, str]:
        """Store one heatmap (and its class list); {relative path: digest} of what was written.
        The class list goes first: a run killed between the two leaves no heatmap without it."""
        written = {}
        if extras:
            relative = f"heatmaps/{image_id}.json"
            written[relative] = self.put(relative, json.dumps(extras, sort_keys=True).encode())
        relative = f"heatmaps/{image_id}.npy"
        written[relative] = self.put(relative, encode_heatmap(heatmap))
        return written

    def write_manifest(self, manifest: Manifest | dict[str, Any]) -> Manifest:
        """Write ``manifest`` (a dict is validated into one) with ``store_format`` and the
        digests of the files this writer wrote added to its ``files``; returns the manifest as a
        reader will get it back."""
        record = manifest.to_dict() if isinstance(manifest, Manifest) else dict(manifest)
        record.update(files={**record.get("files", {}), **self.files}, store_format=STORE_FORMAT)
        # through JSON first, so what is validated is what is written (``default=str`` as ever)
        written = Manifest.model_validate(json.loads(json.dumps(record, default=str)))
        storage.write_bytes(storage.join(self.uri, MANIFEST), written.to_json().encode())  # not in ``files``
        return written


def set_folder_name(labeler_id: str, fingerprint: str) -> str:
    return f"{labeler_id}-{fingerprint}"


@dataclass
class MaskSet:
    """Read access to a finished (or partial) mask set; heatmap sets threshold on read."""

    uri: str
    manifest: Manifest  # a dict is validated into one
    threshold: float | None = None
    band: tuple[float, float] | None = None
    _fs: Any = field(default=None, repr=False)
    _path: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self._fs, self._path = filesystem(self.uri)
        try:
            self.manifest = Manifest.of(self.manifest)
        except ValueError as error:
            raise broken_manifest_error(self.uri, self.manifest, str(error)) from None
        params = self.manifest.params
        if self.kind != "heatmaps" or (self.threshold is None and self.band is None):
            # masks are stored cut already: a read-time threshold would change nothing
            self.threshold = params.get("threshold")
            self.band = tuple(params["band"]) if params.get("band") else None

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def ids(self) -> set[str]:
        return present_ids(self.uri, self.kind)

    @property
    def files(self) -> dict[str, str]:
        """The manifest's digest of each stored file (none in an older store's manifest)."""
        return self.manifest.files

    def verify(self, image_ids: Iterable[str]) -> None:
        """Read every file of ``image_ids`` once (``check_files``); MaskSetError listing each
        damaged or missing one. An image the set lacks altogether (quarantined) is no error."""
        problems = check_files(self.uri, self.kind, image_ids, self.files).problems
        if problems:
            raise damaged_files_error(self.uri, self.manifest, problems)

    def _read(self, relative: str) -> Any:
        """One stored file, checked against the manifest's digest, decoded; MaskSetError naming
        it when it is damaged, or missing though the manifest lists it. A file neither listed
        nor there is a FileNotFoundError: the set lacks that image (its labeler quarantined it)."""
        try:
            data: bytes | Exception = self._fs.cat_file(join_path(self._path, relative))
        except FileNotFoundError as missing:
            if relative not in self.files:
                raise
            data = missing
        problem = file_problem(data, self.files.get(relative))
        if problem is None:
            try:
                return decode_stored(relative, data)
            except Exception as error:  # noqa: BLE001 - the bytes are untrusted: any failure is damage
                problem = f"damaged ({type(error).__name__}: {error})"
        raise damaged_files_error(self.uri, self.manifest, {relative: problem})

    def read_heatmap(self, image_id: str) -> np.ndarray:
        return self._read(f"heatmaps/{image_id}.npy").astype(np.float32)

    def read_heatmap_classes(self, image_id: str) -> list[int]:
        """The class indices of a several-class heatmap's maps, in order."""
        return list(self._read(f"heatmaps/{image_id}.json")["labels"])

    def read_with_extras(self, image_id: str) -> tuple[np.ndarray, dict[str, Any]]:
        if self.kind == "heatmaps":
            params = ThresholdParams(threshold=self.threshold if self.threshold is not None else 0.5,
                                     band=self.band, background=self.manifest.params.get("background", True))
            heatmap = self.read_heatmap(image_id)
            if heatmap.ndim == 2:  # one class per image: the map alone, painting class 0 (value 1)
                return class_map(heatmap[None], [0], params), {}
            return class_map(heatmap, self.read_heatmap_classes(image_id), params), {}
        return self._read(f"masks/{image_id}.png")

    def read(self, image_id: str) -> np.ndarray:
        """H x W uint8 class map of one image: 0 background, k + 1 for class index k (1 for the
        one foreground of a one-class set), 255 ignore."""
        return self.read_with_extras(image_id)[0]


def load_manifest(uri: str) -> Manifest | None:
    """The manifest of the set folder ``uri`` (None where it has none); MaskSetError naming the
    file and how to remake the set where it is not a manifest (``Manifest.parse``)."""
    try:
        record = read_manifest(uri)
    except ValueError as error:  # not JSON (a UnicodeDecodeError is a ValueError too)
        raise broken_manifest_error(uri, None, f"not JSON: {error}") from None
    if record is None:
        return None
    try:
        return Manifest.parse(record)
    except ValueError as error:
        raise broken_manifest_error(uri, record, str(error)) from None


def broken_manifest_error(uri: str, record: Any, why: str) -> MaskSetError:
    """A manifest that does not read: its set is remade, the folder deleted first (``wsss
    pseudo`` reads every manifest it would reuse, so it stops at this one too)."""
    key = record.get("labeler_id") if isinstance(record, dict) else None
    key = key if isinstance(key, str) else os.path.basename(uri.rstrip("/")).rsplit("-", 1)[0]
    how = ("import the reviewed file again with `wsss import --config C --from FILE`" if key.startswith("reviewed-")
           else f"regenerate it with `wsss pseudo --config C --labeler {key}`")
    return MaskSetError(f"mask set {key!r}: its manifest {join_path(uri, MANIFEST)} cannot be read ({why}); "
                        f"delete {uri} and {how}")


def list_mask_sets(store: str) -> list[tuple[str, Manifest]]:
    """(uri, manifest) of every mask set in a store, newest first."""
    fs, path = filesystem(store)
    if not fs.exists(path):
        return []
    found = []
    for folder in fs.ls(path, detail=False):
        uri = join_path(store, os.path.basename(folder.rstrip("/")))
        manifest = load_manifest(uri)
        if manifest is not None:
            found.append((uri, manifest))
    return sorted(found, key=lambda pair: pair[1].updated or 0, reverse=True)


IDENTITY_FIELDS = {"dataset_index": "dataset", "image_size": "image size",
                   "labeler_fingerprint": "labeler parameters and weights"}


def set_fingerprint(identity: dict[str, Any]) -> str:
    """A mask set's id from what it is made from: the labeler (name, params, weights), the
    dataset's fingerprint and the image size. Any change gives a new set, never a stale one."""
    return stable_hash(identity)


def identity_differences(manifest: Manifest, identity: dict[str, Any]) -> str:
    changed = [f"{label} {getattr(manifest, key)!s:.16} (this study: {identity[key]!s:.16})"
               for key, label in IDENTITY_FIELDS.items() if getattr(manifest, key) != identity.get(key)]
    return "; ".join(changed) or "same identity"


def open_mask_set(store: str, set_key: str, identity: dict[str, Any], *,
                  threshold: float | None = None, band: tuple[float, float] | None = None) -> MaskSet:
    """The complete mask set of labeler id ``set_key`` made from exactly ``identity`` (see
    ``set_fingerprint``); MaskSetError naming what differs and how to regenerate otherwise."""
    uri = join_path(store, set_folder_name(set_key, set_fingerprint(identity)))
    manifest = load_manifest(uri)
    regenerate = f"generate it with `wsss pseudo --config C --labeler {set_key}`"
    if manifest is None:
        others = [(other, m) for other, m in list_mask_sets(store) if m.labeler_id == set_key]
        found = "".join(f"\n  {other}: made from another {identity_differences(m, identity)}" for other, m in others)
        raise MaskSetError(f"no mask set {set_key!r} in {store} made from this study's dataset "
                           f"{identity['dataset_index']} at {identity['image_size']} px"
                           f"{' (present: none)' if not others else ':'}{found}\n{regenerate}")
    if manifest.store_format != STORE_FORMAT:
        raise outdated_error(set_key, uri, manifest.store_format)
    if not manifest.complete:
        raise MaskSetError(f"mask set {set_key!r} at {uri} is incomplete ({manifest.images_present} "
                           f"of {manifest.images_expected} images); {regenerate} to finish it")
    return MaskSet(uri, manifest, threshold=threshold, band=band)


def outdated_error(set_key: str, uri: str, found: Any) -> MaskSetError:
    """A set whose manifest is of another store format: an older one has no digests to check
    its files against, so it is regenerated rather than trusted."""
    by = (f"an older wsss (store format {found or 1}, without file digests)" if not found or found < STORE_FORMAT
          else f"a newer wsss (store format {found}; this one reads {STORE_FORMAT})")
    return MaskSetError(f"mask set {set_key!r} at {uri} was written by {by}; regenerate it with "
                        f"`wsss pseudo --config C --labeler {set_key}`")
