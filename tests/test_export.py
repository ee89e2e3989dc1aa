"""``wsss export``: stored masks come back on each image's own pixels in every format, ranked
by agreement between generators; bad requests are refused before anything is written."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import yaml
from PIL import Image

from wsss import storage
from wsss.cli.main import main
from wsss.config import load_config
from wsss.data.prepare import prepare_dataset
from wsss.data.synthetic import synthesize
from wsss.masks.export import export_mask_set, foreground_iou, image_size, score_images
from wsss.masks.plan import labeler_context, study_identities
from wsss.masks.store import MaskSet, MaskSetWriter, set_fingerprint, set_folder_name

WORKING = 48  # the study's working size; the images are 64 px, one is 80 x 56
OWN_SIZES = {0: (80, 56)}  # record position -> (width, height) the image is re-saved at


def exported_mask(position: int) -> np.ndarray:
    """Foreground in the top 6 * position rows (left 40 columns); odd positions carry an ignore
    band of 3 rows below it, which sits inside the other set's foreground."""
    mask = np.zeros((WORKING, WORKING), np.uint8)
    rows = 6 * position
    mask[:rows, :40] = 1
    if position % 2:
        mask[rows:rows + 3, :40] = 255
    return mask


def other_mask(position: int) -> np.ndarray:
    """The second generator: the top 24 rows (left 40 columns) of every image, never unsure."""
    mask = np.zeros((WORKING, WORKING), np.uint8)
    mask[:24, :40] = 1
    return mask


def expected_iou(position: int) -> float:
    """By hand: both are full-width bands of rows, so IoU = shorter band / longer band."""
    return min(6 * position, 24) / max(6 * position, 24)


def write_set(uri: str, masks: dict[str, np.ndarray], manifest: dict) -> MaskSet:
    writer = MaskSetWriter(uri)
    for image_id, mask in masks.items():
        writer.write_mask(image_id, mask)
    return MaskSet(uri, writer.write_manifest({"complete": True, "kind": "masks", **manifest}))


def at_size(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest neighbour by hand (source pixel floor(i * h / H)), independent of the exporter."""
    rows = np.arange(height) * mask.shape[0] // height
    cols = np.arange(width) * mask.shape[1] // width
    return mask[rows][:, cols]


@pytest.fixture
def study(tmp_path):
    """A config with three labelers over 8 synthetic pets; the sets of ``ellipse`` (exported)
    and ``all_foreground`` (compared with) are in the store under this study's identities,
    ``ellipse_wide``'s is not."""
    root = tmp_path / "pets"
    synthesize(root, images=8, size=64, seed=0)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "export", "weights_policy": "random",
        "data": {"root": str(root), "image_size": WORKING},
        "classifier": {"backbone": "resnet18", "weights": "none", "storage": str(tmp_path / "classifier")},
        "labelers": [{"name": "ellipse"}, {"name": "all_foreground"},
                     {"name": "ellipse", "id": "ellipse_wide", "params": {"fraction": 0.9}}],
        "pipeline": {"store": str(tmp_path / "masks")}}))
    config = load_config(path)
    records = sorted(prepare_dataset(config.data).records, key=lambda r: r.image_id)
    for position, (width, height) in OWN_SIZES.items():
        Image.new("RGB", (width, height), (90, 120, 30)).save(records[position].image_path)
    dataset = prepare_dataset(config.data)  # indexed again: the re-saved image is new data
    records = sorted(dataset.records, key=lambda r: r.image_id)
    keys = ["ellipse", "all_foreground"]
    identities = study_identities(config, dataset, labeler_context(config, None), keys)
    sets = {}
    for key, make in (("ellipse", exported_mask), ("all_foreground", other_mask)):
        identity = identities[key][1]
        uri = storage.join(config.pipeline.store, set_folder_name(key, set_fingerprint(identity)))
        sets[key] = write_set(uri, {r.image_id: make(i) for i, r in enumerate(records)},
                              {"labeler_id": key, "fingerprint": set_fingerprint(identity), **identity})
    return {"config": path, "dataset": dataset, "records": records, "sets": sets}


