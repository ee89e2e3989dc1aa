"""The review loop without a server: ``wsss export --select`` chooses the images worth a review
and records the choice, ``wsss import`` brings reviewed masks back as a mask set with its own
identity (every bad task named, the rest imported), and training lays them over pseudo-masks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from test_export import at_size, exported_mask, own_size, study  # noqa: F401  (study: a fixture)

from wsss.cli.main import main
from wsss.config import load_config
from wsss.masks.export import export_mask_set, score_images, select_images
from wsss.masks.files import read_manifest
from wsss.masks.reviewed import import_reviewed
from wsss.masks.store import MaskSet
from wsss.train.labels import MaskSetSource, ReviewedSource

WORKING = 48


def back_at_working_size(position: int, record) -> np.ndarray:
    """The stored mask taken to the image's own size and back, by hand (nearest neighbour)."""
    width, height = own_size(record)
    return at_size(at_size(exported_mask(position), width, height), WORKING, WORKING)


def as_annotations(tasks: list[dict]) -> list[dict]:
    """What a Label Studio export looks like after a reviewer accepted each prediction."""
    reviewed = []
    for number, task in enumerate(tasks, start=1):
        result = task["predictions"][0]["result"]
        reviewed.append({"id": number, "data": task["data"],
                         "annotations": [{"id": 100 + number, "result": result, "was_cancelled": False}]})
    return reviewed


def run_import(study, source, *extra) -> int:  # noqa: F811
    return main(["import", "--config", str(study["config"]), "--from", str(source), *extra])


def imported_set(study, source) -> MaskSet:  # noqa: F811
    config = load_config(study["config"])
    return import_reviewed(config.pipeline.store, str(source), study["dataset"], WORKING).mask_set


@pytest.mark.parametrize("format", ["png", "coco", "labelstudio"])
def test_an_export_comes_back_as_the_same_masks_at_the_working_size(study, tmp_path, format, capsys):  # noqa: F811
    out = tmp_path / ("review" if format == "png" else "review.json")
    export_mask_set(study["sets"]["ellipse"], study["dataset"], study["records"], format, str(out))
    if format == "labelstudio":
        out.write_text(json.dumps(as_annotations(json.loads(out.read_text()))))
    assert run_import(study, out) == 0
    printed = capsys.readouterr()
    mask_set = imported_set(study, out)
    records = study["records"]
    # position 0's mask is empty: COCO lists it without annotations (not reviewed), Label
    # Studio has an empty annotation (named), a PNG of zeros is a reviewed empty mask
    expected = records if format == "png" else records[1:]
    assert sorted(mask_set.ids()) == sorted(mask_set.manifest.images) == sorted(r.image_id for r in expected)
    for position, record in enumerate(records):
        if record in expected:
            assert np.array_equal(mask_set.read(record.image_id), back_at_working_size(position, record))
    if format == "labelstudio":
        assert mask_set.manifest.problems == ["task 1: empty annotation (no painted region)"]
        assert "left out: task 1: empty annotation" in printed.err
    assert f"reviewed-{out.stem}" in printed.out and mask_set.manifest.image_size == WORKING


def test_each_bad_task_is_named_and_the_rest_imported(study, tmp_path, capsys):  # noqa: F811
    exported = tmp_path / "tasks.json"
    records = study["records"]
    export_mask_set(study["sets"]["ellipse"], study["dataset"], records[1:4], "labelstudio", str(exported))
    tasks = as_annotations(json.loads(exported.read_text()))
    good = tasks[0]

    def variant(task_id: int, change) -> dict:
        task = json.loads(json.dumps(good))
        task["id"] = task_id
        change(task)
        return task

    region = lambda task: task["annotations"][0]["result"][0]  # noqa: E731
    tasks += [
        variant(11, lambda t: t["data"].update(image_id="no_such_image", image="/x/no_such_image.jpg")),
        variant(12, lambda t: region(t).update(original_width=999)),
        variant(13, lambda t: region(t)["value"].update(rle=[1, 2, 3])),
        variant(14, lambda t: region(t)["value"].update(brushlabels=["zebra"])),
        variant(15, lambda t: t["annotations"][0].update(result=[])),
        variant(16, lambda t: t["annotations"][0].update(was_cancelled=True)),  # not reviewed
        variant(17, lambda t: t.update(annotations=[])),  # not reviewed
    ]
    exported.write_text(json.dumps(tasks))
    assert run_import(study, exported) == 0
    err = capsys.readouterr().err
    manifest = imported_set(study, exported).manifest
    problems = manifest.problems
    assert [line.split(":")[0] for line in problems] == [f"task {n}" for n in (11, 12, 13, 14, 15)]
    assert "'no_such_image' is not in the dataset" in problems[0]
    assert "999x" in problems[1] and "malformed" in problems[2] and "'zebra'" in problems[3]
    assert "empty annotation" in problems[4]
    assert manifest.images == sorted(r.image_id for r in records[1:4])
    assert manifest.not_reviewed == 2
    assert "3 reviewed masks" in err and "5 left out, 2 not reviewed" in err
    for line in problems:
        assert f"left out: {line}" in err


