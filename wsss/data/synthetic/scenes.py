"""Multi-class scenes: one to three synthetic animals of different classes in one image.

``render_scene(seed, index)`` draws 1, 2 or 3 animals (about 40/35/25 %), each of a different
class of ``classes`` (drawn without replacement), each smaller than a single pet of
``render`` (4-30 % of the frame, log-uniform) and placed anywhere it fits. Larger animals are
drawn first, so later (smaller) ones occlude them and stay visible themselves. A placement is
redrawn when it would leave an earlier animal with too little of itself in view, or sit inside
its outline (a hole COCO polygons could not describe). The ground truth is a class map: 0 for
background, k for ``classes[k-1]``, occlusion applied.

``write_scenes(root, layout, images)`` writes such a set whole or not at all, as

* ``csv``: ``images/scene_0001.jpg`` ..., ``labels.csv`` with the columns
  ``image,label,labels,boxes[,mask]``: ``label`` is the class with the largest visible area
  (for readers that take one class per image), ``labels`` every present class (largest
  visible area first, so the first is ``label``) joined by ``;``, ``boxes`` one
  ``name:x0 y0 x1 y1`` per present class (same order, visible pixels, exclusive ends) joined
  by ``;`` and, with ``masks``, ``masks/scene_0001.png``: a single-channel class map;
* ``coco``: ``images/`` and ``annotations.json`` (COCO instances): one annotation per animal,
  back to front (painting them in order reproduces the occlusion), with the ``bbox`` and
  ``area`` of its visible pixels and, with ``masks``, their outline as polygons (along pixel
  edges, so pycocotools rasterises them back to the same pixels);
* ``voc``: ``JPEGImages/``, ``SegmentationClass/scene_0001.png`` (palette PNGs: the class map),
  ``ImageSets/Segmentation/train.txt`` and ``val.txt`` (every fifth scene) and a CVAT
  ``labelmap.txt``; its labels are the masks', so it always has them.

On disk, class ids follow ``sorted(classes)`` (mask value k and COCO category id k are the
k-th sorted name), because a reader without a class list orders the classes by name; only
``render_scene`` numbers them in the order of ``classes``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from wsss.data import voc
from wsss.data.breeds import BREEDS
from wsss.data.synthetic.anatomy import POSE_WEIGHTS, POSES, build_parts
from wsss.data.synthetic.coat import PetFrame, paint_coat
from wsss.data.synthetic.genome import Genome, all_genomes
from wsss.data.synthetic.render import _affine, _frame, _local_areas, _translation, rasterise
from wsss.data.synthetic.scene import background, draw_distractors
from wsss.data.synthetic.writer import JPEG_QUALITY
from wsss.storage import write_bytes, write_text

# Two cats and three dogs in BREEDS order, as far apart in look as the genomes allow: a gold
# cat with dark rosettes, a black plain cat, a blue-grey plain cat, a tan-and-white patched
# hound with long ears and short legs, and a white fluffy dog with a curled tail.
SCENE_CLASSES: tuple[str, ...] = ("basset_hound", "Bengal", "Bombay", "Russian_Blue", "samoyed")
SCENE_LAYOUTS = ("csv", "coco", "voc")

COUNT_WEIGHTS = (0.40, 0.35, 0.25)  # P(1, 2, 3 animals)
AREA_RANGE = (0.04, 0.30)  # animal area / frame area, log-uniform
MIN_VISIBLE = 0.02  # of the frame: every listed animal shows at least this much
KEEP_VISIBLE = 0.4  # of its own silhouette: what an occluded animal keeps in view
HOLE_TOLERANCE = 0.02  # of its visible area: how much an occluder may sit inside its outline
PLACEMENT_TRIES = 12


def _genomes_of(classes) -> list[Genome]:
    """The genome of each class name; ValueError for an unknown, repeated or empty list."""
    classes = tuple(classes)
    unknown = [name for name in classes if name not in BREEDS]
    if not classes or unknown or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct breed names (unknown: {unknown or 'none'}, "
                         f"given: {', '.join(classes) or 'none'})")
    genomes = all_genomes()
    return [genomes[BREEDS.index(name)] for name in classes]


def _pose_in_frame(rng, parts, S: int, frac: float):
    """Orientation and scale giving the animal ``frac`` of the frame, shrunk to fit inside it:
    ``(M without translation, pixels per body length, local box lo, hi, faces right)``."""
    flip, rot = bool(rng.random() < 0.5), float(rng.normal(0, 0.12))
    area_local, _ = _local_areas(parts, rot, flip)
    s = math.sqrt(frac * S * S / area_local)
    pts = np.concatenate([p for _, p in parts])
    span = np.ptp(pts @ _affine(s, rot, flip)[:, :2].T, axis=0)
    if span.max() > S:  # scenes never cut an animal by the frame
        s *= S / span.max()
    M = _affine(s, rot, flip)
    tp = pts @ M[:, :2].T
    return M, s, tp.min(0), tp.max(0), not flip  # the head is at +x locally


def _enclosed(region: np.ndarray) -> int:
    """Pixels inside the region's outer outlines that are not in it (holes a polygon fills)."""
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros(region.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, -1)
    return int(np.count_nonzero(filled)) - int(np.count_nonzero(region))


