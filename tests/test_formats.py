"""A user's own data: class folders, a CSV manifest and a COCO JSON, read into the same records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from wsss.cli.main import main
from wsss.data.decode import read_trimap, record_truth
from wsss.data.imagefolder import DatasetFormatError
from wsss.data.index import index
from wsss.data.pets import index as oxford_index
from wsss.data.synthetic.layouts import pet_box, write_layout


@pytest.fixture(scope="module")
def source(tmp_path_factory, synthetic_root) -> Path:
    return synthetic_root


@pytest.fixture
def layout(tmp_path, source):
    def make(name: str, **options) -> Path:
        root = tmp_path / name
        write_layout(source, root, name, **options)
        return root
    return make


def _by_id(source) -> dict:
    return {r.image_id: r for r in oxford_index(source).records}


def test_class_folders_read_recursively_with_junk_passed_over(layout, source):
    root = layout("imagefolder")
    cats = root / "Abyssinian"
    (cats / "deeper").mkdir()
    shutil.copyfile(next(cats.glob("*.jpg")), cats / "deeper" / "EXTRA.JPG")  # any case, any depth
    (cats / "._Abyssinian_1.jpg").write_bytes(b"resource fork")
    (cats / ".thumbs").mkdir()
    (cats / ".thumbs" / "x.jpg").write_bytes(b"hidden")
    (cats / "notes.txt").write_text("not an image")
    dataset = index(root, format="imagefolder")
    assert len(dataset.classes) == 37 and dataset.classes == sorted(dataset.classes)
    assert len(dataset.records) == 75 and "Abyssinian__deeper__EXTRA" in {r.image_id for r in dataset.records}
    assert dataset.skipped == ["Abyssinian/notes.txt"] and not dataset.has_truth
    assert {r.split for r in dataset.records} == {"train", "val", "test"}  # a seeded split
    assert all(r.class_name == r.image_path.split("/")[-2] or "deeper" in r.image_path
               for r in dataset.records)
    assert index(root, format="imagefolder").fingerprint() == dataset.fingerprint()  # deterministic


def test_an_empty_class_folder_is_an_error_naming_it(layout):
    root = layout("imagefolder")
    (root / "empty_class").mkdir()
    with pytest.raises(DatasetFormatError, match="class folder .*empty_class holds no images"):
        index(root, format="imagefolder")


def test_csv_with_boxes_masks_and_given_splits(layout, source):
    root = layout("csv")
    text = (root / "labels.csv").read_text().splitlines()
    text[0] += ",split"
    text[1:] = [line + (",test" if i % 4 == 0 else ",") for i, line in enumerate(text[1:])]
    (root / "labels.csv").write_text("\n".join(text) + "\n")
    dataset = index(root, format="csv")
    originals = _by_id(source)
    assert len(dataset.records) == 74 and dataset.has_truth
    given_test = {line.split(",")[0] for i, line in enumerate(text[1:]) if i % 4 == 0}
    assert {f"images/{r.image_id.split('__')[1]}.jpg" for r in dataset.split("test")} == given_test
    for record in dataset.records[:5]:
        trimap = read_trimap(originals[record.image_id.split("__")[1]].trimap_path)
        assert record.box == pet_box(trimap)
        assert np.array_equal(record_truth(record) == 1, trimap != 2)  # binary mask read as a trimap


def test_csv_without_masks_or_boxes(layout):
    root = layout("csv", masks=False)
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join(",".join(line.split(",")[:2]) for line in lines) + "\n")
    dataset = index(root, format="csv")
    assert len(dataset.records) == 74 and not dataset.has_truth
    assert all(r.box is None for r in dataset.records)


def test_bad_csv_rows_are_quarantined_with_file_and_row(layout):
    root = layout("csv")
    lines = (root / "labels.csv").read_text().splitlines()
    lines[1] = "images/not_there.jpg,Abyssinian,,"  # row 2: a missing file
    parts = lines[2].split(",")
    parts[1] = "unicorn"  # row 3: an unknown label
    lines[2] = ",".join(parts)
    parts = lines[3].split(",")
    parts[2] = "0 0 999 999"  # row 4: a box outside the image
    lines[3] = ",".join(parts)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    classes = sorted({line.split(",")[1] for line in lines[4:]})
    dataset = index(root, format="csv", classes=classes)
    reasons = {entry["reason"] for entry in dataset.quarantine.entries}
    assert any(r.startswith("labels.csv row 2: image file missing") and "not_there.jpg" in r for r in reasons)
    assert any(r.startswith("labels.csv row 3: label 'unicorn' is not in data.classes") for r in reasons)
    assert any(r.startswith("labels.csv row 4: box '0 0 999 999' is outside the 64x64 image") for r in reasons)
    assert len(dataset.records) == 71
    (root / "labels.csv").write_text("picture,kind\na.jpg,cat\n")
    with pytest.raises(DatasetFormatError, match="missing column.* image, label"):
        index(root, format="csv")


@pytest.mark.parametrize("rle", [False, True])
def test_coco_with_polygons_or_rle(layout, source, rle):
    root = layout("coco", rle=rle)
    dataset = index(root, format="coco")
    originals = _by_id(source)
    assert len(dataset.records) == 74 and len(dataset.classes) == 37 and dataset.has_truth
    for record in dataset.records[:5]:
        trimap = read_trimap(originals[record.image_id.split("__")[1]].trimap_path)
        truth = record_truth(record) == 1
        assert record.box == pet_box(trimap)
        overlap = (truth & (trimap != 2)).sum() / (truth | (trimap != 2)).sum()
        assert overlap == 1.0 if rle else overlap > 0.8  # RLE exact; polygons lose the outer half pixel


def test_coco_problems_are_quarantined(layout):
    root = layout("coco")
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"].append({**data["annotations"][0], "id": 999, "image_id": 12345})
    data["images"].append({"id": 777, "file_name": "images/gone.jpg", "width": 64, "height": 64})
    data["annotations"].append({**data["annotations"][0], "id": 998, "image_id": 777})
    data["images"].append({**data["images"][0], "id": 778, "file_name": data["images"][0]["file_name"]})
    (root / "annotations.json").write_text(json.dumps(data))
    dataset = index(root, format="coco")
    reasons = " | ".join(e["reason"] for e in dataset.quarantine.entries)
    assert "annotation 999 names image 12345, which the JSON does not list" in reasons
    assert "image file missing" in reasons and "gone.jpg" in reasons
    assert "has no annotation, so no class" in reasons


def test_data_check_reports_each_format(layout, capsys):
    for name in ("imagefolder", "csv", "coco"):
        root = layout(name)
        assert main(["data", "check", "--root", str(root), "--format", name, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["format"] == name and len(report["classes"]) == 37 and report["usable"]
        assert sum(report["splits"].values()) == 74


def test_one_class_data_refuses_the_cam_family_and_says_why(layout, tmp_path):
    from wsss.config import ConfigError, parse_config
    from wsss.train.classifier import resolve_classifier

    root = layout("imagefolder")
    for folder in list(root.iterdir()):
        if folder.name != "Abyssinian":
            shutil.rmtree(folder)
    study = {"data": {"root": str(root), "format": "imagefolder"}, "weights_policy": "random",
             "labelers": [{"name": "gradcam"}, {"name": "ellipse"}]}
    with pytest.raises(ConfigError, match="has 1 class .Abyssinian.*needs a classifier of at least 2"):
        resolve_classifier(parse_config(study))
    assert resolve_classifier(parse_config(study), ["ellipse"]) is None  # no classifier needed


def test_given_boxes_feed_the_box_labelers_without_a_classifier(layout):
    from wsss.data.arrays import decode_records, working_box
    from wsss.labelers.registry import get_labeler_class
    from wsss.masks.scoring import pseudo_eval

    dataset = index(layout("csv"), format="csv")
    records = dataset.records[:6]
    arrays = decode_records(records, 48)
    boxes = np.stack([working_box(record, 48) for record in records])
    batch = {"image": arrays.images, "label": arrays.labels, "given_box": boxes}
    box = get_labeler_class("box")({"box_source": "dataset"})
    assert box.heatmap_ref() is None  # nothing to compute a CAM for: no classifier
    masks = box(batch)["mask"]
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        assert mask[y0:y1, x0:x1].all() and mask.sum() == (x1 - x0) * (y1 - y0)
    scores = {name: pseudo_eval(get_labeler_class(name)({"box_source": "dataset"}), records, 48)["micro"]["dice"]
              for name in ("box", "grabcut")}
    assert scores["box"] > 0.5 and scores["grabcut"] > 0.5
    with pytest.raises(ValueError, match="box_source: dataset but the batch carries no boxes"):
        box({"image": arrays.images})


def test_predict_on_any_folder_of_images_of_any_size(tmp_path, source, capsys):
    import torch
    from PIL import Image

    from wsss.models.checkpoints import export_model
    from wsss.models.segmentation import create_model
    from wsss.models.weights_files import CHECKPOINT_FORMAT

    torch.manual_seed(0)
    model = create_model("unet", "none", width=0.125)
    checkpoint = export_model({"format": CHECKPOINT_FORMAT, "model_name": "unet",
                               "model_options": {"width": 0.125}, "image_size": 32,
                               "model": model.state_dict()}, tmp_path / "model.pt")
    folder = tmp_path / "my photos"
    sizes = {"a": (50, 30), "trip/b": (64, 64), "trip/deeper/c": (33, 80)}
    for name, size in sizes.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.open(next(source.glob("images/*.jpg"))).resize(size).save(folder / f"{name}.jpg")
    (folder / "._a.jpg").write_bytes(b"junk")
    assert main(["predict", "--checkpoint", str(checkpoint), "--images", str(folder),
                 "--out", str(tmp_path / "masks"), "--overlay"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 3 and not summary["failed"]
    for name, (width, height) in sizes.items():
        image_id = name.replace("/", "__")
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{image_id}.png"))
        assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
        assert Image.open(tmp_path / "masks" / "overlays" / f"{image_id}.jpg").size == (width, height)
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x")]) == 2
