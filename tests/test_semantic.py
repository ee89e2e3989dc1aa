"""Several classes per image end to end: scenes -> multi-label classifier (Ray Train) -> a CAM
per present class -> class-indexed mask sets, and the config refusing what cannot run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsss.config import ConfigError, parse_config
from wsss.data.index import index
from wsss.data.synthetic.scenes import write_scenes
from wsss.labelers.base import LabelerContext, ThresholdParams, class_map
from wsss.labelers.registry import get_labeler_class


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes") / "csv"
    write_scenes(root, "csv", 44, 48, seed=1)
    return root


def study(root: Path, work: Path, labelers: list[dict], **data) -> object:
    return parse_config({
        "name": "scenes", "weights_policy": "random",
        "data": {"root": str(root), "format": "csv", "task": "semantic", "image_size": 48, **data},
        "classifier": {"backbone": "resnet18", "weights": "none", "epochs": 2, "batch_size": 8,
                       "eval_batch_size": 16, "image_size": 48, "lr": 1e-3,
                       "scaling": {"num_workers": 1}, "storage": str(work / "classifier")},
        "labelers": labelers,
        "pipeline": {"store": str(work / "masks")},
        "tracking": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                     "artifact_location": str(work / "artifacts"), "experiment": "scenes"},
    })


def test_generators_without_class_masks_are_refused_naming_the_ones_that_work(scenes_root, tmp_path):
    import re

    from wsss.labelers.registry import list_labelers

    able = [name for name in list_labelers() if get_labeler_class(name).per_class]
    assert {"box", "cam", "crf", "grabcut", "mix", "pamr", "agree"} <= set(able) and "sam2_center" not in able
    with pytest.raises(ConfigError, match=r"labeler 'sam2_center' \(sam2_center\) makes one-class masks only; "
                                          r"with data.task: semantic use " + re.escape(", ".join(able))):
        study(scenes_root, tmp_path, [{"name": "gradcam"}, {"name": "sam2_center"}])
    with pytest.raises(ConfigError, match="data.synthetic.scenes writes a csv, coco or voc dataset"):
        parse_config({"data": {"format": "oxford-pets", "synthetic": {"scenes": True}}})


@pytest.mark.parametrize("format", ["png", "coco", "labelstudio"])
def test_reviewed_class_maps_come_back_with_each_regions_class(scenes_root, tmp_path, format):
    """A class-map set exported for review and imported back: each pixel keeps its class
    (PNG values, COCO categories and Label Studio labels name the classes), ignore stays ignore."""
    import json

    from wsss.data.decode import record_class_truth
    from wsss.masks.export import export_mask_set
    from wsss.masks.reviewed import import_reviewed
    from wsss.masks.store import MaskSet, MaskSetWriter

    dataset = index(scenes_root, format="csv", task="semantic")
    records = dataset.split("trainval")
    writer = MaskSetWriter(str(tmp_path / "store" / "truth-0"))
    truth = {}
    for number, record in enumerate(records):
        truth[record.image_id] = record_class_truth(record).copy()
        truth[record.image_id][:2, :2 + number % 3] = 255  # a corner a reviewer left unsure
        writer.write_mask(record.image_id, truth[record.image_id])
    manifest = writer.write_manifest({"labeler_id": "truth", "kind": "masks", "complete": True})
    out = tmp_path / ("review" if format == "png" else "review.json")
    export_mask_set(MaskSet(writer.uri, manifest), dataset, records, format, str(out))
    if format == "labelstudio":  # a reviewer accepted every prediction
        tasks = json.loads(out.read_text())
        out.write_text(json.dumps([{"id": n, "data": t["data"], "annotations": [
            {"id": 100 + n, "result": t["predictions"][0]["result"], "was_cancelled": False}]}
            for n, t in enumerate(tasks, start=1)]))
    result = import_reviewed(str(tmp_path / "store"), str(out), dataset, 48)
    assert not result.problems and len(result.imported) == len(records)
    several = 0
    for record in records:
        assert np.array_equal(result.mask_set.read(record.image_id), truth[record.image_id]), record.image_id
        several += len(set(np.unique(truth[record.image_id]).tolist()) - {0, 255}) > 1
    assert several > 0  # scenes of two or three classes came back with each class


def test_class_map_takes_the_strongest_present_class_above_the_background_threshold():
    rng = np.random.default_rng(0)
    heatmaps = rng.random((3, 8, 8)).astype(np.float32)
    labels = [4, 0, 2]
    plain = class_map(heatmaps, labels, ThresholdParams(threshold=0.6))
    for y, x in np.ndindex(8, 8):
        best = int(np.argmax(heatmaps[:, y, x]))
        expected = labels[best] + 1 if heatmaps[best, y, x] >= 0.6 else 0
        assert plain[y, x] == expected
    banded = class_map(heatmaps, labels, ThresholdParams(band=(0.4, 0.8)))
    peak = heatmaps.max(axis=0)
    assert np.array_equal(banded == 255, (peak >= 0.4) & (peak < 0.8))
    assert np.array_equal(banded == 0, peak < 0.4)
    assert np.array_equal(banded[peak >= 0.8], plain[peak >= 0.8])


@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcampp"])
def test_each_cam_method_masks_only_the_classes_an_image_carries(method):
    labeler = get_labeler_class(method)({"threshold": 0.3}, LabelerContext(allow_random_weights=True))
    images = np.random.default_rng(1).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    labels = np.array([[3, -1, -1], [0, 5, -1], [7, 1, 2]])
    with labeler:
        out = labeler({"image": images, "label": labels[:, 0], "labels": labels,
                       "image_id": np.array(["a", "b", "c"])})
    assert out["heatmap"].shape == (3, 3, 48, 48) and out["mask"].shape == (3, 48, 48)
    for mask, present, maps in zip(out["mask"], labels, out["heatmap"]):
        classes = [int(k) for k in present if k >= 0]
        assert set(np.unique(mask).tolist()) <= {0, *(k + 1 for k in classes)}
        assert not maps[len(classes):].any()  # padding rows stay empty
        assert np.array_equal(mask, class_map(maps[:len(classes)], classes, labeler.params))


def test_crf_over_an_images_own_classes_is_the_binary_crf_for_one_class():
    from wsss.labelers.crf import CrfParams, dense_crf

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    images[:, :, 20:] //= 3  # an edge the CRF can snap to
    params = CrfParams(sources=["x"])
    binary = rng.choice([0, 1, 255], (4, 40, 40)).astype(np.uint8)
    one_class = dense_crf(images, binary, params, np.array([[0, -1]] * 4))
    assert np.array_equal(one_class, dense_crf(images, binary, params))  # class 0 -> value 1
    maps = rng.choice([0, 3, 5, 8, 255], (4, 40, 40)).astype(np.uint8)
    labels = np.array([[2, 4], [4, -1], [7, 2], [2, 4]])
    refined = dense_crf(images, maps, params, labels)
    for mask, present in zip(refined, labels):
        assert set(np.unique(mask).tolist()) <= {0, *(int(k) + 1 for k in present if k >= 0)}
    unanimous = np.full((1, 40, 40), 5, np.uint8)  # every pixel says class 4: nothing moves it
    assert (dense_crf(images[:1], unanimous, params, np.array([[2, 4]])) == 5).all()


@pytest.mark.slow
def test_scenes_classifier_cam_per_class_crf_then_training_on_class_maps(ray_local, scenes_root, tmp_path, capsys):
    """One study end to end: multi-label classifier -> a CAM per present class (plain and
    banded) and its CRF -> segmentation on ground-truth and CAM class maps, scored by mIoU."""
    import torch

    import mlflow
    from wsss.masks.pipeline import generate_masks
    from wsss.models.checkpoints import load_segmentation
    from wsss.models.classifier import load_classifier
    from wsss.train.classifier import resolve_classifier, run_classifier
    from wsss.train.segmentation import train_segmentation

    seeds = {"init": "seeds", "threshold": 0.3}
    config = study(scenes_root, tmp_path, [{"name": "gradcam"}, {"name": "cam", "id": "cam-band",
                                                                 "params": {"band": [0.2, 0.6]}},
                                           {"name": "crf", "params": {"sources": ["gradcam"]}},
                                           {"name": "box", "id": "given", "params": {"box_source": "dataset"}},
                                           {"name": "grabcut", "params": seeds},
                                           {"name": "mix", "params": {**seeds, "n_segments": 20}},
                                           {"name": "agree", "params": {"sources": ["gradcam", "grabcut"]}},
                                           {"name": "pamr", "params": {"heatmap": {"method": "gradcam"},
                                                                       "iterations": 3}}])
    summary = run_classifier(config)
    _, meta = load_classifier(summary["checkpoint"])
    assert meta["multi_label"] is True and 0.0 <= meta["test_map"] <= 1.0 and 0.0 <= meta["best_val_map"] <= 1.0
    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    run = mlflow.get_run(summary["run_id"])
    assert {"test_map", "best_val_map", "val_map", "val_f1"} <= set(run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(summary["run_id"], "val_map")
    assert [point.step for point in history] == [1, 2]  # per epoch

    checkpoint = resolve_classifier(config)
    assert checkpoint == str(summary["checkpoint"])  # reused, not trained again
    dataset = index(scenes_root, format="csv", task="semantic")
    result = generate_masks(config, dataset, LabelerContext(classifier_checkpoint=checkpoint,
                                                            allow_random_weights=True))
    records = {r.image_id: r for r in dataset.records}
    several = 0
    for key in ("gradcam", "cam-band", "crf", "given", "grabcut", "mix", "agree", "pamr"):
        assert result.per_set[key]["written"] == len(records)
        mask_set = result.open(key)
        loose = result.open(key, threshold=0.0) if key == "gradcam" else None
        for image_id, record in records.items():
            mask = mask_set.read(image_id)
            allowed = {0, *(k + 1 for k in record.labels)} | ({255} if key in ("cam-band", "agree") else set())
            if key == "given":  # the data's box per class, filled, the smaller box over the larger
                expected = np.zeros((48, 48), np.uint8)
                area = [(b[2] - b[0]) * (b[3] - b[1]) for b in record.class_boxes]
                for i in sorted(range(len(area)), key=lambda i: (-area[i], -i)):  # ties: the first on top
                    x0, y0, x1, y1 = record.class_boxes[i]
                    expected[y0:y1, x0:x1] = record.labels[i] + 1
                _, extras = mask_set.read_with_extras(image_id)
                assert extras["class_boxes"] == {str(k): list(b) for k, b in zip(record.labels, record.class_boxes)}
                assert np.array_equal(mask, expected), image_id
            if key == "agree":  # where it decides, both sources said the same
                both = result.open("gradcam").read(image_id), result.open("grabcut").read(image_id)
                assert np.array_equal(mask[mask != 255], both[0][mask != 255])
                assert np.array_equal(mask[mask != 255], both[1][mask != 255])
            assert mask.shape == (48, 48) and set(np.unique(mask).tolist()) <= allowed, (key, image_id)
            if key in ("gradcam", "cam-band"):
                assert mask_set.read_heatmap_classes(image_id) == list(record.labels)
            if loose is not None:  # no background score to beat: every pixel takes a class
                everywhere = loose.read(image_id)
                assert (everywhere > 0).all() and np.array_equal(everywhere[mask > 0], mask[mask > 0])
            several += len(set(np.unique(mask).tolist()) - {0, 255}) > 1
    assert several > 0  # images of two or three classes get masks of more than one class
    exported_class_maps(result.open("crf"), dataset, tmp_path / "export")

    config.train = config.train.model_copy(update={
        "model": "unet", "weights": "none", "model_options": {"width": 0.125}, "epochs": 2,
        "image_size": 48, "batch_size": 8, "bf16": False, "storage": str(tmp_path / "train"),
        "scaling": config.train.scaling.model_copy(update={"num_workers": 1})})
    for labels in ("gt", "gradcam"):
        trained = train_segmentation(config, labels=labels)
        metrics = mlflow.get_run(trained["run_id"]).data.metrics
        names = [n for n in dataset.classes if f"test_iou_{n}" in metrics]
        assert names and 0.0 <= metrics["test_miou"] <= 1.0, labels
        present = [metrics[f"test_iou_{n}"] for n in names] + [metrics["test_iou_background"]]
        assert metrics["test_miou"] == pytest.approx(np.mean(present))
        assert "val_miou" in metrics and 0.0 <= metrics["test_micro_dice"] <= 1.0
        history = mlflow.MlflowClient().get_metric_history(trained["run_id"], "val_miou")
        assert [p.step for p in history] == [1, 2]
    from wsss.report.runs import SweepRuns
    from wsss.report.tables import class_table

    experiment = mlflow.get_experiment_by_name("scenes")
    children = mlflow.search_runs([experiment.experiment_id], output_format="list")
    table = class_table(SweepRuns(experiment, None, children, None))  # the report's per-class table
    assert [row["labels"] for row in table.rows] and {row["labels"] for row in table.rows} == {"gt", "gradcam"}
    assert [row["miou"] for row in table.rows] == sorted((row["miou"] for row in table.rows), reverse=True)
    assert {f"iou_{name}" for name in ("background", *names)} <= set(table.columns)
    model, payload = load_segmentation(trained["model_file"])
    assert payload["classes"] == len(dataset.classes) + 1 and payload["class_names"] == dataset.classes
    assert model(torch.zeros(1, 3, 48, 48)).shape == (1, len(dataset.classes) + 1, 48, 48)
    predicted_class_maps_score_as_the_run_did(trained["model_file"], scenes_root, metrics, tmp_path / "pred",
                                              capsys)
    self_trained_with_agreement_and_review(config, dataset, result.open("grabcut"), tmp_path / "review")


def self_trained_with_agreement_and_review(config, dataset, reviewed_set, folder: Path) -> None:
    """Agreement weights, reviewed class maps and self-training rounds run on class maps as on
    one class: round 2 trains on round 1's confident class maps, reviewed images keep their
    reviewed map, the loss weighted by another set's agreement."""
    from wsss.masks.export import export_mask_set
    from wsss.train.segmentation import fit_segmentation

    chosen = dataset.split("train")[:5]
    export_mask_set(reviewed_set, dataset, chosen, "png", str(folder))
    config.train = config.train.model_copy(update={"epochs": 1, "rounds": 2, "agreement": ["grabcut"],
                                                   "reviewed": str(folder)})
    outcome = fit_segmentation(config, labels="gradcam")
    assert [row["label_source"] for row in outcome.history] == ["gradcam+reviewed-review", "round1+reviewed-review"]
    assert outcome.params["reviewed_images"] == 5
    assert 0.0 <= outcome.test["miou"] <= 1.0 and set(outcome.test["class_iou"]) == {"background", *dataset.classes}


