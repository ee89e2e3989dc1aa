"""A folder of PNG class maps: ``<image_id>.png`` indexed with PASCAL VOC's colours, and
``classes.json`` saying what each value means.

Values are the one label of the project: 0 background, k + 1 class k, 255 ignore. The writer
puts them in an indexed (``P``) PNG so viewers show each class in its VOC colour; the reader
takes an indexed or grey (``L``) PNG, as a reviewer's tool may save either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from wsss import storage
from wsss.formats import EntryError

MAX_CLASSES = 254  # values 1..254 are classes; 255 is ignore
MEANINGS = {"0": "background", "255": "ignore: the labeler is unsure (not scored, not trained on)"}
LEGEND = "classes.json"


# -- writer --------------------------------------------------------------------------------------

def voc_palette() -> list[int]:
    """PASCAL VOC's colour map (0 black, 255 the VOC "void" cream): viewers show class values
    as distinct colours the way segmentation people are used to."""
    palette = []
    for value in range(256):
        red = green = blue = 0
        for bit in range(8):
            red |= ((value >> (3 * bit)) & 1) << (7 - bit)
            green |= ((value >> (3 * bit + 1)) & 1) << (7 - bit)
            blue |= ((value >> (3 * bit + 2)) & 1) << (7 - bit)
        palette += [red, green, blue]
    return palette


def check_classes(classes: list[str]) -> None:
    """Refuse a class list an indexed PNG cannot hold."""
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"an indexed PNG holds at most {MAX_CLASSES} classes; this dataset has {len(classes)}")


def write_class_map(path: str, class_map: np.ndarray, palette: list[int] | None = None) -> str:
    """One class map as an indexed PNG at ``path`` (written whole); returns the path."""
    from PIL import Image

    height, width = class_map.shape
    indexed = Image.frombytes("P", (width, height), np.ascontiguousarray(class_map, np.uint8).tobytes())
    indexed.putpalette(palette or voc_palette())
    with storage.writing(path) as temporary:
        indexed.save(temporary, format="PNG")
    return str(path)


def write_legend(folder: str, classes: list[str], labeler_id: str | None) -> str:
    """``classes.json`` in ``folder``: what each value means and which labeler made the masks."""
    values = {"0": MEANINGS["0"], **{str(i + 1): name for i, name in enumerate(classes)}, "255": MEANINGS["255"]}
    legend = {"labeler_id": labeler_id, "values": values,
              "foreground": "the class index + 1 of each region (the image's class, or each of "
                            "its classes with several per image)"}
    return storage.write_text(storage.join(folder, LEGEND), json.dumps(legend, indent=2))


# -- reader --------------------------------------------------------------------------------------

def mask_files(folder: str | os.PathLike) -> list[str]:
    """The PNG file names in ``folder``, sorted; other files (``classes.json``...) are not masks."""
    return sorted(name for name in os.listdir(folder) if name.lower().endswith(".png"))


def read_class_map(path: str | os.PathLike) -> np.ndarray:
    """A one-channel (L or P) PNG's values, as they are."""
    from PIL import Image

    try:
        with Image.open(Path(path)) as image:
            if image.mode not in ("L", "P"):
                raise EntryError(f"mode {image.mode}: expected a one-channel (L or P) PNG of class values")
            return np.asarray(image, np.uint8)
    except OSError as error:
        raise EntryError(f"cannot decode: {error}") from None
