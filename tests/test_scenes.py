"""Multi-class synthetic scenes: determinism, class maps and boxes, the csv and COCO layouts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data.synthetic import scenes
from wsss.data.synthetic.scenes import SCENE_CLASSES, render_scene, write_scenes

SIZE, SEED, COUNT = 64, 0, 30


@pytest.fixture(scope="module")
def rendered() -> list[tuple[np.ndarray, np.ndarray, list[dict]]]:
    """The first COUNT scenes of SEED at SIZE px with the default classes."""
    return [render_scene(SEED, index, SIZE) for index in range(COUNT)]


def visible_box(class_map: np.ndarray, number: int) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(class_map == number)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_seed_gives_the_same_bytes_and_another_seed_differs(tmp_path):
    for index in range(3):
        rgb, class_map, animals = render_scene(SEED, index, SIZE)
        again = render_scene(SEED, index, SIZE)
        assert np.array_equal(rgb, again[0]) and np.array_equal(class_map, again[1]) and animals == again[2]
        assert not np.array_equal(rgb, render_scene(SEED + 1, index, SIZE)[0])
    first = write_scenes(tmp_path / "a", "csv", 6, SIZE, seed=3)
    write_scenes(tmp_path / "b", "csv", 6, SIZE, seed=3)
    write_scenes(tmp_path / "c", "csv", 6, SIZE, seed=4)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a")["images/scene_0001.jpg"] != files(tmp_path / "c")["images/scene_0001.jpg"]
    assert first["classes"] == sorted(SCENE_CLASSES) and first["images"] == 6 and first["layout"] == "csv"


def test_every_scene_holds_one_to_three_distinct_classes_and_its_map_holds_exactly_them(rendered):
    for rgb, class_map, animals in rendered:
        assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
        assert class_map.shape == (SIZE, SIZE) and class_map.dtype == np.uint8
        names = [a["class"] for a in animals]
        assert 1 <= len(names) <= 3 and len(set(names)) == len(names) and set(names) <= set(SCENE_CLASSES)
        numbers = {SCENE_CLASSES.index(name) + 1 for name in names}
        assert set(np.unique(class_map).tolist()) == {0} | numbers
        for animal in animals:
            number = SCENE_CLASSES.index(animal["class"]) + 1
            assert animal["area"] == np.count_nonzero(class_map == number) >= 0.02 * SIZE * SIZE


def test_boxes_enclose_exactly_the_pixels_of_their_class(rendered):
    for _, class_map, animals in rendered:
        for animal in animals:
            number = SCENE_CLASSES.index(animal["class"]) + 1
            assert animal["box"] == visible_box(class_map, number)


def test_over_a_set_every_class_appears_and_animals_share_and_overlap_scenes(rendered):
    present = [[a["class"] for a in animals] for _, _, animals in rendered]
    assert {name for names in present for name in names} == set(SCENE_CLASSES)
    assert sum(len(names) >= 2 for names in present) >= COUNT // 4
    assert sum(len(names) == 1 for names in present) >= COUNT // 10
    overlapping = [any(overlaps(a["box"], b["box"]) for i, a in enumerate(animals) for b in animals[i + 1:])
                   for _, _, animals in rendered]
    assert sum(overlapping) >= 3


def test_csv_masks_number_classes_by_sorted_name_and_agree_with_the_labels(tmp_path):
    assert list(SCENE_CLASSES) != sorted(SCENE_CLASSES)  # so the render -> disk renumbering is exercised
    root = tmp_path / "scenes"
    write_scenes(root, "csv", 12, SIZE, seed=SEED)
    with open(root / "labels.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image", "label", "labels", "boxes", "mask"]
        rows = list(reader)
    names = sorted(SCENE_CLASSES)
    assert [row["image"] for row in rows] == [f"images/scene_{n:04d}.jpg" for n in range(1, 13)]
    for n, row in enumerate(rows):
        assert Image.open(root / row["image"]).size == (SIZE, SIZE)
        mask = Image.open(root / row["mask"])
        assert mask.mode == "L"
        mask = np.asarray(mask)
        labels = row["labels"].split(";")
        assert {names[k - 1] for k in np.unique(mask) if k} == set(labels)
        areas = {name: np.count_nonzero(mask == names.index(name) + 1) for name in labels}
        assert labels == sorted(labels, key=lambda name: -areas[name])  # largest first
        assert row["label"] == labels[0] == max(areas, key=areas.get)
        boxes = dict(part.split(":") for part in row["boxes"].split(";"))
        assert list(boxes) == labels
        for name, box in boxes.items():
            assert tuple(map(int, box.split())) == visible_box(mask, names.index(name) + 1)
        _, class_map, _ = render_scene(SEED, n, SIZE)  # the same scene, numbered in render order
        rendered_names = np.array(["", *SCENE_CLASSES])[class_map]
        assert np.array_equal(rendered_names, np.array(["", *names])[mask])


def test_csv_without_masks_and_with_other_classes(tmp_path):
    classes = ("pug", "Abyssinian")
    summary = write_scenes(tmp_path / "scenes", "csv", 6, SIZE, seed=1, classes=classes, masks=False)
    assert summary["classes"] == ["Abyssinian", "pug"]
    assert not (tmp_path / "scenes" / "masks").exists()
    with open(tmp_path / "scenes" / "labels.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image", "label", "labels", "boxes"]
        rows = list(reader)
    assert len(rows) == 6 and all(set(row["labels"].split(";")) <= set(classes) for row in rows)
    for index in range(4):  # one class: exactly one animal
        assert len(render_scene(1, index, SIZE, ("pug",))[2]) == 1


def test_coco_polygons_rasterise_to_each_category_of_the_class_map(tmp_path):
    from pycocotools import mask as coco_mask

    root = tmp_path / "coco"
    write_scenes(root, "coco", 12, SIZE, seed=SEED)
    data = json.loads((root / "annotations.json").read_text())
    names = sorted(SCENE_CLASSES)
    assert data["categories"] == [{"id": k + 1, "name": name} for k, name in enumerate(names)]
    assert [image["id"] for image in data["images"]] == list(range(1, 13))
    by_image: dict[int, list[dict]] = {}
    for annotation in data["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    for image in data["images"]:
        assert image["file_name"] == f"images/scene_{image['id']:04d}.jpg" and (root / image["file_name"]).is_file()
        assert (image["width"], image["height"]) == (SIZE, SIZE)
        _, class_map, animals = render_scene(SEED, image["id"] - 1, SIZE)
        annotations = by_image[image["id"]]
        categories = [a["category_id"] for a in annotations]
        assert len(set(categories)) == len(categories) == len(animals)
        for annotation in annotations:
            truth = class_map == SCENE_CLASSES.index(names[annotation["category_id"] - 1]) + 1
            x0, y0, x1, y1 = visible_box(truth.astype(np.uint8), 1)
            assert annotation["bbox"] == [x0, y0, x1 - x0, y1 - y0] and annotation["iscrowd"] == 0
            assert annotation["area"] == np.count_nonzero(truth)
            polygons = annotation["segmentation"]
            assert polygons and all(len(p) >= 6 for p in polygons)
            drawn = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, SIZE, SIZE))).astype(bool)
            assert np.count_nonzero(drawn & truth) / np.count_nonzero(drawn | truth) > 0.9


def test_a_failure_part_way_leaves_nothing_at_root(tmp_path, monkeypatch):
    real = scenes.render_scene

    def third_fails(seed, index, *args, **kwargs):
        if index == 2:
            raise RuntimeError("disk on fire")
        return real(seed, index, *args, **kwargs)

    monkeypatch.setattr(scenes, "render_scene", third_fails)
    for layout in scenes.SCENE_LAYOUTS:
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_scenes(tmp_path / "scenes", layout, 5, SIZE)
        assert list(tmp_path.iterdir()) == []  # neither root nor the scratch folder
    monkeypatch.setattr(scenes, "render_scene", real)
    write_scenes(tmp_path / "scenes", "csv", 2, SIZE)
    before = files(tmp_path / "scenes")
    monkeypatch.setattr(scenes, "render_scene", third_fails)
    with pytest.raises(RuntimeError):
        write_scenes(tmp_path / "scenes", "coco", 5, SIZE)
    assert files(tmp_path / "scenes") == before  # an earlier set stays whole


def test_bad_layouts_and_classes_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="csv, coco"):
        write_scenes(tmp_path / "scenes", "imagefolder", 2, SIZE)
    with pytest.raises(ValueError, match="unicorn"):
        write_scenes(tmp_path / "scenes", "csv", 2, SIZE, classes=("pug", "unicorn"))
    with pytest.raises(ValueError):
        render_scene(0, 0, SIZE, ("pug", "pug"))
    assert list(tmp_path.iterdir()) == []