def test_the_same_file_reuses_its_set_and_a_changed_one_makes_another(study, tmp_path):  # noqa: F811
    out = tmp_path / "review"
    export_mask_set(study["sets"]["ellipse"], study["dataset"], study["records"], "png", str(out))
    config = load_config(study["config"])
    first = import_reviewed(config.pipeline.store, str(out), study["dataset"], WORKING)
    again = import_reviewed(config.pipeline.store, str(out), study["dataset"], WORKING)
    assert not first.reused and again.reused and again.mask_set.uri == first.mask_set.uri
    record = study["records"][3]
    values = np.asarray(Image.open(out / f"{record.image_id}.png")).copy()
    values[:4] = 0
    Image.fromarray(values).save(out / f"{record.image_id}.png")
    changed = import_reviewed(config.pipeline.store, str(out), study["dataset"], WORKING)
    assert not changed.reused and changed.mask_set.uri != first.mask_set.uri
    assert not np.array_equal(changed.mask_set.read(record.image_id), first.mask_set.read(record.image_id))
    assert first.mask_set.read(record.image_id).any()  # the first set still holds what it held
    resized = import_reviewed(config.pipeline.store, str(out), study["dataset"], 32)
    assert resized.mask_set.uri not in (changed.mask_set.uri, first.mask_set.uri)
    assert resized.mask_set.read(record.image_id).shape == (32, 32)