def predicted_class_maps_score_as_the_run_did(model_file, root: Path, metrics: dict, out: Path, capsys) -> None:
    """`wsss predict` writes class maps (and what each value means); `wsss eval --task semantic`
    scores them at the images' own size (48 px here, the training size) as the run's test did."""
    import json

    from PIL import Image

    from wsss.cli.main import main

    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(model_file), "--root", str(root), "--format", "csv",
                 "--split", "test", "--out", str(out)]) == 0
    legend = json.loads((out / "classes.json").read_text())["values"]
    names = index(root, format="csv", task="semantic").classes
    assert legend == {"0": "background", **{str(k + 1): name for k, name in enumerate(names)}}
    maps = [np.asarray(Image.open(path)) for path in sorted(out.glob("*.png"))]
    assert maps and all(m.shape == (48, 48) and set(np.unique(m).tolist()) <= set(range(len(names) + 1))
                        for m in maps)
    capsys.readouterr()
    assert main(["eval", "--pred", str(out), "--root", str(root), "--format", "csv", "--split", "test",
                 "--task", "semantic", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["miou"] == pytest.approx(metrics["test_miou"], abs=0.02)
    assert scored["micro"]["dice"] == pytest.approx(metrics["test_micro_dice"], abs=0.02)
    (out / "classes.json").write_text(json.dumps({"values": {"0": "background", "1": "zebra"}}))
    assert main(["eval", "--pred", str(out), "--root", str(root), "--format", "csv", "--split", "test",
                 "--task", "semantic"]) == 2  # a legend naming a class the data lacks: bad input


def exported_class_maps(mask_set, dataset, out: Path) -> None:
    """PNG, COCO and Label Studio exports of a class-map set hold each class as its own region."""
    import json

    import cv2
    from PIL import Image
    from pycocotools import mask as coco_mask

    from wsss.formats.labelstudio import decode_brush_rle
    from wsss.masks.export import export_mask_set

    records = dataset.split("trainval")
    truth = {r.image_id: mask_set.read(r.image_id) for r in records}  # 48 px images: no resize
    export_mask_set(mask_set, dataset, records, "png", str(out / "png"))
    for image_id, mask in truth.items():
        assert np.array_equal(np.asarray(Image.open(out / "png" / f"{image_id}.png")), mask)
    export_mask_set(mask_set, dataset, records, "coco", str(out / "coco.json"))
    document = json.loads((out / "coco.json").read_text())
    by_image = {image["id"]: image["wsss_image_id"] for image in document["images"]}
    rebuilt = {image_id: np.zeros((48, 48), np.uint8) for image_id in truth}
    for annotation in document["annotations"]:
        assert not annotation["iscrowd"]  # a CRF leaves no ignore
        region = coco_mask.decode(annotation["segmentation"]).astype(bool)
        rebuilt[by_image[annotation["image_id"]]][region] = annotation["category_id"]
    assert all(np.array_equal(rebuilt[i], truth[i]) for i in truth)
    export_mask_set(mask_set, dataset, records, "coco", str(out / "instances.json"), split_instances=True)
    document = json.loads((out / "instances.json").read_text())
    rebuilt = {image_id: np.zeros((48, 48), np.uint8) for image_id in truth}
    pieces = 0
    for annotation in document["annotations"]:
        region = coco_mask.decode(annotation["segmentation"]).astype(np.uint8)
        assert cv2.connectedComponents(region, connectivity=8)[0] == 2  # one connected piece
        image_id = by_image[annotation["image_id"]]
        assert not (rebuilt[image_id][region > 0]).any()  # pieces never overlap
        rebuilt[image_id][region > 0] = annotation["category_id"]
        pieces += 1
    assert all(np.array_equal(rebuilt[i], truth[i]) for i in truth)
    assert pieces >= sum(len(set(np.unique(m).tolist()) - {0}) for m in truth.values())
    with pytest.raises(ValueError, match="--instances splits COCO annotations"):
        export_mask_set(mask_set, dataset, records, "png", str(out / "nope"), split_instances=True)
    export_mask_set(mask_set, dataset, records, "labelstudio", str(out / "tasks.json"))
    for task in json.loads((out / "tasks.json").read_text()):
        mask = truth[task["data"]["image_id"]]
        painted = np.zeros_like(mask)
        for region in task["predictions"][0]["result"]:
            name = region["value"]["brushlabels"][0]
            decoded = decode_brush_rle(region["value"]["rle"]).reshape(48, 48, 4)[..., 3] > 0
            painted[decoded] = dataset.classes.index(name) + 1
        assert np.array_equal(painted, mask), task["data"]["image_id"]


def test_paint_gives_a_contested_pixel_to_the_higher_map_or_else_the_smaller_region():
    from wsss.labelers.classwise import paint

    masks = np.zeros((2, 2, 6, 6), np.uint8)
    masks[:, 0, :, :4] = 1  # class 3 (value 4): 24 px
    masks[:, 1, 2:5, 2:5] = 1  # class 0 (value 1): 9 px, 6 of them contested
    labels = np.array([[3, 0], [3, 0]])
    scores = np.zeros((2, 2, 6, 6), np.float32)
    scores[:, 0], scores[:, 1] = 0.9, 0.2
    scores[1, 1, 2:5, 2:3] = 1.0  # image 1: class 0 wins its first contested column
    by_map = paint(masks, labels, scores)
    assert (by_map[0][masks[0, 0] == 1] == 4).all() and (by_map[0][(masks[0, 1] == 1) & (masks[0, 0] == 0)] == 1).all()
    assert (by_map[1, 2:5, 2] == 1).all() and (by_map[1, 2:5, 3] == 4).all()
    by_size = paint(masks, labels)
    assert (by_size[0, 2:5, 2:5] == 1).all() and by_size[0, 0, 0] == 4 and by_size[0, 0, 5] == 0
    padded = paint(masks, np.array([[3, -1], [3, 0]]), empty_ignore=np.array([False, True]))
    assert set(np.unique(padded[0]).tolist()) == {0, 4} and (padded[1] == 255).all()


def scene_batch(root: Path, size: int) -> tuple[dict, np.ndarray, list[str]]:
    """A scenes batch with a CAM-like map per class made from the truth (eroded, blurred: it
    misses the edges as a CAM does), and the truth class maps."""
    import cv2

    from wsss.data.arrays import decode_records

    dataset = index(root, format="csv", task="semantic")
    arrays = decode_records(dataset.records[:16], size)
    width = max(len(s) for s in arrays.label_sets)
    labels = np.array([list(s) + [-1] * (width - len(s)) for s in arrays.label_sets])
    maps = np.zeros((len(labels), width, size, size), np.float32)
    for n, k in zip(*np.nonzero(labels >= 0)):
        region = cv2.erode((arrays.classmaps[n] == labels[n, k] + 1).astype(np.float32), np.ones((5, 5)))
        maps[n, k] = cv2.GaussianBlur(region, (0, 0), 3)
        maps[n, k] /= max(maps[n, k].max(), 1e-6)
    batch = {"image": arrays.images, "label": labels[:, 0], "labels": labels, "heatmap": maps,
             "image_id": np.asarray(arrays.image_ids, dtype=object)}
    return batch, arrays.classmaps, dataset.classes


def test_box_grabcut_and_mix_make_a_mask_per_class_from_each_classs_own_map(scenes_root):
    from wsss.labelers.classwise import boxes_of_class_heatmaps
    from wsss.metrics import SegmentationMeter

    batch, truth, classes = scene_batch(scenes_root, 48)
    labels = batch["labels"]
    boxes = boxes_of_class_heatmaps(batch["heatmap"], labels, 0.3)
    scores = {}
    for name, params in [("box", {}), ("grabcut", {"init": "seeds"}), ("mix", {"init": "seeds"})]:
        out = get_labeler_class(name)({"threshold": 0.3, **params})(dict(batch))
        assert out["box"].tolist() == boxes.tolist()  # a box per class, from that class's map
        for mask, present in zip(out["mask"], labels):
            assert set(np.unique(mask).tolist()) <= {0, *(int(k) + 1 for k in present if k >= 0)}
        meter = SegmentationMeter(len(classes))
        meter.update_batch(out["mask"], truth)
        scores[name] = meter.result(classes)["miou"]
        if name == "box":  # one class: exactly its box filled
            for n in np.flatnonzero((labels >= 0).sum(axis=1) == 1):
                x0, y0, x1, y1 = boxes[n, 0]
                expected = np.zeros((48, 48), np.uint8)
                expected[y0:y1, x0:x1] = labels[n, 0] + 1
                assert np.array_equal(out["mask"][n], expected)
    cut = np.stack([class_map(m[:int((p >= 0).sum())], [int(k) for k in p if k >= 0], ThresholdParams(threshold=0.3))
                    for m, p in zip(batch["heatmap"], labels)])
    meter = SegmentationMeter(len(classes))
    meter.update_batch(cut, truth)
    assert scores["grabcut"] > meter.result(classes)["miou"]  # GrabCut recovers the edges the map misses


def test_class_maps_agree_by_value():
    from wsss.labelers.agreement import agreed_masks

    sources = np.array([[[[3, 3, 0, 2, 255]], [[3, 2, 0, 2, 255]], [[3, 3, 255, 0, 255]]]], np.uint8)
    unanimous, agreement = agreed_masks(sources, 1.0)
    assert unanimous.tolist() == [[[3, 255, 0, 255, 255]]]
    majority, _ = agreed_masks(sources, 0.6)
    assert majority.tolist() == [[[3, 3, 0, 2, 255]]]
    assert agreement[0, 0].tolist() == pytest.approx([1.0, 0.0, 2 / 3, 0.0, 0.0])


def test_pseudo_eval_scores_a_labelers_class_maps_without_a_study(scenes_root, capsys):
    """`wsss pseudo-eval --task semantic`: the data's box per class covers every animal pixel
    (recall 1) and more (precision < 1); a one-class labeler is refused, naming the others."""
    import json

    from wsss.cli.main import main

    capsys.readouterr()
    assert main(["pseudo-eval", "--labeler", "box", "--param", "box_source=dataset", "--root", str(scenes_root),
                 "--format", "csv", "--task", "semantic", "--size", "48", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["micro"]["recall"] == 1.0 and result["micro"]["precision"] < 1.0
    assert 0.0 < result["miou"] < 1.0 and result["images"] == len(index(scenes_root, format="csv").split("trainval"))
    assert main(["pseudo-eval", "--labeler", "ellipse", "--root", str(scenes_root), "--format", "csv",
                 "--task", "semantic"]) == 2
    assert "makes one-class masks only" in capsys.readouterr().err