def own_size(record) -> tuple[int, int]:
    with Image.open(record.image_path) as image:
        return image.size


def test_png_folder_through_the_cli_holds_class_values_at_each_image_size(study, tmp_path, capsys):
    out = tmp_path / "review"
    assert main(["export", "--config", str(study["config"]), "--labeler", "ellipse",
                 "--format", "png", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert f"wrote 8 masks of ellipse (png, all) to {out}" in printed.out
    assert "'ellipse_wide'" in printed.err  # its set is missing: left out of the confidence
    for position, record in enumerate(study["records"]):
        width, height = own_size(record)
        stored = at_size(exported_mask(position), width, height)
        with Image.open(out / f"{record.image_id}.png") as image:
            assert image.mode == "P" and image.size == (width, height)
            values = np.asarray(image)
        expected = np.where(stored == 1, record.label + 1, np.where(stored == 255, 255, 0))
        assert np.array_equal(values, expected)
    assert own_size(study["records"][0]) == (80, 56)
    legend = json.loads((out / "classes.json").read_text())["values"]
    assert legend["0"] == "background" and legend["255"].startswith("ignore")
    assert [legend[str(i + 1)] for i in range(len(study["dataset"].classes))] == study["dataset"].classes


def test_sort_by_confidence_puts_the_least_agreed_first_with_the_mean_iou(study, tmp_path, capsys):
    out = tmp_path / "review"
    assert main(["export", "--config", str(study["config"]), "--labeler", "ellipse", "--format", "png",
                 "--out", str(out), "--sort", "confidence"]) == 0
    rows = list(csv.DictReader((out / "confidence.csv").open()))
    confidence = [float(row["confidence"]) for row in rows]
    assert confidence == sorted(confidence) and confidence[0] == 0.0
    by_id = {row["image_id"]: float(row["confidence"]) for row in rows}
    records = study["records"]
    assert by_id[records[1].image_id] == pytest.approx(0.25)  # 6 of 24 rows; its ignore band is background
    assert by_id[records[5].image_id] == pytest.approx(0.8)  # 24 of 30 rows
    assert by_id == pytest.approx({r.image_id: expected_iou(i) for i, r in enumerate(records)}, abs=1e-6)
    assert [row["image_id"] for row in rows][:3] == [records[i].image_id for i in (0, 1, 2)]
    assert set(rows[0]) >= {"iou_all_foreground", "ignored_fraction"}


def test_coco_round_trip_with_ignore_as_a_crowd_region(study, tmp_path):
    from pycocotools import mask as coco_mask

    out = tmp_path / "masks.json"
    sets, records = study["sets"], study["records"]
    result = export_mask_set(sets["ellipse"], study["dataset"], records, "coco", str(out),
                             others={"all_foreground": sets["all_foreground"]}, sort="confidence")
    document = json.loads(out.read_text())
    assert result.images == len(document["images"]) == 8  # the empty mask's image is listed too
    assert [c["name"] for c in document["categories"]] == study["dataset"].classes
    assert [image["confidence"] for image in document["images"]] == pytest.approx(
        sorted(expected_iou(i) for i in range(8)), abs=1e-6)
    position = {r.image_id: i for i, r in enumerate(records)}
    for image in document["images"]:
        i, record = position[image["wsss_image_id"]], records[position[image["wsss_image_id"]]]
        assert (image["width"], image["height"]) == own_size(record)
        assert image["file_name"] == f"images/{record.image_id}.jpg"
        stored = at_size(exported_mask(i), image["width"], image["height"])
        mine = [a for a in document["annotations"] if a["image_id"] == image["id"]]
        for crowd, region in ((0, stored == 1), (1, stored == 255)):
            found = [a for a in mine if a["iscrowd"] == crowd]
            assert len(found) == int(region.any())
            for annotation in found:
                rle = annotation["segmentation"]
                assert isinstance(rle["counts"], str) and annotation["category_id"] == record.label + 1
                assert np.array_equal(coco_mask.decode(rle).astype(bool), region)
                compressed = {"size": rle["size"], "counts": rle["counts"].encode()}
                assert annotation["bbox"] == coco_mask.toBbox(compressed).tolist()
                assert annotation["area"] == int(coco_mask.area(compressed))


def test_labelstudio_round_trip_through_its_own_decoder(study, tmp_path):
    from label_studio_converter.brush import decode_rle

    out = tmp_path / "tasks.json"
    records = study["records"]
    result = export_mask_set(study["sets"]["ellipse"], study["dataset"], records, "labelstudio", str(out))
    tasks = json.loads(out.read_text())
    assert result.images == len(tasks) == 8 and result.agreement_with == []
    for i, (task, record) in enumerate(zip(tasks, records)):  # default order: image id
        width, height = own_size(record)
        stored = at_size(exported_mask(i), width, height)
        assert task["data"]["image"] == f"/data/local-files/?d=images/{record.image_id}.jpg"
        prediction = task["predictions"][0]
        assert prediction["score"] == pytest.approx(1 - np.mean(exported_mask(i) == 255), abs=1e-6)
        regions = {r["value"]["brushlabels"][0]: r for r in prediction["result"]}
        for label, region in ((record.class_name, stored == 1), ("ignore", stored == 255)):
            assert (label in regions) == bool(region.any())
            if label in regions:
                brush = regions[label]
                assert (brush["original_width"], brush["original_height"]) == (width, height)
                assert brush["type"] == "brushlabels" and brush["value"]["format"] == "rle"
                painted = decode_rle(brush["value"]["rle"]).reshape(height, width, 4)
                assert np.array_equal(painted[..., 3] > 0, region)
    config = ElementTree.parse(tmp_path / "tasks.labeling-config.xml").getroot()
    labels = [label.get("value") for label in config.iter("Label")]
    assert labels == [*study["dataset"].classes, "ignore"]


def test_confidence_without_other_sets_is_one_minus_the_ignored_share(tmp_path, synthetic_root):
    from wsss.data.pets import index

    records = sorted(index(synthetic_root).records, key=lambda r: r.image_id)[:3]
    masks = {r.image_id: exported_mask(i) for i, r in enumerate(records)}
    mask_set = write_set(str(tmp_path / "store" / "mine-0"), masks, {"labeler_id": "mine"})
    scored = score_images(mask_set, records)
    assert [s.confidence for s in scored] == pytest.approx([1.0, 1 - 3 * 40 / 48**2, 1.0])
    assert foreground_iou(exported_mask(0), exported_mask(0)) == 1.0  # both empty: they agree


def test_image_size_reads_the_header_with_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: decoding (and browsers) swap width and height
    Image.new("RGB", (30, 20)).save(tmp_path / "rotated.jpg", exif=exif)
    Image.new("RGB", (30, 20)).save(tmp_path / "plain.png")
    assert image_size(str(tmp_path / "rotated.jpg")) == (20, 30)
    assert image_size(str(tmp_path / "plain.png")) == (30, 20)


def test_bad_requests_are_refused_naming_what_is_wrong(study, tmp_path, capsys):
    base = ["export", "--config", str(study["config"]), "--out", str(tmp_path / "out")]
    assert main([*base, "--labeler", "nope", "--format", "png"]) == 2
    assert "'nope'" in capsys.readouterr().err
    assert main([*base, "--labeler", "ellipse", "--format", "png", "--threshold", "0.5"]) == 2
    error = capsys.readouterr().err
    assert "--threshold" in error and "'ellipse'" in error
    assert main([*base, "--labeler", "ellipse_wide", "--format", "png"]) == 2  # its set is not made
    assert "wsss pseudo --config C --labeler ellipse_wide" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([*base, "--labeler", "ellipse", "--format", "tiff"])
    assert exited.value.code == 2 and "'tiff'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="'tiff'"):
        export_mask_set(study["sets"]["ellipse"], study["dataset"], study["records"], "tiff", "x")
    assert not (tmp_path / "out").exists()
