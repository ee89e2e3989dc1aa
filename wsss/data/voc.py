"""The PASCAL VOC segmentation layout as a dataset; CVAT's "Segmentation mask 1.1" export is one.

Layout::

    ROOT/JPEGImages/<id>.jpg
    ROOT/SegmentationClass/<id>.png            # 0 background, k the k-th class, 255 void
    ROOT/ImageSets/Segmentation/<split>.txt    # image ids, one a line (optional)
    ROOT/labelmap.txt                          # CVAT: name:r,g,b:: a line, background first (optional)

Classes: ``data.classes`` as given, else the names of ``labelmap.txt`` after its first
(background) line, else VOC's 20 (``VOC_CLASSES``); mask value k + 1 is class k. A palette (P)
or grey PNG's pixel value is its class value; an RGB one (CVAT writes them) is read colour by
colour through ``labelmap.txt``, or VOC's colour map without one.

Splits: ``train.txt`` and ``val.txt`` give theirs, ``test.txt`` gives test; without a
``test.txt``, test is drawn from ``train.txt``'s ids (``data.test_fraction``) and val stays
VOC's. ``trainval.txt`` alone (or another list, such as CVAT's ``default.txt``) is split as
the other readers split: test, then val, per class with ``data.split_seed``. Without an
``ImageSets/Segmentation`` folder every image in ``JPEGImages`` is listed and split so.

Image-level labels are read from the masks, as VOC defines its own: an image's classes are the
values 1..C its mask holds, largest area first. So listing the dataset reads every mask, and an
image without one is refused (no labels); the masks' pixels stay ground truth for scoring only.
``task: binary`` gives an image its largest class and a trimap truth (any class foreground,
void as border: ignored by default, like Oxford's border band); ``task: semantic`` gives every
class present and the class-indexed mask as truth. A missing image, and a mask that is missing,
unreadable, of another size than its image or holds values outside 0..C and 255 (or colours the
labelmap does not name) are quarantined with the list file's line and the file.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsss.data.csvfile import image_size
from wsss.data.imagefolder import DatasetFormatError, image_id_of, walk_images
from wsss.data.quarantine import Quarantine
from wsss.data.records import DatasetMissingError, Entry
from wsss.formats import png
from wsss.identity import file_version, stable_hash
from wsss.storage import cache_dir, write_text, writing

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
IMAGES, MASKS, LABELMAP = "JPEGImages", "SegmentationClass", "labelmap.txt"
SETS = Path("ImageSets") / "Segmentation"
VOID, VOID_COLOUR = 255, (224, 224, 192)
WORKERS = 8  # masks are read while listing: PNG decoding releases the GIL


@dataclass(frozen=True)
class Listed:
    """An image id as a list names it (its path below JPEGImages, no extension) and its split."""

    key: str
    split: str | None
    where: str = ""  # "ImageSets/Segmentation/train.txt line 4: ", or "" without lists


def missing_message(root: Path, what: str) -> str:
    return (f"{what}. A PASCAL VOC tree holds {root}/JPEGImages/<id>.jpg, {root}/SegmentationClass/"
            f"<id>.png and optionally {root}/ImageSets/Segmentation/train.txt and val.txt: fetch "
            f"VOCtrainval_11-May-2012.tar (http://host.robots.ox.ac.uk/pascal/VOC/voc2012/) and set "
            f"data.root to its VOCdevkit/VOC2012 folder, or unzip a CVAT 'Segmentation mask 1.1' export "
            f"at {root}; or write a synthetic one with `wsss data synth --layout voc --root {root}`")


def read_labelmap(path: Path) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) per line of a CVAT ``labelmap.txt`` (``name:r,g,b:parts:actions``),
    background first; DatasetFormatError naming the line when one cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetFormatError(f"{path}: unreadable ({error})") from None
    labels = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        try:
            colour = tuple(int(part) for part in rest.split(":")[0].split(","))
        except ValueError:
            colour = ()
        if not name.strip() or len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
            raise DatasetFormatError(f"{path} line {number}: {line.strip()!r} is not name:r,g,b::")
        labels.append((name.strip(), colour))
    if not labels:
        raise DatasetFormatError(f"{path} names no label (expected background:0,0,0:: first)")
    return labels


def _pack(colour) -> int:
    return (int(colour[0]) << 16) | (int(colour[1]) << 8) | int(colour[2])


def colour_values(labelmap: list | None, classes: list[str]) -> dict[int, int]:
    """{packed colour: class value} for RGB masks: the labelmap's colours by name (its first line
    background), else VOC's colour map; VOC's void colour is 255 unless a class took it."""
    if labelmap is None:
        palette = png.voc_palette()
        pairs = [(palette[3 * v:3 * v + 3], v) for v in range(len(classes) + 1)]
    else:
        pairs = [(labelmap[0][1], 0)] + [(colour, classes.index(name) + 1) for name, colour in labelmap[1:]
                                         if name in classes]
    table = {_pack(VOID_COLOUR): VOID}
    table.update({_pack(colour): value for colour, value in pairs})
    return table


def read_mask(path: Path, colours: dict[int, int]) -> tuple[np.ndarray, bool]:
    """(HxW uint8 class values, whether the file holds them as they are: a palette or grey PNG);
    ValueError naming the file when it is unreadable or holds a colour no class has."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image.convert("RGB") if mode == "RGBA" else image)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        text = str(error) or type(error).__name__
        raise ValueError(f"mask {path} is unreadable ("
                         f"{'truncated file' if 'truncated' in text.lower() else text})") from None
    if mode in ("P", "L"):
        return array.astype(np.uint8, copy=False), True
    if mode not in ("RGB", "RGBA"):
        raise ValueError(f"mask {path} has mode {mode}; expected a palette (P), grey (L) or RGB PNG")
    packed = (array[..., 0].astype(np.int32) << 16) | (array[..., 1].astype(np.int32) << 8) | array[..., 2]
    keys, inverse = np.unique(packed.ravel(), return_inverse=True)
    unknown = [key for key in keys.tolist() if key not in colours]
    if unknown:
        shown = [((key >> 16) & 255, (key >> 8) & 255, key & 255) for key in unknown[:5]]
        raise ValueError(f"mask {path} has colours {shown} that name no class ({LABELMAP}, or VOC's "
                         f"colour map without one)")
    values = np.array([colours[key] for key in keys.tolist()], np.uint8)
    return values[inverse].reshape(packed.shape), False


