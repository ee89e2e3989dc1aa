"""``wsss benchmark import``: a Label Studio export of one task per image, imported by
``wsss.masks.reviewed.import_reviewed`` against a plain serial loop of the same work with Label
Studio's own decoder (decode each brush RLE, resize, encode and write the PNG); the floor is the
RLE decoding alone (``decode_brush_rle``), and the converter's decoder is timed beside it."""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np

from wsss.benchmark.common import Settings, Workload, rate, stage_result, timed
from wsss.data.arrays import resize_mask
from wsss.data.records import DatasetIndex
from wsss.formats.labelstudio import brush_result, decode_brush_rle
from wsss.masks.export import image_size
from wsss.masks.reviewed import import_reviewed
from wsss.masks.store import MaskSetWriter
from wsss.metrics import trimap_to_target

UNIT = "per process"


def review_tasks(work: Workload) -> list[dict[str, Any]]:
    """One reviewed task per image: the ground truth at the image's own size as a brush region
    of its class and the border as ``ignore`` (what a reviewer hands back)."""
    tasks = []
    for number, (record, trimap) in enumerate(zip(work.records, work.trimaps), start=1):
        width, height = image_size(record.image_path)
        target = resize_mask(trimap_to_target(trimap), (height, width))
        result = [brush_result(target == 1, record.class_name, width, height, "pet"),
                  brush_result(target == 255, "ignore", width, height, "border")]
        tasks.append({"id": number, "data": {"image_id": record.image_id},
                      "annotations": [{"id": number, "result": result}]})
    return tasks


def serial_import(tasks: list[dict[str, Any]], work: Workload, size: int, out: str) -> None:
    """The same work as a plain loop: decode, paint, resize, write; no checks, no lookups."""
    from label_studio_converter.brush import decode_rle

    writer = MaskSetWriter(out)
    for task in tasks:
        regions = task["annotations"][0]["result"]
        width, height = regions[0]["original_width"], regions[0]["original_height"]
        mask = np.zeros((height, width), np.uint8)
        for region, value in zip(regions, (1, 255)):
            mask[decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3] >= 128] = value
        writer.write_mask(task["data"]["image_id"], resize_mask(mask, size))


def bare_decode(tasks: list[dict[str, Any]], decode: Any = decode_brush_rle) -> None:
    for task in tasks:
        for region in task["annotations"][0]["result"]:
            decode(region["value"]["rle"])


def import_bench(work: Workload, settings: Settings) -> dict[str, Any]:
    """Tasks imported per second: ``import_reviewed`` vs the serial loop; the floor is the RLE decoder."""
    tasks = review_tasks(work)
    export = work.scratch / "review-export.json"
    export.write_text(json.dumps(tasks))
    dataset = DatasetIndex(str(work.root), list(work.records), classes=sorted({r.class_name for r in work.records}))
    store = work.scratch / "review-store"
    shutil.rmtree(store, ignore_errors=True)
    path_seconds = timed(lambda: import_reviewed(str(store), str(export), dataset, settings.size))
    imported = import_reviewed(str(store), str(export), dataset, settings.size)
    reference_seconds = timed(lambda: serial_import(tasks, work, settings.size, str(work.scratch / "review-serial")))
    floor_seconds = timed(lambda: bare_decode(tasks))
    from label_studio_converter.brush import decode_rle

    converter_seconds = timed(lambda: bare_decode(tasks, decode_rle))
    count = len(tasks)
    details = {"tasks": count, "imported": len(imported.imported), "problems": len(imported.problems),
               "import_seconds": path_seconds, "serial_seconds": reference_seconds,
               "rle_decode_seconds": floor_seconds, "converter_decode_seconds": converter_seconds,
               "export_bytes": export.stat().st_size}
    return stage_result("import", "wsss import (Label Studio JSON)", "decode + resize + write, serial",
                        rate(count, path_seconds), rate(count, reference_seconds), unit=UNIT,
                        images=count, floor_ips=rate(count, floor_seconds), details=details)
