"""The mask store: one folder per mask set, one file per image, a manifest; atomic, resumable.

Layout (a local folder or any fsspec URI such as ``s3://bucket/masks``)::

    <store>/<labeler id>-<fingerprint>/
        manifest.json           labeler, params, fingerprint, dataset index hash, counts,
                                quarantine, timings, ``store_format`` and ``files`` (each
                                stored file's digest); rewritten at the end of every run
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

A set knows its bytes too: the manifest keeps a digest of every file (``files``), made where
the file was written, and every read checks the bytes it got against it. A file a failed copy
or sync truncated, or one deleted, is a ``MaskSetError`` naming the file, the set and the
command that remakes just the damaged images (``wsss pseudo`` checks every file it would
reuse). A file whose digest is not known (written by a run killed before its manifest) must
at least decode. Manifests of an older store (no ``store_format``) are refused on open.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsss import storage
from wsss.identity import stable_hash
from wsss.labelers.base import ThresholdParams, apply_threshold, class_map

MANIFEST = "manifest.json"
PNG_TEXT_KEY = "wsss"
STORE_FORMAT = 2  # 2: the manifest holds every file's digest (``files``); 1 (unmarked) did not
LISTED_PROBLEMS = 10  # damaged files an error names one by one; the rest are counted
FETCH_THREADS = 8  # concurrent reads when checking a set: object stores answer each read slowly


class MaskSetError(FileNotFoundError):
    """A mask set that is not there as the study needs it (missing, incomplete, made from other
    data, size, parameters or weights, by an older wsss, or with damaged files); the message
    names what and how to regenerate."""


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


def file_digest(data: bytes) -> str:
    """What the manifest keeps of a stored file's bytes: blake2b, fast, and 16 bytes is plenty
    to tell a damaged file from a sound one."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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

    def write_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write ``manifest`` with ``store_format`` and the digests of the files this writer
        wrote added to its ``files`` (in place, so the caller's MaskSet checks reads too)."""
        manifest["files"] = {**manifest.get("files", {}), **self.files}
        manifest["store_format"] = STORE_FORMAT
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        storage.write_bytes(storage.join(self.uri, MANIFEST), text.encode())  # not a file of ``files``
        return manifest


def set_folder_name(labeler_id: str, fingerprint: str) -> str:
    return f"{labeler_id}-{fingerprint}"


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
    fs, path = _filesystem(uri)
    folder = _join(path, kind)
    if not fs.exists(folder):
        return set()
    names = (os.path.basename(p) for p in fs.ls(folder, detail=False))
    return {f"{kind}/{name}" for name in names if not name.startswith(".") and ".tmp-" not in name}


def present_ids(uri: str, kind: str) -> set[str]:
    """Ids with a finished file of ``kind`` ("masks" or "heatmaps") in a mask set folder."""
    suffix = ".png" if kind == "masks" else ".npy"
    return {file_image_id(name) for name in stored_files(uri, kind) if name.endswith(suffix)}


def read_manifest(uri: str) -> dict[str, Any] | None:
    fs, path = _filesystem(uri)
    target = _join(path, MANIFEST)
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


def file_problem(data: bytes | Exception, digest: str | None) -> str | None:
    """What is wrong with one stored file as read (its bytes, or why they could not be read),
    judged by the manifest's digest; None when nothing is."""
    if isinstance(data, FileNotFoundError):
        return "missing"
    if isinstance(data, Exception):
        return f"unreadable ({type(data).__name__}: {data})"
    if digest is not None and file_digest(data) != digest:
        return "damaged (its bytes differ from the digest the manifest keeps)"
    return None


def decode_problem(relative: str, data: bytes) -> str | None:
    """Why a file's bytes do not decode (None: they do): the check of a file with no digest."""
    try:
        decode_stored(relative, data)
    except Exception as error:  # noqa: BLE001 - the bytes are untrusted: any failure is damage
        return f"damaged ({type(error).__name__}: {error})"
    return None


@dataclass
class FileCheck:
    """What reading a set's files found: each sound file's digest, what is wrong with the rest."""

    kind: str
    digests: dict[str, str] = field(default_factory=dict)  # relative path -> digest
    problems: dict[str, str] = field(default_factory=dict)  # relative path -> what is wrong

    def damaged_ids(self) -> set[str]:
        return {file_image_id(relative) for relative in self.problems}

    def sound_ids(self) -> set[str]:
        """Images whose mask (or heatmap) is there and whose every file checked out."""
        found = {file_image_id(relative) for relative in self.digests}
        return {i for i in found if image_files(self.kind, i)[0] in self.digests} - self.damaged_ids()


def _fetch(fs: Any, path: str, relative: str) -> bytes | Exception:
    try:
        return fs.cat_file(_join(path, relative))
    except Exception as error:  # noqa: BLE001 - reported as that file's problem, beside the others
        return error


def check_files(uri: str, kind: str, image_ids: Iterable[str], digests: dict[str, str]) -> FileCheck:
    """Read every file of ``image_ids`` once and check it: against ``digests`` (the manifest's
    ``files``) where it has one, else by decoding it. An image with no file listed and none
    stored is not in the set (quarantined, or still to make): not a problem of the files."""
    fs, path = _filesystem(uri)
    stored = stored_files(uri, kind)
    wanted = [relative for image_id in image_ids for relative in image_files(kind, image_id)
              if relative in digests or relative in stored]
    check, chunk = FileCheck(kind), 32 * FETCH_THREADS  # a chunk at a time: never the set's bytes at once
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        for start in range(0, len(wanted), chunk):
            names = wanted[start:start + chunk]
            for relative, data in zip(names, pool.map(lambda name: _fetch(fs, path, name), names)):
                digest = digests.get(relative)
                problem = file_problem(data, digest) or (decode_problem(relative, data) if digest is None else None)
                if problem:
                    check.problems[relative] = problem
                else:
                    check.digests[relative] = digest or file_digest(data)
    return check


def mend_advice(uri: str, manifest: dict[str, Any]) -> str:
    """How to remake a set's damaged files. A reviewed set (``wsss.masks.reviewed``) is reused
    whole by an import of the same file, so its folder has to go first."""
    if manifest.get("name") == "reviewed":
        source = manifest.get("params", {}).get("source", "FILE")
        return f"delete {uri} and import the reviewed file again with `wsss import --config C --from {source}`"
    return (f"mend it with `wsss pseudo --config C --labeler {manifest.get('labeler_id')}` "
            f"(it remakes just the damaged images)")


def damaged_files_error(uri: str, manifest: dict[str, Any], problems: dict[str, str]) -> MaskSetError:
    """A MaskSetError naming the set, each damaged or missing file (the first LISTED_PROBLEMS,
    then how many more) and the command that mends them."""
    listed = [f"  {_join(uri, relative)}: {why}" for relative, why in sorted(problems.items())[:LISTED_PROBLEMS]]
    if len(problems) > LISTED_PROBLEMS:
        listed.append(f"  and {len(problems) - LISTED_PROBLEMS} more")
    head = (f"mask set {manifest.get('labeler_id')!r} at {uri}: {len(problems)} damaged or missing "
            f"file{'' if len(problems) == 1 else 's'} (as a failed copy or sync leaves them)")
    return MaskSetError("\n".join([head, *listed, mend_advice(uri, manifest)]))


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

    @property
    def files(self) -> dict[str, str]:
        """The manifest's digest of each stored file (none in an older store's manifest)."""
        return self.manifest.get("files") or {}

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
            data: bytes | Exception = self._fs.cat_file(_join(self._path, relative))
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
                                     band=self.band)
            heatmap = self.read_heatmap(image_id)
            if heatmap.ndim == 3:  # a map per class the image carries: a class-indexed mask
                return class_map(heatmap, self.read_heatmap_classes(image_id), params), {}
            return apply_threshold(heatmap, params), {}
        return self._read(f"masks/{image_id}.png")

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
    if manifest.get("store_format") != STORE_FORMAT:
        raise outdated_error(set_key, uri, manifest.get("store_format"))
    if not manifest.get("complete"):
        raise MaskSetError(f"mask set {set_key!r} at {uri} is incomplete ({manifest.get('images_present')} "
                           f"of {manifest.get('images_expected')} images); {regenerate} to finish it")
    return MaskSet(uri, manifest, threshold=threshold, band=band)


def outdated_error(set_key: str, uri: str, found: Any) -> MaskSetError:
    """A set whose manifest is of another store format: an older one has no digests to check
    its files against, so it is regenerated rather than trusted."""
    by = (f"an older wsss (store format {found or 1}, without file digests)" if not found or found < STORE_FORMAT
          else f"a newer wsss (store format {found}; this one reads {STORE_FORMAT})")
    return MaskSetError(f"mask set {set_key!r} at {uri} was written by {by}; regenerate it with "
                        f"`wsss pseudo --config C --labeler {set_key}`")
