"""The exchange formats (``wsss.formats``): each writer's file reads back to the class map it was
given, and one polygon is the same pixels whether it arrives as COCO ground truth, as a reviewed
COCO file or as a Label Studio polygon (one rasteriser, pycocotools)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from wsss.data.decode import record_truth
from wsss.data.index import index
from wsss.formats import coco, labelstudio, png
from wsss.masks.reviewed import import_reviewed

SIZE = 64  # the images' own size and the working size: the import resizes nothing
# Slanted edges through fractional points: a half-pixel convention other than pycocotools'
# paints a different outline. Each coordinate * 100 / 64 is exact in binary, so the same
# points in percent of the image (Label Studio) come back to these pixels exactly.
POLYGON = [(10.5, 8.25), (52.75, 14.5), (45.5, 55.125), (6.375, 40.5)]


def class_map_of_three() -> np.ndarray:
    """Class 0 (value 1) in two pieces, class 2 (value 3) beside them, an ignore band below it."""
    values = np.zeros((30, 40), np.uint8)
    values[2:10, 3:12] = 1
    values[20:27, 30:38] = 1
    values[5:18, 14:25] = 3
    values[18:20, 14:25] = 255
    return values


def test_coco_annotations_decode_back_to_the_class_map():
    values = class_map_of_three()
    for split in (False, True):
        annotations = coco.class_map_annotations(values, 1, 1, 0.5, 1, split_instances=split)
        assert len(annotations) == (4 if split else 3) and annotations[-1]["iscrowd"] == 1
        assert [a["id"] for a in annotations] == list(range(1, len(annotations) + 1))
        rebuilt = np.zeros_like(values)
        for annotation in annotations:
            region = coco.decode_segmentation(annotation["segmentation"], *values.shape)
            rebuilt[region] = 255 if annotation["iscrowd"] else annotation["category_id"]
        assert np.array_equal(rebuilt, values)


def test_labelstudio_task_reads_back_to_the_class_map():
    values = class_map_of_three()
    task = labelstudio.task(values, {"image_id": "a"}, 0.5, "v1", ["cat", "dog", "cow"], one_class=False)
    rebuilt = np.zeros_like(values)
    names = {"cat": 1, "dog": 2, "cow": 3, labelstudio.IGNORE_LABEL: 255}
    regions = list(labelstudio.region_results({"result": task["predictions"][0]["result"]}))
    assert [where for _, where in regions] == ["region class-0", "region class-2", "region ignore"]
    for result, _ in regions:
        assert labelstudio.region_size(result) == (40, 30)
        rebuilt[labelstudio.region_pixels(result, 40, 30)] = names[labelstudio.region_labels(result)[0]]
    assert np.array_equal(rebuilt, values)


def test_png_class_map_reads_back_with_its_legend(tmp_path):
    values = class_map_of_three()
    path = png.write_class_map(str(tmp_path / "a.png"), values)
    assert np.array_equal(png.read_class_map(path), values) and Image.open(path).mode == "P"
    legend = json.loads(open(png.write_legend(str(tmp_path), ["cat", "dog"], "mine")).read())
    assert legend["values"] == {"0": "background", "1": "cat", "2": "dog", "255": png.MEANINGS["255"]}
    assert png.mask_files(tmp_path) == ["a.png"]


def coco_root(tmp_path):
    """Two 64 px images, the first with POLYGON as its cat's segmentation."""
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (SIZE, SIZE), (90, 120, 30)).save(root / "images" / f"{name}.jpg")
    flat = [float(v) for point in POLYGON for v in point]
    square = [20.0, 20.0, 40.0, 20.0, 40.0, 40.0, 20.0, 40.0]
    document = {"images": [{"id": 1, "file_name": "images/a.jpg", "width": SIZE, "height": SIZE},
                           {"id": 2, "file_name": "images/b.jpg", "width": SIZE, "height": SIZE}],
                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [flat],
                                 "bbox": [6.375, 8.25, 46.375, 46.875], "area": 1500.0},
                                {"id": 2, "image_id": 2, "category_id": 2, "iscrowd": 0, "segmentation": [square],
                                 "bbox": [20, 20, 20, 20], "area": 400.0}]}
    (root / "annotations.json").write_text(json.dumps(document))
    return root


def test_one_polygon_is_the_same_pixels_as_ground_truth_coco_review_and_label_studio(tmp_path):
    root = coco_root(tmp_path)
    dataset = index(root, format="coco")
    record = next(r for r in dataset.records if r.image_id == "images__a")
    truth = record_truth(record) == 1  # the ground-truth reader's raster (a trimap: 1 is the pet)
    points = [[x * 100 / SIZE, y * 100 / SIZE] for x, y in POLYGON]
    tasks = [{"id": 1, "data": {"image": "/data/local-files/?d=images/a.jpg"},
              "annotations": [{"id": 1, "result": [{
                  "id": "pet", "type": "polygonlabels", "original_width": SIZE, "original_height": SIZE,
                  "value": {"points": points, "polygonlabels": ["cat"]}}]}]}]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    store = str(tmp_path / "store")
    reviewed = {source: import_reviewed(store, str(path), dataset, SIZE).mask_set.read(record.image_id) == 1
                for source, path in (("coco", root / "annotations.json"), ("labelstudio", tmp_path / "tasks.json"))}
    assert 1000 < truth.sum() < SIZE * SIZE
    assert np.array_equal(reviewed["coco"], truth)
    assert np.array_equal(reviewed["labelstudio"], truth)


def test_ground_truth_that_cannot_be_drawn_is_quarantined_naming_why(tmp_path):
    root = coco_root(tmp_path)
    document = json.loads((root / "annotations.json").read_text())
    document["annotations"][0]["segmentation"] = [[1.0, 1.0, 9.0, 9.0]]  # two points: pycocotools reads a box
    document["annotations"][1]["segmentation"] = {"size": [SIZE, SIZE + 1], "counts": "0"}
    (root / "annotations.json").write_text(json.dumps(document))
    dataset = index(root, format="coco")
    assert dataset.records == []
    reasons = sorted(entry["reason"] for entry in dataset.quarantine.entries)
    assert reasons == ["COCO image 1: polygon with 2 points", "COCO image 2: RLE of size [64, 65] on a 64x64 image"]


def test_the_brush_decoder_gives_label_studios_values():
    from label_studio_converter.brush import decode_rle, mask2rle

    rng = np.random.default_rng(0)
    masks = [(rng.random((37, 53)) < 0.5) * 255, np.zeros((20, 30)), np.full((9, 7), 255)]
    band = np.zeros((64, 48))
    band[10:40, 5:] = 255
    for mask in [*masks, band]:
        rle = mask2rle(mask.astype(np.uint8))
        assert np.array_equal(labelstudio.decode_brush_rle(rle), decode_rle(rle))
