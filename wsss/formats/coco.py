"""COCO instances: class maps as annotations (RLE), and annotations back as masks.

Writer: ``class_map_annotations`` turns one image's class map (0 background, k + 1 class k,
255 ignore) into annotations: one compressed RLE per class value (``category_id`` = the value;
with ``split_instances``, one per 8-connected piece of it) and, where there are ignore pixels,
an ``iscrowd: 1`` annotation over them, COCO's own "ignore this region". ``document`` wraps
images, annotations and categories into an instances JSON.

Reader: ``decode_segmentation`` takes compressed or uncompressed RLE, or polygons in pixels, to
a boolean mask. Polygons go through pycocotools (``frPyObjects``, then ``decode``), which fills
the pixels whose centres lie inside, as COCO's own tools do; it is the one rasteriser of the
project, so ground truth (``wsss.data.coco``), COCO reviews and Label Studio polygons
(``wsss.formats.labelstudio``) paint a polygon to the same pixels. ``union_mask`` and
``class_map`` combine an image's annotations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss.formats import EntryError
from wsss.metrics import IGNORE

# -- writer --------------------------------------------------------------------------------------

def region_annotation(region: np.ndarray, ident: int, image_id: int, category_id: int,
                      score: float, crowd: bool) -> dict[str, Any]:
    """One COCO annotation over a binary region: compressed RLE, bbox and area by pycocotools."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"id": ident, "image_id": image_id, "category_id": category_id,
            "segmentation": {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": int(coco_mask.area(rle)), "bbox": [float(v) for v in coco_mask.toBbox(rle)],
            "iscrowd": int(crowd), "score": round(score, 6)}


def instances(region: np.ndarray) -> list[np.ndarray]:
    """A region split into its 8-connected pieces, largest first (ties: first in row order)."""
    import cv2

    count, labelled, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    order = sorted(range(1, count), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
    return [labelled == i for i in order]


def class_map_annotations(class_map: np.ndarray, image_id: int, first_id: int, score: float,
                          ignore_category: int, split_instances: bool = False) -> list[dict[str, Any]]:
    """The annotations of one image's class map, numbered from ``first_id``: a region per class
    value in value order (with ``split_instances``, per connected piece), then the ignore region
    as ``iscrowd`` of ``ignore_category``; empty regions are left out."""
    values = sorted(set(np.unique(class_map).tolist()) - {0, IGNORE})
    regions = [(piece, value, False) for value in values
               for piece in (instances(class_map == value) if split_instances else [class_map == value])]
    regions.append((class_map == IGNORE, ignore_category, True))
    annotations: list[dict[str, Any]] = []
    for region, category, crowd in regions:
        if region.any():
            annotations.append(region_annotation(region, first_id + len(annotations), image_id, category,
                                                 score, crowd))
    return annotations


def document(images: list[dict[str, Any]], annotations: list[dict[str, Any]], classes: list[str],
             info: dict[str, Any]) -> dict[str, Any]:
    """An instances JSON: the image entries, their annotations, a category per class (id k + 1)."""
    categories = [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)]
    return {"info": info, "licenses": [], "images": images, "annotations": annotations,
            "categories": categories}


# -- reader --------------------------------------------------------------------------------------

def polygon_rle(polygon: Any, height: int, width: int) -> dict[str, Any]:
    """One polygon (x y pairs in pixels, flat or nested) as pycocotools' RLE. At least three
    points: pycocotools would read four numbers as a box, not a polygon."""
    from pycocotools import mask as coco_mask

    coordinates = np.asarray(polygon, np.float64).reshape(-1)
    if coordinates.size < 6 or coordinates.size % 2:
        raise EntryError(f"polygon with {coordinates.size / 2:g} points")
    return coco_mask.frPyObjects([coordinates.tolist()], height, width)[0]


def polygon_mask(polygons: list[Any], height: int, width: int) -> np.ndarray:
    """The pixels inside any of the polygons (the union), as pycocotools paints them."""
    from pycocotools import mask as coco_mask

    rles = [polygon_rle(polygon, height, width) for polygon in polygons]
    return coco_mask.decode(coco_mask.merge(rles)).astype(bool)


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """An annotation's pixels: compressed or uncompressed RLE of this image's size, or polygons."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, dict):
        size = [int(n) for n in segmentation.get("size", [])]
        if size != [height, width]:
            raise EntryError(f"RLE of size {size} on a {height}x{width} image")
        rle = coco_mask.frPyObjects(segmentation, height, width) \
            if isinstance(segmentation.get("counts"), list) else segmentation
        return coco_mask.decode(rle).astype(bool)
    if isinstance(segmentation, list) and segmentation:
        return polygon_mask(segmentation, height, width)
    raise EntryError(f"segmentation is neither RLE nor polygons: {str(segmentation)[:60]}")


def union_mask(annotations: list[dict[str, Any]], height: int, width: int) -> np.ndarray | None:
    """The union of the annotations' segmentations; None when none carries one."""
    masks = [decode_segmentation(a["segmentation"], height, width) for a in annotations if a.get("segmentation")]
    return np.logical_or.reduce(masks) if masks else None


def class_map(annotations: list[dict[str, Any]], names: dict[Any, str], classes: list[str],
              order: list[str], height: int, width: int) -> np.ndarray | None:
    """A class-indexed map (0 background, k for ``classes[k-1]``) of the annotations'
    segmentations (``names``: category id -> name); categories painted in ``order`` (largest
    first), so later ones stay on top. None when no annotation carries a segmentation."""
    painted, found = np.zeros((height, width), np.uint8), False
    for name in order:
        mask = union_mask([a for a in annotations if names[a["category_id"]] == name], height, width)
        if mask is not None:
            painted[mask] = classes.index(name) + 1
            found = True
    return painted if found else None


def index_document(document: Any) -> tuple[dict[int, str], list[dict[str, Any]], dict[Any, list[dict[str, Any]]]]:
    """(category names by id, image entries, annotations by image id) of a COCO JSON; KeyError,
    TypeError or ValueError where it is not one."""
    categories = {int(c["id"]): str(c.get("name", c["id"])) for c in document.get("categories", [])}
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for annotation in document["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    return categories, list(document["images"]), by_image
