"""Several classes per image: the csv and COCO readers under ``task: semantic``, class-indexed
ground truth, the one-class readers as the one-class case, and the class metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data.decode import record_class_truth, record_truth
from wsss.data.index import index
from wsss.metrics import SegmentationMeter, class_confusion, scores

CLASSES = ["cat", "cow", "dog"]
SHAPES = {  # image: [(class, (x0, y0, x1, y1)), ...] drawn in order, later on top
    "one": [("dog", (4, 4, 20, 28))],
    "two": [("cat", (2, 2, 26, 26)), ("dog", (16, 10, 30, 30))],  # dog overlaps cat
    "three": [("cow", (0, 0, 14, 32)), ("cat", (14, 0, 32, 16)), ("dog", (14, 18, 32, 32))],
    "four": [("cat", (8, 8, 24, 24))],
    "five": [("cow", (4, 4, 28, 20)), ("dog", (6, 22, 12, 30))],
    "six": [("dog", (0, 0, 32, 10)), ("cow", (0, 20, 32, 32))],
}


def draw(shapes) -> tuple[np.ndarray, np.ndarray]:
    """A 32x32 image with a coloured rectangle per class and its class map (sorted classes)."""
    rgb = np.full((32, 32, 3), 40, np.uint8)
    truth = np.zeros((32, 32), np.uint8)
    for name, (x0, y0, x1, y1) in shapes:
        k = CLASSES.index(name) + 1
        rgb[y0:y1, x0:x1] = (80 * k, 250 - 70 * k, 60 + 50 * k)
        truth[y0:y1, x0:x1] = k
    return rgb, truth


def visible_box(truth: np.ndarray, name: str) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(truth == CLASSES.index(name) + 1)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def by_area(truth: np.ndarray, shapes) -> list[str]:
    names = {name for name, _ in shapes}
    return sorted(names, key=lambda n: (-np.count_nonzero(truth == CLASSES.index(n) + 1), n))


@pytest.fixture
def csv_root(tmp_path) -> Path:
    root = tmp_path / "scenes"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for image_id, shapes in SHAPES.items():
        rgb, truth = draw(shapes)
        Image.fromarray(rgb).save(root / "images" / f"{image_id}.png")
        Image.fromarray(truth).save(root / "masks" / f"{image_id}.png")
        names = [name for name, _ in shapes]
        boxes = ";".join(f"{name}:{' '.join(map(str, visible_box(truth, name)))}" for name in names)
        rows.append({"image": f"images/{image_id}.png", "labels": ";".join(names), "boxes": boxes,
                     "mask": f"masks/{image_id}.png"})
    write_csv(root / "labels.csv", rows)
    return root


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "labels", "boxes", "mask"])
        writer.writeheader()
        writer.writerows(rows)


def test_csv_labels_give_every_class_its_box_and_a_class_indexed_truth(csv_root):
    dataset = index(csv_root, format="csv", task="semantic")
    assert dataset.task == "semantic" and dataset.classes == CLASSES and not dataset.quarantine
    records = {r.image_id.removeprefix("images__"): r for r in dataset.records}
    assert set(records) == set(SHAPES)
    for image_id, shapes in SHAPES.items():
        record = records[image_id]
        _, truth = draw(shapes)
        assert [dataset.classes[k] for k in record.labels] == [name for name, _ in shapes]
        assert record.present == record.labels and record.class_name == shapes[0][0]
        assert record.class_boxes == tuple(visible_box(truth, name) for name, _ in shapes)
        assert record.truth_format == "classes"
        assert np.array_equal(record_class_truth(record), truth)
        assert np.array_equal(record_truth(record) == 1, truth > 0)  # the binary view
    assert {r.split for r in dataset.records} <= {"train", "val", "test"}


def test_the_binary_task_reads_the_same_csv_as_one_class_per_image(csv_root):
    binary = index(csv_root, format="csv")
    semantic = index(csv_root, format="csv", task="semantic")
    assert all(r.labels == () and r.present == (r.label,) for r in binary.records)
    assert binary.classes == sorted({r.class_name for r in binary.records})  # main classes only
    assert binary.fingerprint() != semantic.fingerprint()  # a mask set of one is not one of the other


def test_bad_labels_and_masks_are_each_a_quarantine_line_with_file_and_row(csv_root):
    rows = list(csv.DictReader(open(csv_root / "labels.csv")))
    rows[0]["labels"] = "dog;horse"  # row 2: a label outside data.classes
    rows[1]["labels"] = " ; "  # row 3: no class at all
    bad = np.zeros((32, 32), np.uint8)
    bad[:4, :4] = 7  # row 4: a value no class has
    Image.fromarray(bad).save(csv_root / "masks" / "three.png")
    rows[3]["boxes"] = "dog:1 1 5 5"  # row 5: a box for a class the row does not name
    write_csv(csv_root / "labels.csv", rows)
    dataset = index(csv_root, format="csv", classes=CLASSES, task="semantic")
    lines = {e["image_id"]: e["reason"] for e in dataset.quarantine.entries}
    assert set(lines) == {"images__one", "images__two", "images__three", "images__four"}
    text = "\n".join(lines.values())
    assert "labels.csv row 2: label 'horse' is not in data.classes" in text
    assert "labels.csv row 3: empty labels" in text
    assert "labels.csv row 4: mask" in text and "three.png has values [7] outside the classes" in text
    assert "labels.csv row 5: boxes name 'dog'" in text
    assert sorted(r.image_id for r in dataset.records) == ["images__five", "images__six"]


@pytest.fixture
def coco_root(tmp_path) -> Path:
    from pycocotools import mask as coco_mask

    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    category = {name: 10 * (i + 1) for i, name in enumerate(CLASSES)}  # ids need not be 1..C
    for number, (image_id, shapes) in enumerate(SHAPES.items(), start=1):
        rgb, truth = draw(shapes)
        Image.fromarray(rgb).save(root / "images" / f"{image_id}.png")
        images.append({"id": number, "file_name": f"images/{image_id}.png", "width": 32, "height": 32})
        for name, _ in shapes:
            visible = (truth == CLASSES.index(name) + 1).astype(np.uint8)
            rle = coco_mask.encode(np.asfortranarray(visible))
            x0, y0, x1, y1 = visible_box(truth, name)
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": category[name],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(visible.sum()),
                                "iscrowd": 0,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    (root / "annotations.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in category.items()]}))
    return root


def test_coco_gives_every_category_present_largest_first_with_its_box_and_truth(coco_root):
    dataset = index(coco_root, format="coco", task="semantic")
    assert dataset.classes == CLASSES and not dataset.quarantine
    for record in dataset.records:
        shapes = SHAPES[record.image_id.removeprefix("images__")]
        _, truth = draw(shapes)
        order = by_area(truth, shapes)
        assert [dataset.classes[k] for k in record.labels] == order and record.class_name == order[0]
        assert record.class_boxes == tuple(visible_box(truth, name) for name in order)
        assert np.array_equal(record_class_truth(record), truth)  # each category's RLE, exactly
    binary = index(coco_root, format="coco")
    assert binary.fingerprint() != dataset.fingerprint()
    assert all(np.isin(record_truth(r), (1, 2)).all() for r in binary.records)  # the union, as before


def test_coco_category_outside_data_classes_is_quarantined_under_semantic(coco_root):
    dataset = index(coco_root, format="coco", classes=["cat", "dog"], task="semantic")
    quarantined = {e["image_id"]: e["reason"] for e in dataset.quarantine.entries}
    with_cow = {f"images__{image_id}" for image_id, shapes in SHAPES.items() if any(n == "cow" for n, _ in shapes)}
    assert set(quarantined) == with_cow
    assert all("class 'cow' is not in data.classes" in reason for reason in quarantined.values())


def test_one_class_datasets_are_the_one_class_case(synthetic_root):
    binary = index(synthetic_root)
    semantic = index(synthetic_root, task="semantic")
    assert [r.image_id for r in binary.records] == [r.image_id for r in semantic.records]
    for one, many in zip(binary.records, semantic.records):
        assert many.labels == (one.label,) and many.present == one.present
        target = record_class_truth(many)
        trimap = record_truth(one)
        assert np.array_equal(target == one.label + 1, trimap == 1)
        assert np.array_equal(target == 255, trimap == 3)


def _iou_by_sets(prediction, target, k):
    valid = target != 255
    a, b = (prediction == k) & valid, (target == k) & valid
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else None


def test_class_meter_matches_per_class_set_iou_and_the_binary_view():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 4, (5, 16, 16)).astype(np.uint8)
    targets[:, :2] = 255
    predictions = np.where(rng.random((5, 16, 16)) < 0.7, targets, rng.integers(0, 4, (5, 16, 16)))
    predictions[targets == 255] = rng.integers(0, 4, np.count_nonzero(targets == 255))
    predictions[predictions == 3] = 2  # class 3 is never predicted; it still is in the truth
    meter = SegmentationMeter(3)
    for prediction, target in zip(predictions[:3], targets[:3]):
        meter.update(prediction, target)
    other = SegmentationMeter(3)
    other.update_batch(predictions[3:], targets[3:])  # a batch
    meter.merge(other)
    result = meter.result(["a", "b", "c"])
    expected = {name: _iou_by_sets(predictions, targets, k) for k, name in enumerate(["background", "a", "b", "c"])}
    assert result["images"] == 5 and result["class_iou"]["c"] == 0.0
    for name, value in expected.items():
        assert result["class_iou"][name] == pytest.approx(value)
    assert result["miou"] == pytest.approx(np.mean(list(expected.values())))
    valid = targets != 255
    fg = scores(np.array([np.count_nonzero((predictions > 0) & (targets > 0) & valid),
                          np.count_nonzero((predictions > 0) & (targets == 0) & valid),
                          np.count_nonzero((predictions == 0) & (targets > 0) & valid),
                          np.count_nonzero((predictions == 0) & (targets == 0) & valid)]))
    assert result["micro"] == pytest.approx(fg)
    with pytest.raises(ValueError, match="class value 9 outside 0..3"):
        class_confusion(np.full((2, 2), 9), np.zeros((2, 2)), 3)
