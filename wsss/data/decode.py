"""Decode any image file into HxWx3 uint8 RGB, or say exactly why it cannot be.

The Oxford-IIIT Pet images are not all what their ``.jpg`` suffix promises: some are PNGs
with an alpha channel, GIFs, palette or grayscale images, CMYK JPEGs; others are truncated.
``decode_image`` turns every decodable one into the same array shape and raises
``DecodeError`` (with a reason fit for a quarantine list) for the rest.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class DecodeError(Exception):
    """A file that cannot be decoded into an image; ``reason`` is short and specific."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> HxWx3 uint8 RGB (16-bit scaled down, alpha composited on white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_bytes(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode an encoded image held in memory; see ``decode_image``."""
    if not data:
        raise DecodeError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # libjpeg's "corrupt data" warnings on valid files
            image = Image.open(io.BytesIO(data))
            image.seek(0)  # first frame of a GIF
            image.load()
            image = ImageOps.exif_transpose(image)
            array = _to_rgb(image)
    except UnidentifiedImageError:
        raise DecodeError(path, "not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        text = str(error) or type(error).__name__
        reason = "truncated file" if "truncated" in text.lower() else f"undecodable: {text}"
        raise DecodeError(path, reason) from None
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DecodeError(path, f"decoded to an unusable shape {array.shape}")
    return array


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 uint8 RGB from any file PIL reads, EXIF orientation applied; DecodeError if not."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise DecodeError(path, f"unreadable: {error.strerror or error}") from None
    return decode_bytes(data, path)


def read_truth(path: str | os.PathLike, truth_format: str = "trimap") -> np.ndarray:
    """Ground truth as a trimap (1 foreground, 2 background, 3 border): a trimap as it is; a
    binary mask (0 background, anything else foreground) converted; a class-indexed mask as
    any class against background (255, ignore, as border). For scoring only."""
    if truth_format == "trimap":
        return read_trimap(path)
    if truth_format not in ("binary", "classes"):
        raise ValueError(f"truth format {truth_format!r}; known: trimap, binary, classes")
    mask = read_trimap(path)  # the same robust read of a one-channel image
    trimap = np.where(mask > 0, 1, 2).astype(np.uint8)
    if truth_format == "classes":
        trimap[mask == 255] = 3
    return trimap


def record_truth(record) -> np.ndarray:
    """The ground truth of a record (``trimap_path`` in its ``truth_format``) as a trimap."""
    return read_truth(record.trimap_path, getattr(record, "truth_format", "trimap"))


def record_class_truth(record) -> np.ndarray:
    """The ground truth of a record as a class-indexed target: 0 background, k for class
    index k-1, 255 ignore. A one-class truth (trimap, binary) marks its foreground with the
    record's class and its border as ignore. For scoring only."""
    if getattr(record, "truth_format", "trimap") == "classes":
        return read_trimap(record.trimap_path)
    trimap = record_truth(record)
    target = np.full(trimap.shape, 255, np.uint8)
    target[trimap == 1] = record.label + 1
    target[trimap == 2] = 0
    return target


def read_trimap(path: str | os.PathLike) -> np.ndarray:
    """HxW uint8 trimap (1 pet, 2 background, 3 border); DecodeError when unusable."""
    try:
        with Image.open(path) as image:
            trimap = np.asarray(image.convert("L") if image.mode not in ("L", "P") else image)
    except FileNotFoundError:
        raise DecodeError(path, "trimap missing") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DecodeError(path, f"trimap undecodable: {error}") from None
    if trimap.ndim != 2:
        raise DecodeError(path, f"trimap has shape {trimap.shape}, expected HxW")
    return trimap.astype(np.uint8, copy=False)


VALID_TRIMAP_VALUES = {1, 2, 3}


def check_trimap(trimap: np.ndarray, image_shape: tuple[int, ...], path: str | os.PathLike) -> None:
    """DecodeError when a trimap does not fit its image (size) or holds values other than
    1 (pet), 2 (background), 3 (border); every reader applies the same check."""
    if trimap.shape != tuple(image_shape[:2]):
        raise DecodeError(path, f"trimap size {trimap.shape[::-1]} differs from image size "
                                f"{tuple(image_shape[1::-1])}")
    extra = set(np.unique(trimap).tolist()) - VALID_TRIMAP_VALUES
    if extra:
        raise DecodeError(path, f"trimap has values {sorted(extra)} outside 1 (pet), 2 (background), "
                                f"3 (border)")
