"""A mask set checks its bytes: what is wrong with a stored file, and how to mend it.

The manifest keeps a digest of every file (``files``), made where the file was written, and
every read checks the bytes it got against it. A file a failed copy or sync truncated, or one
deleted, is a ``MaskSetError`` naming the file, the set and the command that remakes just the
damaged images (``wsss pseudo`` checks every file it would reuse: ``check_files``). A file
whose digest is not known (written by a run killed before its manifest) must at least decode.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from wsss.masks.files import decode_stored, file_digest, file_image_id, filesystem, image_files, join_path, stored_files
from wsss.masks.manifest import Manifest

LISTED_PROBLEMS = 10  # damaged files an error names one by one; the rest are counted


FETCH_THREADS = 8  # concurrent reads when checking a set: object stores answer each read slowly


class MaskSetError(FileNotFoundError):
    """A mask set that is not there as the study needs it (missing, incomplete, made from other
    data, size, parameters or weights, by an older wsss, or with damaged files); the message
    names what and how to regenerate."""


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
        return fs.cat_file(join_path(path, relative))
    except Exception as error:  # noqa: BLE001 - reported as that file's problem, beside the others
        return error


def check_files(uri: str, kind: str, image_ids: Iterable[str], digests: dict[str, str]) -> FileCheck:
    """Read every file of ``image_ids`` once and check it: against ``digests`` (the manifest's
    ``files``) where it has one, else by decoding it. An image with no file listed and none
    stored is not in the set (quarantined, or still to make): not a problem of the files."""
    fs, path = filesystem(uri)
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


def mend_advice(uri: str, manifest: Manifest) -> str:
    """How to remake a set's damaged files. A reviewed set (``wsss.masks.reviewed``) is reused
    whole by an import of the same file, so its folder has to go first."""
    if manifest.name == "reviewed":
        source = manifest.params.get("source", "FILE")
        return f"delete {uri} and import the reviewed file again with `wsss import --config C --from {source}`"
    return (f"mend it with `wsss pseudo --config C --labeler {manifest.labeler_id}` "
            f"(it remakes just the damaged images)")


def damaged_files_error(uri: str, manifest: Manifest, problems: dict[str, str]) -> MaskSetError:
    """A MaskSetError naming the set, each damaged or missing file (the first LISTED_PROBLEMS,
    then how many more) and the command that mends them."""
    listed = [f"  {join_path(uri, relative)}: {why}" for relative, why in sorted(problems.items())[:LISTED_PROBLEMS]]
    if len(problems) > LISTED_PROBLEMS:
        listed.append(f"  and {len(problems) - LISTED_PROBLEMS} more")
    head = (f"mask set {manifest.labeler_id!r} at {uri}: {len(problems)} damaged or missing "
            f"file{'' if len(problems) == 1 else 's'} (as a failed copy or sync leaves them)")
    return MaskSetError("\n".join([head, *listed, mend_advice(uri, manifest)]))