def _images(root: Path, quarantine: Quarantine) -> dict[str, Path]:
    """{id as lists name it: image file} below JPEGImages; a second file of an id is quarantined."""
    folder, found = root / IMAGES, {}
    # a .jpg first, so it is the one kept when a.jpg and a.png share an id
    for path in sorted(walk_images(folder, folder, []), key=lambda p: (p.with_suffix(""), p.suffix != ".jpg")):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in found:
            quarantine.add(image_id_of(Path(key)), f"{path}: same id as {found[key]}")
        else:
            found[key] = path
    return found


def _split_of(name: str, lists: set[str]) -> str | None:
    """The split a list gives its ids (None: drawn). train and val give theirs when both are
    there, but train.txt without a test.txt is where the test split is drawn from."""
    if name == "test" or (name == "val" and "train" in lists):
        return name
    return "train" if name == "train" and {"val", "test"} <= lists else None


def _listed(root: Path, images: dict[str, Path], quarantine: Quarantine) -> list[Listed]:
    """Every id the lists name, in order, with its split; an id listed twice is quarantined."""
    folder = root / SETS
    if not folder.is_dir():
        return [Listed(key, None) for key in sorted(images)]
    files = {path.stem: path for path in sorted(folder.glob("*.txt")) if not path.name.startswith(".")}
    if not files:
        raise DatasetFormatError(f"{folder} holds no list (train.txt, val.txt, ...); remove the folder "
                                 f"to use every image in {root / IMAGES}")
    # trainval.txt is train.txt and val.txt together: read it only when it stands for them
    skip = {"trainval"} if {"train", "val"} <= set(files) else {"train", "val"} if "trainval" in files else set()
    found: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for name, path in files.items():
        if name in skip:
            continue
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetFormatError(f"{path}: unreadable ({error})") from None
        for number, line in enumerate(lines, start=1):
            if line.split():
                found[line.split()[0]].append((_split_of(name, set(files)), f"{path.relative_to(root)} line {number}"))
    listed = []
    for key, places in found.items():
        if len(places) > 1:
            quarantine.add(image_id_of(Path(key)), f"listed more than once: {', '.join(w for _, w in places)}")
        else:
            listed.append(Listed(key, places[0][0], f"{places[0][1]}: "))
    return listed


def _write_png(values: np.ndarray, path: Path) -> Path:
    from PIL import Image

    if not path.is_file():
        with writing(path) as temporary:
            Image.fromarray(values, mode="L").save(temporary)
    return path