def _fits(class_map: np.ndarray, silhouettes: dict[int, int], new: np.ndarray) -> bool:
    """Whether drawing ``new`` over the scene so far keeps every animal listable and clean."""
    if np.count_nonzero(new) < MIN_VISIBLE * new.size:
        return False
    for number, full in silhouettes.items():
        before = class_map == number
        after = before & ~new
        visible = np.count_nonzero(after)
        if visible < max(MIN_VISIBLE * new.size, KEEP_VISIBLE * full):
            return False
        if _enclosed(after) - _enclosed(before) > HOLE_TOLERANCE * visible:
            return False
    return True


def _place(rng, parts, S: int, frac: float, class_map, silhouettes) -> PetFrame | None:
    """The animal posed somewhere it fits the scene so far; None when no try does."""
    M, s, lo, hi, head_right = _pose_in_frame(rng, parts, S, frac)
    for _ in range(PLACEMENT_TRIES):
        M[:, 2] = _translation(rng, lo, hi, S, head_right, False)
        lab = rasterise(parts, M, S)
        if _fits(class_map, silhouettes, lab > 0):
            return _frame(M, s, lab, S)
    return None


def _composite(img: np.ndarray, frame: PetFrame, coat: np.ndarray) -> np.ndarray:
    """The animal over ``img`` with a soft edge, as ``render_image`` composites its pet."""
    mask = frame.mask
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.55 * frame.scale)[..., None]
    alpha = np.maximum(alpha, mask[..., None] * 0.5)  # keep the silhouette dominant inside
    return img * (1 - alpha) + coat * alpha