def test_polygons_from_label_studio_and_coco_are_filled(study, tmp_path):  # noqa: F811
    record = study["records"][2]
    width, height = own_size(record)
    square = [[25, 25], [75, 25], [75, 75], [25, 75]]  # percent of the image
    tasks = [{"id": 1, "data": {"image": f"/data/local-files/?d=images/{record.image_id}.jpg"},
              "annotations": [{"id": 5, "result": [{
                  "type": "polygonlabels", "original_width": width, "original_height": height,
                  "value": {"points": square, "polygonlabels": [record.class_name]}}]}]}]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    pixels = [[x * width / 100, y * height / 100] for x, y in square]
    coco = {"images": [{"id": 7, "file_name": f"images/{record.image_id}.jpg", "width": width, "height": height}],
            "categories": [{"id": 1, "name": "pet"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0,
                             "segmentation": [sum(pixels, [])]}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    ideal = np.zeros((WORKING, WORKING), bool)
    ideal[WORKING // 4: 3 * WORKING // 4, WORKING // 4: 3 * WORKING // 4] = True
    for name in ("tasks.json", "coco.json"):
        mask = imported_set(study, tmp_path / name).read(record.image_id)
        assert set(np.unique(mask)) <= {0, 1}
        iou = np.logical_and(mask == 1, ideal).sum() / np.logical_or(mask == 1, ideal).sum()
        assert iou > 0.85, name


def test_bad_files_are_refused_naming_them(study, tmp_path, capsys):  # noqa: F811
    (tmp_path / "notes.json").write_text("{not json")
    assert run_import(study, tmp_path / "notes.json") == 2
    assert "notes.json: not JSON" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    assert run_import(study, tmp_path / "other.json") == 2
    assert "neither a Label Studio export" in capsys.readouterr().err
    assert run_import(study, tmp_path / "absent") == 2
    assert "absent: no such file or folder" in capsys.readouterr().err
    (tmp_path / "unreviewed.json").write_text(json.dumps([{"id": 1, "data": {"image_id": "x"}}]))
    assert run_import(study, tmp_path / "unreviewed.json") == 2
    assert "no reviewed mask to import" in capsys.readouterr().err


def test_reviewed_images_train_on_their_reviewed_mask_whole(study, tmp_path):  # noqa: F811
    records = study["records"]
    out = tmp_path / "review"
    export_mask_set(study["sets"]["all_foreground"], study["dataset"], records[:3], "png", str(out))
    first = out / f"{records[0].image_id}.png"
    values = np.asarray(Image.open(first)).copy()
    values[:20] = 255  # a reviewer's "unsure" band stays unsure: no pseudo pixel fills it
    Image.fromarray(values).save(first)
    reviewed = imported_set(study, out)
    stored = reviewed.read(records[0].image_id)
    assert (stored == 255).any() and (stored == 1).any()
    base = MaskSetSource(study["sets"]["ellipse"], "ellipse")
    source = ReviewedSource(reviewed, base, weight=2.0)
    ids = [r.image_id for r in records]
    targets, pseudo = source.targets(ids, WORKING), base.targets(ids, WORKING)
    assert np.array_equal(targets[0], stored)
    for row in (1, 2):
        assert np.array_equal(targets[row], reviewed.read(ids[row]))
    assert np.array_equal(targets[3:], pseudo[3:])
    assert not np.array_equal(targets[1], pseudo[1])
    weights = source.weights(ids, WORKING)
    assert (weights[:3] == 255).all() and (weights[3:] == 128).all()
    assert ReviewedSource(reviewed, base).weights(ids, WORKING) is None
    assert source.version != ReviewedSource(imported_set(study, out), base, 1.0).version


def test_select_writes_only_the_chosen_images_and_records_the_choice(study, tmp_path, capsys):  # noqa: F811
    base = ["export", "--config", str(study["config"]), "--labeler", "ellipse", "--format", "png"]
    assert main([*base, "--out", str(tmp_path / "worst"), "--select", "3"]) == 0
    assert "the 3 chosen by confidence" in capsys.readouterr().out
    record = json.loads((tmp_path / "worst" / "selection.json").read_text())
    scored = score_images(study["sets"]["ellipse"], study["records"],
                          {"all_foreground": study["sets"]["all_foreground"]})
    least = sorted(scored, key=lambda s: (s.confidence, s.record.image_id))[:3]
    assert [i["image_id"] for i in record["images"]] == [s.record.image_id for s in least]
    assert record["by"] == "confidence" and record["candidates"] == 8 and record["seed"] is None
    written = sorted(p.stem for p in (tmp_path / "worst").glob("*.png"))
    assert written == sorted(s.record.image_id for s in least)

    assert main([*base, "--out", str(tmp_path / "most"), "--select", "25%", "--by", "disagreement"]) == 0
    chosen = json.loads((tmp_path / "most" / "selection.json").read_text())["images"]
    assert len(chosen) == 2 and chosen[0]["disagreement"] >= chosen[1]["disagreement"]
    assert max(1 - s.agreement["all_foreground"] for s in scored) == pytest.approx(chosen[0]["disagreement"])

    draws = []
    for seed, folder in ((1, "a"), (1, "b"), (2, "c")):
        assert main([*base, "--out", str(tmp_path / folder), "--select", "4", "--by", "random",
                     "--seed", str(seed)]) == 0
        draws.append([i["image_id"] for i in json.loads((tmp_path / folder / "selection.json").read_text())["images"]])
    assert draws[0] == draws[1] != draws[2] and len(set(draws[0])) == 4
    imported = imported_set(study, tmp_path / "a")
    assert imported.manifest.selection.by == "random" and imported.manifest.selection.seed == 1


def test_select_refuses_what_it_cannot_do_before_writing(study, tmp_path, capsys):  # noqa: F811
    base = ["export", "--config", str(study["config"]), "--labeler", "ellipse", "--format", "png",
            "--out", str(tmp_path / "out")]
    assert main([*base, "--select", "many"]) == 2
    assert "--select 'many'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    scored = score_images(study["sets"]["ellipse"], study["records"])
    with pytest.raises(ValueError, match="--by disagreement"):
        select_images(scored, 2, "disagreement")


def test_a_folder_moved_elsewhere_is_the_same_review(study, tmp_path):  # noqa: F811
    out = tmp_path / "review"
    export_mask_set(study["sets"]["ellipse"], study["dataset"], study["records"], "png", str(out))
    first = imported_set(study, out)
    shutil.copytree(out, tmp_path / "copy")
    assert read_manifest(imported_set(study, tmp_path / "copy").uri)["fingerprint"] == first.manifest.fingerprint


def test_balanced_weight_gives_the_reviewed_images_half_the_loss(study, tmp_path):  # noqa: F811
    from wsss.config import ConfigError
    from wsss.train.labels import GroundTruthSource, make_schedule
    from wsss.train.study_labels import reviewed_weight, with_reviewed

    ids = [f"image{i}" for i in range(10)]
    assert reviewed_weight("balanced", {"image1", "image2", "other"}, ids) == 4.0  # 8 others / 2
    assert reviewed_weight("balanced", set(ids), ids) == 1.0 and reviewed_weight(3.0, set(), ids) == 3.0
    assert reviewed_weight("balanced", {"other"}, ids) == 1.0  # none of them trains
    out = tmp_path / "review"
    export_mask_set(study["sets"]["ellipse"], study["dataset"], study["records"][:2], "png", str(out))
    config = load_config(study["config"]).model_copy(deep=True)
    config.train.reviewed, config.train.reviewed_weight = str(out), "balanced"
    train_ids = [r.image_id for r in study["records"]]
    schedule = with_reviewed(config, make_schedule([(1, MaskSetSource(study["sets"]["ellipse"], "ellipse"))]),
                             study["dataset"], train_ids)
    assert schedule.sources[0].weight == 3.0  # 6 pseudo-masks / 2 reviewed
    assert schedule.sources[0].name == "ellipse+reviewed-review"
    with pytest.raises(ConfigError, match="ground truth already"):
        with_reviewed(config, make_schedule([(1, GroundTruthSource({}))]), study["dataset"], train_ids)
