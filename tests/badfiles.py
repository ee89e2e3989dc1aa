"""Writers for the odd and broken image files the real dataset holds (test fixtures)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 24, 16


def _rgb() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def _save(image: Image.Image, path: Path, fmt: str, **kwargs) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    path.write_bytes(buffer.getvalue())


def write_odd_but_valid(path: Path, kind: str) -> None:
    """A decodable file named .jpg whose content is of ``kind``."""
    if kind == "png_rgba":  # like Abyssinian_5
        image = _rgb().convert("RGBA")
        image.putalpha(128)
        _save(image, path, "PNG")
    elif kind == "gif":
        _save(_rgb().convert("P"), path, "GIF")
    elif kind == "palette_png":
        _save(_rgb().convert("P", palette=Image.Palette.ADAPTIVE), path, "PNG")
    elif kind == "grayscale":
        _save(_rgb().convert("L"), path, "JPEG")
    elif kind == "cmyk":
        _save(_rgb().convert("CMYK"), path, "JPEG")
    elif kind == "png16":
        values = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 170)
        _save(Image.frombytes("I;16", (W, H), values.astype("<u2").tobytes()), path, "PNG")
    elif kind == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 clockwise to display
        _save(_rgb(), path, "JPEG", exif=exif.tobytes())
    else:
        raise ValueError(kind)


ODD_KINDS = ("png_rgba", "gif", "palette_png", "grayscale", "cmyk", "png16", "exif_rotated")
BAD_KINDS = {"truncated": "truncated", "zero_byte": "empty file", "garbage": "not an image"}


def write_broken(path: Path, kind: str) -> None:
    """An undecodable file of ``kind`` (see BAD_KINDS for the expected reason)."""
    if kind == "truncated":
        buffer = io.BytesIO()
        _rgb().resize((200, 150)).save(buffer, format="JPEG", quality=95)
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not an image at all" * 10)
    else:
        raise ValueError(kind)
