"""Where results live: a local folder or an object-store URI (``s3://bucket/prefix``), one API.

Every storage field of a study (``pipeline.store``, ``classifier.storage``, ``train.storage``,
``sweep.storage``) takes either. Ray Train and Tune read and write ``s3://`` storage paths
themselves (through pyarrow); the files wsss writes on its own (classifier.pt, outcome.json,
exported models, figures, per-image scores, the mask store) go through fsspec here. Local
writes are atomic (temporary name, then rename); an object-store PUT is whole by nature.

Credentials and endpoints come from the usual AWS environment (instance profile,
``AWS_ACCESS_KEY_ID``..., ``AWS_ENDPOINT_URL`` for an S3-compatible store such as MinIO):
boto (fsspec's s3fs) and pyarrow both read it, so one setting serves Train and wsss alike.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "WSSS_CACHE_DIR"  # where remote files are fetched to (default ~/.cache/wsss)


def is_remote(location: str | os.PathLike) -> bool:
    """True for a URI other than ``file://`` (``s3://``, ``gs://``, ``memory://``...)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def _local(location: str | os.PathLike) -> Path:
    return Path(str(location).removeprefix("file://"))


def absolute(location: str | os.PathLike) -> str:
    """A URI unchanged; a local path made absolute (workers run in other directories)."""
    text = str(location)
    if is_remote(text):
        return text.rstrip("/")
    return str(_local(text).resolve())


def join(location: str | os.PathLike, *parts: str) -> str:
    """``location/part/...`` for paths and URIs alike."""
    text = str(location)
    if not is_remote(text):
        return str(Path(text, *parts))
    return "/".join([text.rstrip("/"), *(part.strip("/") for part in parts if part)])


def filesystem(location: str | os.PathLike):
    """(fsspec filesystem, path within it) of a location."""
    import fsspec

    return fsspec.core.url_to_fs(str(location))


def _probe(location: str | os.PathLike, local: str, remote: str) -> bool:
    """``Path.<local>()`` for a path, ``fs.<remote>(path)`` after dropping fsspec's cache."""
    if not is_remote(location):
        return getattr(_local(location), local)()
    fs, path = filesystem(location)
    fs.invalidate_cache(path)
    return getattr(fs, remote)(path)


def exists(location: str | os.PathLike) -> bool:
    """Whether a file (or folder) is there; never a stale cached listing."""
    return _probe(location, "exists", "exists")


def is_file(location: str | os.PathLike) -> bool:
    """Whether a file is there (not a folder); never a stale cached listing."""
    return _probe(location, "is_file", "isfile")


def read_bytes(location: str | os.PathLike) -> bytes:
    """The whole content of a file at a path or URI."""
    if not is_remote(location):
        return _local(location).read_bytes()
    fs, path = filesystem(location)
    return fs.cat_file(path)


def read_text(location: str | os.PathLike) -> str:
    """``read_bytes`` decoded as UTF-8."""
    return read_bytes(location).decode()


def temporary_beside(target: Path) -> Path:
    """A hidden, unique name beside ``target`` that keeps its suffix (``.x.tmp-1a2b.png``), so
    writers that pick a format by suffix (matplotlib, PIL, numpy) write the right one, and
    listings that look for ``*.png`` skip it by its leading dot and ``.tmp-``."""
    return target.with_name(f".{target.stem}.tmp-{uuid.uuid4().hex[:8]}{target.suffix}")


@contextmanager
def writing(location: str | os.PathLike) -> Iterator[Path]:
    """A local temporary path to write ``location``'s content to; published when the block ends
    without an error (local: renamed over it; a URI: uploaded whole), removed otherwise.

    Every file wsss writes goes through here, so no reader ever sees half a file.
    """
    remote = is_remote(location)
    target = Path(tempfile.mkdtemp(prefix="wsss-write-")) / Path(str(location)).name if remote \
        else _local(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(target)
    try:
        yield temporary
        if remote:
            fs, path = filesystem(location)
            fs.put_file(str(temporary), path)
        else:
            os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
        if remote:
            shutil.rmtree(target.parent, ignore_errors=True)


def _publish(target: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``target``, then rename it over ``target``."""
    with writing(target) as temporary:
        write(temporary)


def write_bytes(location: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` whole at ``location`` (local: temporary file, then rename); returns it."""
    if is_remote(location):
        fs, path = filesystem(location)
        fs.pipe_file(path, data)  # one PUT: whole or absent
        return str(location)
    _publish(_local(location), lambda temporary: temporary.write_bytes(data))
    return str(_local(location))


def write_text(location: str | os.PathLike, text: str) -> str:
    """``write_bytes`` of UTF-8 text; returns the location."""
    return write_bytes(location, text.encode())


def upload(local_file: str | os.PathLike, location: str | os.PathLike) -> str:
    """Copy a local file to ``location`` (a no-op when it is already there); returns it."""
    source = Path(local_file)
    if not is_remote(location):
        target = _local(location)
        if source.resolve() != target.resolve():
            _publish(target, lambda temporary: shutil.copyfile(source, temporary))
        return str(location)
    fs, path = filesystem(location)
    fs.put_file(str(source), path)
    return str(location)


def cache_dir(kind: str) -> Path:
    """A local folder for ``kind`` (``decoded``, ``fetched``...) under WSSS_CACHE_DIR."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "wsss"
    folder = Path(root) / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fetch(location: str | os.PathLike) -> Path:
    """A local file with the content of ``location``: itself when local, else a cached copy.

    The cache key includes the object's ETag (or size and mtime), so a rewritten object is
    fetched again while an unchanged one is downloaded once per node.
    """
    if not is_remote(location):
        return _local(location)
    fs, path = filesystem(location)
    fs.invalidate_cache(path)
    info = fs.info(path)
    version = str(info.get("ETag") or info.get("etag") or (info.get("size"), info.get("mtime")))
    key = hashlib.sha256(f"{location}|{version}".encode()).hexdigest()[:20]
    target = cache_dir("fetched") / key / os.path.basename(path.rstrip("/"))
    if not target.is_file():
        _publish(target, lambda temporary: fs.get_file(path, str(temporary)))
    return target


@contextmanager
def staged(location: str | os.PathLike) -> Iterator[Path]:
    """A local folder to write a run's outputs into, published to ``location`` on exit.

    Local locations are written in place; for a URI the files are written to a temporary
    folder and uploaded one by one when the block ends without an error.
    """
    if not is_remote(location):
        folder = _local(location)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    scratch = Path(tempfile.mkdtemp(prefix="wsss-stage-"))
    try:
        yield scratch
        for file in sorted(p for p in scratch.rglob("*") if p.is_file()):
            upload(file, join(location, *file.relative_to(scratch).parts))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def train_checkpoint_uri(storage: str | os.PathLike, path: str) -> str:
    """A Train checkpoint's path as a location: pyarrow names S3 objects without the scheme."""
    storage = str(storage)
    if is_remote(storage) and "://" not in path:
        return f"{storage.split('://', 1)[0]}://{path.lstrip('/')}"
    return path


def decode_cache_dir(store: str | os.PathLike) -> Path:
    """Where decoded arrays are cached: beside a local mask store, else in the local cache
    (decoding reads the local dataset, so its cache belongs to the node, not the bucket)."""
    if is_remote(store):
        return cache_dir("decoded")
    return _local(store).parent / "decoded"