def _entry(root: Path, item: Listed, image: Path | None, classes: list[str], colours: dict[int, int],
           truth_dir: Path, task: str) -> Entry | str:
    """One listed image as an Entry, or the reason (naming the file) it cannot be used."""
    if image is None:
        return f"{item.where}image file missing: no {item.key}.jpg (or another image) in {root / IMAGES}"
    mask = root / MASKS / f"{item.key}.png"
    if not mask.is_file():
        return f"{item.where}no labels: mask {mask} is missing, and a VOC tree's labels are read from its masks"
    try:
        values, as_is = read_mask(mask, colours)
        width, height = image_size(image)
    except ValueError as error:
        return f"{item.where}{error}"
    except OSError as error:
        return f"{item.where}{image} is not an image ({error})"
    if values.shape != (height, width):
        return (f"{item.where}mask {mask} is {values.shape[1]}x{values.shape[0]}, its image {image} "
                f"is {width}x{height}")
    counts = np.bincount(values.ravel(), minlength=256)
    extra = [v for v in np.flatnonzero(counts).tolist() if len(classes) < v != VOID]
    if extra:
        return (f"{item.where}mask {mask} has values {extra} outside 0 (background), 1..{len(classes)} "
                f"(the classes) and 255 (void)")
    present = sorted(np.flatnonzero(counts[1:len(classes) + 1]).tolist(), key=lambda k: (-counts[k + 1], k))
    if not present:
        return f"{item.where}no labels: mask {mask} holds no class, only background and void"
    image_id, names = image_id_of(Path(item.key)), tuple(classes[k] for k in present)
    cached = truth_dir / f"{image_id}-{stable_hash(file_version(mask), 8)}.png"
    if task == "semantic":
        truth = mask if as_is else _write_png(values, cached)
    else:  # one foreground: 1 any class, 2 background, 3 void
        truth = _write_png(np.where(values == 0, 2, np.where(values == VOID, 3, 1)).astype(np.uint8), cached)
    return Entry(image_id=image_id, image_path=str(image), class_name=names[0], split=item.split,
                 truth_path=str(truth), truth_format="classes" if task == "semantic" else "trimap",
                 class_names=names if task == "semantic" else ())


def read_voc(root: str | os.PathLike, classes: list[str] | None = None, task: str = "binary"
             ) -> tuple[list[Entry], list[str], Quarantine, list[str]]:
    """(entries, classes, quarantine, ids without ground truth: none, a mask is each one's
    label) of a VOC root; see the module doc."""
    root = Path(root)
    if not (root / IMAGES).is_dir():
        raise DatasetMissingError(missing_message(root, f"no PASCAL VOC tree at {root}: {root / IMAGES} "
                                                        f"is missing"))
    if not (root / MASKS).is_dir():
        raise DatasetMissingError(missing_message(root, f"{root / MASKS} is missing, and a VOC tree's image-"
                                                        f"level labels are read from its masks"))
    labelmap = read_labelmap(root / LABELMAP) if (root / LABELMAP).is_file() else None
    names = list(classes or ([name for name, _ in labelmap[1:]] if labelmap else VOC_CLASSES))
    png.check_classes(names)
    colours = colour_values(labelmap, names)
    quarantine = Quarantine()
    images = _images(root, quarantine)
    listed = _listed(root, images, quarantine)
    truth_dir = cache_dir("voc-truth") / stable_hash([str(root.resolve()), task, names, sorted(colours.items())], 16)
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda item: _entry(root, item, images.get(item.key), names, colours,
                                                     truth_dir, task), listed))
    entries = []
    for item, result in zip(listed, results):
        if isinstance(result, str):
            quarantine.add(image_id_of(Path(item.key)), result)
        else:
            entries.append(result)
    return entries, names, quarantine, []


# -- writer --------------------------------------------------------------------------------------

def labelmap_text(classes: list[str]) -> str:
    """A CVAT ``labelmap.txt`` naming background and ``classes`` in VOC's colours."""
    palette = png.voc_palette()
    rows = [f"{name}:{','.join(map(str, palette[3 * v:3 * v + 3]))}::"
            for v, name in enumerate(["background", *classes])]
    return "\n".join(["# label:color_rgb:parts:actions", *rows]) + "\n"


def write_annotations(root: str | os.PathLike, samples: Iterable[tuple[str, np.ndarray, str]],
                      classes: list[str]) -> dict[str, int]:
    """A VOC tree's masks, lists and labelmap at ``root`` from (image id, class map, split)
    samples: palette PNGs in VOC's colours, ``ImageSets/Segmentation/<split>.txt`` and a CVAT
    ``labelmap.txt`` naming ``classes`` (the images, ``JPEGImages/<id>.jpg``, are the caller's).
    Returns {split: images}."""
    root, sets = Path(root), defaultdict(list)
    for image_id, class_map, split in samples:
        png.write_class_map(str(root / MASKS / f"{image_id}.png"), class_map)
        sets[split].append(image_id)
    for split, ids in sets.items():
        write_text(root / SETS / f"{split}.txt", "".join(f"{image_id}\n" for image_id in ids))
    write_text(root / LABELMAP, labelmap_text(classes))
    return {split: len(ids) for split, ids in sets.items()}