def _camera(rng, img: np.ndarray, scale: float) -> np.ndarray:
    """Defocus (sometimes) and sensor noise, as in ``render_image``; uint8."""
    if rng.random() < 0.75:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9) * scale)
    img = img + rng.normal(0, rng.uniform(2, 7), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _animal(class_map: np.ndarray, number: int, name: str) -> dict:
    """An animal's class, box (x0, y0, x1, y1, exclusive ends) and area, of its visible pixels."""
    rows, cols = np.nonzero(class_map == number)
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return {"class": name, "box": box, "area": int(len(rows))}


def render_scene(seed: int, index: int, size: int = 128,
                 classes: tuple[str, ...] = SCENE_CLASSES) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Draw scene ``index`` of the set for ``seed``.

    Returns ``(rgb uint8 HxWx3, class_map uint8 HxW, animals)``: the class map holds 0 for
    background and k for ``classes[k-1]``; ``animals`` lists the drawn animals back to front
    as ``{"class", "box", "area"}`` of their visible pixels (each at least 2 % of the frame).
    """
    S, genomes, wanted = int(size), all_genomes(), _genomes_of(classes)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x5CE4E]))
    count = min(len(wanted), 1 + int(rng.choice(len(COUNT_WEIGHTS), p=COUNT_WEIGHTS)))
    picks = [int(k) for k in rng.choice(len(wanted), count, replace=False)]
    fracs = sorted(np.exp(rng.uniform(*np.log(AREA_RANGE), count)), reverse=True)  # large first
    class_map, silhouettes, drawn = np.zeros((S, S), np.uint8), {}, []
    for k, frac in zip(picks, fracs):
        pose = POSES[int(rng.choice(len(POSES), p=POSE_WEIGHTS))]
        parts, info = build_parts(wanted[k], rng, pose)
        frame = _place(rng, parts, S, frac, class_map, silhouettes)
        if frame is None:  # no room left that keeps the others in view: leave it out
            continue
        drawn.append((k + 1, frame, paint_coat(rng, wanted[k], frame, info)))
        class_map[frame.mask] = k + 1
        silhouettes[k + 1] = int(np.count_nonzero(frame.mask))
    scale = S / 128.0
    img = background(rng, S, scale, wanted[picks[0]], genomes)  # palette logic of the first animal
    draw_distractors(rng, img, S, scale, wanted[picks[0]], genomes)
    for _, frame, coat in drawn:
        img = _composite(img, frame, coat)
    animals = [_animal(class_map, number, classes[number - 1]) for number, _, _ in drawn]
    return _camera(rng, img, scale), class_map, animals


def _sorted_ids(classes) -> np.ndarray:
    """Lookup table from render numbering (order of ``classes``) to sorted-name numbering."""
    names = sorted(classes)
    return np.array([0] + [names.index(name) + 1 for name in classes], np.uint8)


def _encode(extension: str, array: np.ndarray) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if extension == ".jpg" else []
    ok, data = cv2.imencode(extension, np.ascontiguousarray(array), params)
    if not ok:
        raise RuntimeError(f"could not encode {extension}")
    return data.tobytes()


def _scenes(root: Path, images: int, size: int, seed: int, classes, folder: str = "images"):
    """Render every scene, write its JPEG into ``folder``; yield ``(image id, class map, animals)``."""
    for n in range(1, images + 1):
        image_id = f"scene_{n:04d}"
        rgb, class_map, animals = render_scene(seed, n - 1, size, classes)
        write_bytes(root / folder / f"{image_id}.jpg", _encode(".jpg", rgb[..., ::-1]))
        yield image_id, class_map, animals


def _write_csv(root: Path, scenes, classes, masks: bool) -> None:
    buffer, lut = io.StringIO(), _sorted_ids(classes)
    writer = csv.writer(buffer)
    writer.writerow(["image", "label", "labels", "boxes"] + (["mask"] if masks else []))
    for image_id, class_map, animals in scenes:
        # largest visible area first: the first of ``labels`` is the image's main class
        present = sorted(animals, key=lambda a: (-a["area"], classes.index(a["class"])))
        largest = present[0]["class"]
        boxes = ";".join(f"{a['class']}:{' '.join(map(str, a['box']))}" for a in present)
        row = [f"images/{image_id}.jpg", largest, ";".join(a["class"] for a in present), boxes]
        if masks:
            write_bytes(root / "masks" / f"{image_id}.png", _encode(".png", lut[class_map]))
            row.append(f"masks/{image_id}.png")
        writer.writerow(row)
    write_text(root / "labels.csv", buffer.getvalue())


def _polygons(region: np.ndarray) -> list[list[float]]:
    """The region's outer outlines as COCO polygons along pixel edges, not pixel centres.

    pycocotools fills a polygon's pixels in [left, right), so an outline through the boundary
    pixels' centres (``layouts._segmentation``) drops the right and bottom boundary pixels:
    IoU ~0.8 for a small animal. Outlining the mask upsampled 2x and halving the coordinates
    puts the right and bottom edges half a pixel further out, which rasterises to the exact
    pixels (holes aside: polygons are filled).
    """
    double = cv2.resize(region.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(double, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [(c.reshape(-1) / 2.0).tolist() for c in contours if len(c) >= 3]


def _write_coco(root: Path, scenes, classes, masks: bool) -> None:
    names = sorted(classes)
    images, annotations = [], []
    for number, (image_id, class_map, animals) in enumerate(scenes, start=1):
        height, width = class_map.shape
        images.append({"id": number, "file_name": f"images/{image_id}.jpg", "width": width, "height": height})
        for animal in animals:  # back to front, as drawn
            x0, y0, x1, y1 = animal["box"]
            annotation = {"id": len(annotations) + 1, "image_id": number,
                          "category_id": names.index(animal["class"]) + 1,
                          "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(animal["area"]), "iscrowd": 0}
            if masks:
                annotation["segmentation"] = _polygons(class_map == classes.index(animal["class"]) + 1)
            annotations.append(annotation)
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(names)]
    write_text(root / "annotations.json", json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))


def _write_voc(root: Path, scenes, classes, masks: bool) -> None:
    lut = _sorted_ids(classes)
    samples = ((image_id, lut[class_map], "val" if n % 5 == 4 else "train")
               for n, (image_id, class_map, _) in enumerate(scenes))
    voc.write_annotations(root, samples, sorted(classes))


def write_scenes(root: str | os.PathLike, layout: str, images: int, size: int = 128, seed: int = 0,
                 classes: tuple[str, ...] = SCENE_CLASSES, masks: bool = True) -> dict:
    """Write ``images`` scenes at ``root`` in ``layout`` (``csv``, ``coco``, ``voc``), whole or not at all.

    Rendered into a scratch folder beside ``root`` and renamed into place at the end, so a
    failure part-way leaves ``root`` as it was. Returns ``{"root", "layout", "images",
    "classes" (sorted: the on-disk numbering), "size", "seed", "seconds"}``.
    """
    if layout not in SCENE_LAYOUTS:
        raise ValueError(f"layout {layout!r}; known: {', '.join(SCENE_LAYOUTS)}")
    if layout == "voc" and not masks:
        raise ValueError("the voc layout reads each image's classes from its mask: it cannot go without masks")
    classes, images, size = tuple(classes), int(images), int(size)
    _genomes_of(classes)  # fail before any rendering
    if images < 0 or size < 16:
        raise ValueError("images must be >= 0 and size >= 16")
    t0, root = time.perf_counter(), Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{root.name}-", dir=root.parent) as scratch:
        out = Path(scratch) / "out"
        out.mkdir()
        write = {"csv": _write_csv, "coco": _write_coco, "voc": _write_voc}[layout]
        folder = voc.IMAGES if layout == "voc" else "images"
        write(out, _scenes(out, images, size, seed, classes, folder), classes, masks)
        if root.exists():  # an earlier set at root: replaced whole
            shutil.rmtree(root)
        os.replace(out, root)
    return {"root": str(root), "layout": layout, "images": images, "classes": sorted(classes),
            "size": size, "seed": seed, "seconds": round(time.perf_counter() - t0, 3)}
