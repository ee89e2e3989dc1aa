"""A folder of class folders: ``ROOT/<class name>/**/<image>``, one image-level class per image.

Images are found recursively with any of ``IMAGE_EXTENSIONS`` (case-insensitive); hidden files
and folders and macOS ``._*`` sidecars are passed over; other files are listed as skipped (so
``wsss data check`` can say what was not read). Image ids are the path below ROOT without the
extension, ``/`` written as ``__`` (file-name safe and unique); two files that would share an
id (``a.jpg`` and ``a.png``) are quarantined but the first. There are no masks and no splits:
splits are drawn by class with a seed (``wsss.data.records.assign_splits``).
"""

from __future__ import annotations

import os
from pathlib import Path

from wsss.data.quarantine import Quarantine
from wsss.data.records import DatasetMissingError, Entry

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DatasetFormatError(ValueError):
    """A dataset that cannot be read as its format says; the message names the file and row."""


def image_id_of(relative: Path) -> str:
    """A file-name-safe id from a path below the root: ``cats/a/b.jpg`` -> ``cats__a__b``."""
    return "__".join(relative.with_suffix("").parts)


def is_junk(path: Path) -> bool:
    """Hidden files and folders, and macOS ``._*`` resource-fork sidecars."""
    return any(part.startswith(".") for part in path.parts)


def walk_images(folder: Path, root: Path, skipped: list[str]) -> list[Path]:
    """Image files below ``folder`` (sorted), relative paths of other files added to ``skipped``."""
    found = []
    for current, directories, files in os.walk(folder):
        directories[:] = sorted(d for d in directories if not d.startswith("."))
        for name in sorted(files):
            path = Path(current) / name
            if is_junk(path.relative_to(root)):
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(path)
            else:
                skipped.append(str(path.relative_to(root)))
    return found


def read_imagefolder(root: str | os.PathLike, classes: list[str] | None = None
                     ) -> tuple[list[Entry], list[str], Quarantine, list[str]]:
    """(entries, classes, quarantine, skipped files) of a class-folder root."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetMissingError(f"no image folder at {root}: expected {root}/<class name>/<images>")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetFormatError(f"{root} holds no class folders: expected {root}/<class name>/<images>")
    names = [folder.name for folder in folders]
    if classes:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetFormatError(f"{root}: class folders {unknown} are not in data.classes {classes}")
    entries, quarantine, skipped, seen = [], Quarantine(), [], {}
    for folder in folders:
        images = walk_images(folder, root, skipped)
        if not images:
            raise DatasetFormatError(f"class folder {folder} holds no images (looked for "
                                     f"{', '.join(IMAGE_EXTENSIONS)}, any case); remove it or add images")
        for path in images:
            image_id = image_id_of(path.relative_to(root))
            if image_id in seen:
                quarantine.add(image_id, f"{path.relative_to(root)}: same id as {seen[image_id]}")
                continue
            seen[image_id] = path.relative_to(root)
            entries.append(Entry(image_id=image_id, image_path=str(path), class_name=folder.name))
    return entries, list(classes or names), quarantine, skipped
