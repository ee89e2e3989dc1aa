"""Label Studio: import tasks with masks as brush pre-annotations, and regions of an export back.

Writer: ``task`` makes one import task from an image's class map: a brush region (RLE by
Label Studio's own converter) per class value and one labelled ``ignore``, as a prediction the
reviewer corrects; ``labeling_config`` is the labeling interface the tasks need.

Reader: ``latest_annotation`` picks what a reviewer handed back, ``region_results`` its brush
and polygon regions, and ``region_pixels`` paints one at the image's size: brush RLE decoded
here (the converter's decoder is a Python call per bit), polygons (points in percent of the
image) filled by pycocotools (``wsss.formats.coco``), the one rasteriser of the project.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from wsss.formats import EntryError
from wsss.formats.coco import polygon_mask
from wsss.metrics import IGNORE

LOCAL_FILES_ROOT = "/data/local-files/?d="  # Label Studio's local file serving
IGNORE_LABEL = "ignore"
REGION_KINDS = ("brushlabels", "polygonlabels")


# -- writer --------------------------------------------------------------------------------------

def brush_result(region: np.ndarray, label: str, width: int, height: int, region_id: str) -> dict[str, Any]:
    """A Label Studio brush region; LS paints pixels of value 255, RLE by its own converter."""
    from label_studio_converter.brush import mask2rle

    painted = np.where(region, 255, 0).astype(np.uint8)
    return {"id": region_id, "type": "brushlabels", "from_name": "tag", "to_name": "image",
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle(painted), "brushlabels": [label]}}


def task(class_map: np.ndarray, data: dict[str, Any], score: float, model_version: str,
         classes: list[str], one_class: bool) -> dict[str, Any]:
    """One import task: ``data`` and the class map as a prediction scored ``score``, a brush
    region per class value (``classes`` names them; region id ``foreground`` where the image
    has ``one_class``, else ``class-<index>``) and one ``ignore`` region."""
    height, width = class_map.shape
    values = sorted(set(np.unique(class_map).tolist()) - {0, IGNORE})
    regions = [(class_map == value, classes[value - 1], "foreground" if one_class else f"class-{value - 1}")
               for value in values]
    regions.append((class_map == IGNORE, IGNORE_LABEL, "ignore"))
    result = [brush_result(region, label, width, height, region_id)
              for region, label, region_id in regions if region.any()]
    return {"data": data, "predictions": [{"model_version": model_version, "score": round(score, 6),
                                           "result": result}]}


def labeling_config(classes: list[str]) -> str:
    """The Label Studio labeling config the tasks need: an image and one brush label per class,
    plus ``ignore``."""
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in classes)
    return ('<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
            '  <BrushLabels name="tag" toName="image">\n'
            f'{labels}    <Label value="{IGNORE_LABEL}" background="#808080"/>\n'
            "  </BrushLabels>\n</View>\n")


def labeling_config_path(out: str) -> str:
    """``<out stem>.labeling-config.xml`` beside the tasks JSON."""
    text = str(out)
    stem = text[: -len(".json")] if text.endswith(".json") else text
    return f"{stem}.labeling-config.xml"


# -- reader --------------------------------------------------------------------------------------

def decode_brush_rle(rle: list[int]) -> np.ndarray:
    """Label Studio's brush RLE -> the flat uint8 RGBA values, as ``label_studio_converter.brush.
    decode_rle`` gives them. Its bytes-to-bits step is a Python call per bit (80 % of an import,
    ~13 ms a region at 384 px); here numpy unpacks the bits and only the runs are walked."""
    bits = (np.unpackbits(np.asarray(rle, dtype=np.uint8)) + ord("0")).tobytes().decode("ascii")
    position = 0

    def read(size: int) -> int:
        nonlocal position
        position += size
        return int(bits[position - size:position], 2)

    count, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.uint8)
    i = 0
    while i < count:
        repeated = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeated:
            out[i:j] = read(word)
        else:
            out[i:j] = [read(word) for _ in range(j - i)]
        i = j
    return out


def brush_region(value: dict[str, Any], width: int, height: int) -> np.ndarray:
    """A brush region's pixels from Label Studio's RLE (RGBA; painted where alpha is set)."""
    if value.get("format", "rle") != "rle" or not value.get("rle"):
        raise EntryError(f"brush region without RLE (format {value.get('format')!r})")
    flat = decode_brush_rle(value["rle"])
    if flat.size != width * height * 4:
        raise EntryError(f"brush RLE holds {flat.size // 4} pixels, not {width}x{height}")
    return flat.reshape(height, width, 4)[:, :, 3] >= 128


def polygon_region(points: list[list[float]], width: int, height: int) -> np.ndarray:
    """A polygon's pixels; its points are in percent of the image (multiplied before dividing,
    so a point that is a whole or half pixel stays exactly one)."""
    vertices = np.asarray(points, np.float64).reshape(-1, 2) * np.array([width, height]) / 100
    return polygon_mask([vertices], height, width)


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task's latest annotation that was not cancelled (by update time, then id)."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not kept:
        return None
    return max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def task_image(task: dict[str, Any]) -> tuple[Any, Any]:
    """(image id, image URL or path) a task names; either may be None."""
    data = task.get("data") or {}
    return data.get("image_id"), data.get("image")


def region_results(annotation: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(result, ``region <id>``) per brush or polygon region; choices, ratings... are no region."""
    for result in annotation.get("result") or []:
        if result.get("type") in REGION_KINDS:
            yield result, f"region {result.get('id', '?')}"


def region_size(result: dict[str, Any]) -> tuple[int, int] | None:
    """(width, height) of the image the region was drawn on, where the result says."""
    if "original_width" not in result:
        return None
    return result["original_width"], result["original_height"]


def region_labels(result: dict[str, Any]) -> list[str]:
    """The labels a region carries (the first one counts)."""
    return (result.get("value") or {}).get(result["type"], [])


def region_pixels(result: dict[str, Any], width: int, height: int) -> np.ndarray:
    """A region's pixels on a ``width`` x ``height`` image."""
    value = result.get("value") or {}
    if result["type"] == "brushlabels":
        return brush_region(value, width, height)
    return polygon_region(value.get("points", []), width, height)
