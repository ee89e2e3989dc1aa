"""The PASCAL VOC layout (``data.format: voc``): lists, labels from masks, CVAT's RGB masks, quarantine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.cli.main import main
from wsss.data.decode import record_class_truth, record_truth
from wsss.data.index import index
from wsss.data.records import DatasetMissingError
from wsss.data.synthetic.scenes import SCENE_CLASSES, render_scene, write_scenes
from wsss.data.voc import VOC_CLASSES, read_labelmap
from wsss.formats.png import voc_palette
from wsss.storage import CACHE_ENV

SIZE, COUNT, SEED = 48, 12, 0
NAMES = sorted(SCENE_CLASSES)  # the on-disk numbering of the scenes


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # truths the reader writes stay here


@pytest.fixture(scope="module")
def scene_tree(tmp_path_factory) -> Path:
    """12 scenes at 48 px in the VOC layout; treat as read-only (``tree`` gives a copy)."""
    root = tmp_path_factory.mktemp("voc") / "scenes"
    write_scenes(root, "voc", COUNT, SIZE, SEED)
    return root


@pytest.fixture
def tree(scene_tree, tmp_path) -> Path:
    copy = tmp_path / "scenes"
    shutil.copytree(scene_tree, copy)
    return copy


def written_class_map(image_id: str) -> np.ndarray:
    """What the writer drew for ``scene_000n``, in the on-disk numbering (sorted names)."""
    _, class_map, _ = render_scene(SEED, int(image_id.split("_")[1]) - 1, SIZE)
    lut = np.array([0] + [NAMES.index(name) + 1 for name in SCENE_CLASSES], np.uint8)
    return lut[class_map]


def listed(root: Path, split: str) -> list[str]:
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def test_the_writer_makes_a_voc_tree_of_palette_masks(scene_tree):
    assert sorted(p.name for p in (scene_tree / "JPEGImages").iterdir())[0] == "scene_0001.jpg"
    with Image.open(scene_tree / "SegmentationClass" / "scene_0001.png") as mask:
        assert mask.mode == "P" and mask.getpalette()[:6] == voc_palette()[:6]
        assert np.array_equal(np.asarray(mask), written_class_map("scene_0001"))
    assert sorted(listed(scene_tree, "train") + listed(scene_tree, "val")) == [f"scene_{n:04d}" for n in
                                                                               range(1, COUNT + 1)]
    assert [name for name, _ in read_labelmap(scene_tree / "labelmap.txt")] == ["background", *NAMES]


def test_semantic_records_take_their_labels_and_truth_from_the_masks(scene_tree):
    dataset = index(scene_tree, format="voc", task="semantic")
    assert dataset.classes == NAMES and len(dataset.records) == COUNT and not dataset.quarantine
    for record in dataset.records:
        truth = written_class_map(record.image_id)
        counts = np.bincount(truth.ravel(), minlength=len(NAMES) + 1)
        present = [k for k in np.argsort(-counts, kind="stable") if k and counts[k]]
        assert record.labels == tuple(k - 1 for k in present)  # every class present, largest first
        assert record.class_name == NAMES[present[0] - 1] and record.truth_format == "classes"
        assert np.array_equal(record_class_truth(record), truth)
    # the splits the lists give: val as listed, test drawn from train.txt (no test.txt)
    assert {r.image_id for r in dataset.split("val")} == set(listed(scene_tree, "val"))
    drawn = {r.image_id for r in dataset.split("train", "test")}
    assert drawn == set(listed(scene_tree, "train")) and dataset.split("test")


def test_binary_records_carry_their_largest_class_and_any_class_as_foreground(scene_tree):
    dataset = index(scene_tree, format="voc")
    for record in dataset.records:
        truth = written_class_map(record.image_id)
        counts = np.bincount(truth.ravel(), minlength=len(NAMES) + 1)
        assert record.labels == () and record.label == int(np.argmax(counts[1:]))
        assert np.array_equal(record_truth(record), np.where(truth > 0, 1, 2))


def test_given_test_lists_and_missing_lists(tree):
    sets = tree / "ImageSets" / "Segmentation"
    train = listed(tree, "train")
    (sets / "train.txt").write_text("\n".join(train[2:]) + "\n")
    (sets / "test.txt").write_text("\n".join(train[:2]) + "\n")
    dataset = index(tree, format="voc")
    assert sorted(r.image_id for r in dataset.split("test")) == sorted(train[:2])
    assert sorted(r.image_id for r in dataset.split("train")) == sorted(train[2:])
    (sets / "trainval.txt").write_text("\n".join(train[2:] + listed(tree, "val")) + "\n")
    for name in ("train.txt", "val.txt"):
        (sets / name).unlink()
    dataset = index(tree, format="voc", val_fraction=0.25)
    assert sorted(r.image_id for r in dataset.split("test")) == sorted(train[:2])  # still given
    assert len(dataset.split("val")) == 2 and len(dataset.split("train")) == COUNT - 4  # drawn
    shutil.rmtree(tree / "ImageSets")
    dataset = index(tree, format="voc")  # every image of JPEGImages, every split drawn
    assert len(dataset.records) == COUNT and all(dataset.split(name) for name in ("train", "val", "test"))


def test_a_cvat_export_of_rgb_masks_reads_the_same_classes(scene_tree, tree):
    colours = {"background": (0, 0, 0), **{name: (40 * k, 250 - 30 * k, 7 * k) for k, name in
                                            enumerate(NAMES, start=1)}}
    (tree / "labelmap.txt").write_text("# label:color_rgb:parts:actions\n"
                                       + "".join(f"{n}:{','.join(map(str, c))}::\n" for n, c in colours.items()))
    table = np.array([colours[name] for name in ["background", *NAMES]], np.uint8)
    for path in sorted((tree / "SegmentationClass").iterdir()):
        rgb = table[np.asarray(Image.open(path))]
        rgb[0, 0] = (224, 224, 192)  # VOC's void colour
        Image.fromarray(rgb, mode="RGB").save(path)
    palette, cvat = (index(root, format="voc", task="semantic") for root in (scene_tree, tree))
    assert cvat.classes == NAMES and not cvat.quarantine
    for a, b in zip(palette.records, cvat.records):
        assert (a.image_id, a.labels, a.split) == (b.image_id, b.labels, b.split)
        expected = written_class_map(a.image_id)
        expected[0, 0] = 255
        assert np.array_equal(record_class_truth(b), expected)
    (tree / "labelmap.txt").unlink()  # without one: VOC's classes and colours
    voc = index(tree, format="voc", task="semantic")
    assert voc.classes == list(VOC_CLASSES) and len(voc.quarantine) == COUNT
    assert "colours [" in voc.quarantine.entries[0]["reason"]


def test_bad_files_are_quarantined_naming_the_file_and_the_line(tree):
    sets, masks = tree / "ImageSets" / "Segmentation", tree / "SegmentationClass"
    train = listed(tree, "train")
    gone, truncated, small, odd, unlabelled, twice = train[:6]
    (tree / "JPEGImages" / f"{gone}.jpg").unlink()
    data = (masks / f"{truncated}.png").read_bytes()
    (masks / f"{truncated}.png").write_bytes(data[:len(data) // 2])
    Image.open(masks / f"{small}.png").crop((0, 0, SIZE, SIZE - 8)).save(masks / f"{small}.png")
    values = np.asarray(Image.open(masks / f"{odd}.png")).copy()
    values[0, :2] = (9, 200)
    Image.fromarray(values, mode="L").save(masks / f"{odd}.png")
    (masks / f"{unlabelled}.png").unlink()
    with open(sets / "val.txt", "a") as handle:
        handle.write(f"{twice}\nghost\n")
    val_lines = len(listed(tree, "val"))
    dataset = index(tree, format="voc", task="semantic")
    reasons = {e["image_id"]: e["reason"] for e in dataset.quarantine.entries}
    train_txt = Path("ImageSets") / "Segmentation" / "train.txt"
    assert reasons[gone].startswith(f"{train_txt} line {train.index(gone) + 1}: image file missing")
    assert f"{gone}.jpg" in reasons[gone]
    assert str(Path("ImageSets") / "Segmentation" / "val.txt") + f" line {val_lines}" in reasons["ghost"]
    assert str(masks / f"{truncated}.png") in reasons[truncated] and "unreadable" in reasons[truncated]
    assert f"is {SIZE}x{SIZE - 8}, its image" in reasons[small] and f"{small}.png" in reasons[small]
    assert "values [9, 200] outside" in reasons[odd] and f"{odd}.png" in reasons[odd]
    assert "no labels" in reasons[unlabelled] and f"{unlabelled}.png" in reasons[unlabelled]
    assert "listed more than once" in reasons[twice] and "val.txt" in reasons[twice]
    assert len(dataset.records) == COUNT - 6 and not {r.image_id for r in dataset.records} & set(reasons)


def test_a_missing_tree_says_what_to_fetch_and_where(tmp_path, tree):
    with pytest.raises(DatasetMissingError, match="VOCtrainval_11-May-2012.tar"):
        index(tmp_path / "nowhere", format="voc")
    shutil.rmtree(tree / "SegmentationClass")
    with pytest.raises(DatasetMissingError, match="labels are read from its masks"):
        index(tree, format="voc")


def test_data_check_reports_a_voc_root(scene_tree, capsys):
    assert main(["data", "check", "--root", str(scene_tree), "--format", "voc", "--task", "semantic"]) == 0
    out = capsys.readouterr().out
    assert "(voc, semantic" in out and "quarantined: 0" in out and "verdict: usable" in out
    assert f"classes: {len(NAMES)} (" in out
    assert main(["data", "check", "--root", str(scene_tree), "--format", "voc", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(report["splits"].values()) == COUNT and report["splits"]["val"] == len(listed(scene_tree, "val"))


def test_a_study_config_writes_and_reads_synthetic_pets_as_voc(tmp_path):
    from wsss.config import parse_config
    from wsss.data.decode import read_trimap
    from wsss.data.prepare import prepare_dataset

    root = tmp_path / "pets-voc"
    data = parse_config({"data": {"root": str(root), "format": "voc",
                                  "synthetic": {"images": 12, "size": 48}}}).data
    dataset = prepare_dataset(data)
    assert (root / "JPEGImages").is_dir() and len(dataset.records) == 12 and not dataset.quarantine
    for record in dataset.records:
        values = np.asarray(Image.open(root / "SegmentationClass" / f"{record.image_id}.png"))
        assert set(np.unique(values).tolist()) <= {0, 255, record.label + 1}
        assert record.class_name == record.image_id.rsplit("_", 1)[0]  # the breed, from the mask
        assert np.array_equal(read_trimap(record.trimap_path), np.select([values == 0, values == 255], [2, 3], 1))
