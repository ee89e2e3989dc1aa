"""What stands for a thing: short hashes of configs, files and data, in one place.

Every cache key and fingerprint in wsss is built from these, so that the key changes whenever
what it stands for changes (a config field, a file's bytes, a dataset file's size or time).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from wsss.storage import fetch


def stable_hash(payload: Any, length: int = 12) -> str:
    """Short sha256 of a JSON-serialisable payload (sorted keys; other objects as ``str``)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_hash(path: str | None, length: int = 12) -> str:
    """Short sha256 of a file's bytes ('none' for no file); an s3:// file is fetched once per node."""
    if path is None:
        return "none"
    digest = hashlib.sha256()
    with open(fetch(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def file_version(path: str | os.PathLike | None) -> str:
    """``<size>-<mtime ns>`` of a local file ('none' without a path, 'missing' when absent):
    changes whenever the file is rewritten, without reading it (dataset files are many)."""
    if path is None:
        return "none"
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}-{stat.st_mtime_ns}"
