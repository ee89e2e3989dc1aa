"""Scenes without a background class (``data.background: false``): every pixel is one of the
image's classes, so class maps take the best of the image's own classes or ignore, never a
background, and mIoU is over the data's classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.config import ConfigError, parse_config
from wsss.data.index import index
from wsss.data.synthetic.scenes import write_scenes
from wsss.labelers.base import ThresholdParams, class_map
from wsss.labelers.classwise import paint
from wsss.labelers.crf import CrfParams, dense_crf
from wsss.labelers.registry import get_labeler_class
from wsss.metrics import SegmentationMeter
from wsss.train.steps import banded_class_map, class_probabilities, predicted_classes

I = 255  # noqa: E741 - ignore


def test_a_pixel_no_class_claims_is_ignored_not_background():
    maps = np.array([[[0.9, 0.2, 0.1]], [[0.1, 0.6, 0.2]]], np.float32)  # two classes, 1 x 3 px
    with_background = class_map(maps, [2, 5], ThresholdParams(threshold=0.5))
    without = class_map(maps, [2, 5], ThresholdParams(threshold=0.5, background=False))
    assert with_background.tolist() == [[3, 6, 0]] and without.tolist() == [[3, 6, I]]
    everywhere = class_map(maps, [2, 5], ThresholdParams(threshold=0.0, background=False))
    assert everywhere.tolist() == [[3, 6, 6]]  # threshold 0: each pixel its best class
    banded = class_map(maps, [2, 5], ThresholdParams(band=(0.15, 0.8), background=False))
    assert banded.tolist() == [[3, I, I]]


def test_painting_leaves_unclaimed_pixels_ignored_and_the_crf_never_chooses_background():
    masks = np.zeros((1, 2, 1, 3), np.uint8)
    masks[0, 0, 0, 0] = masks[0, 1, 0, 1] = 1
    classes = np.array([[0, 3]])
    assert paint(masks, classes).tolist() == [[[1, 4, 0]]]
    assert paint(masks, classes, background=False).tolist() == [[[1, 4, I]]]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    coarse = np.zeros((2, 12, 12), np.uint8)  # mostly "background" in the source
    coarse[0, 3:6, 3:6], coarse[1, 3:6, 3:6] = 1, 4
    one_class = np.array([[0, -1], [3, -1]])
    refined = dense_crf(images, coarse, CrfParams(sources=["s"], background=False), one_class)
    assert (refined[0] == 1).all() and (refined[1] == 4).all()  # an image of one class is all of it
    assert (dense_crf(images, coarse, CrfParams(sources=["s"]), one_class) == 0).any()


def test_the_model_never_predicts_background_and_self_training_never_teaches_it():
    logits = torch.tensor([[[[5.0, 0.0]], [[1.0, 0.1]], [[0.0, 0.2]]]])  # background, class 1, class 2
    assert predicted_classes(logits).tolist() == [[[0, 2]]]
    assert predicted_classes(logits, background=False).tolist() == [[[1, 2]]]
    assert banded_class_map(class_probabilities(logits), (0.3, 0.7)).tolist() == [[[0, I]]]
    assert banded_class_map(class_probabilities(logits), (0.3, 0.7), background=False).tolist() == [[[I, I]]]


def test_miou_is_over_the_classes_the_data_has_with_both_accuracies():
    meter = SegmentationMeter(2)
    truth = np.array([[1, 1, 2, 2]])
    meter.update(np.array([[1, 0, 2, 2]]), truth)  # a pixel predicted as a background there is none of
    with_background = meter.result(["a", "b"])
    without = meter.result(["a", "b"], background=False)
    assert with_background["class_iou"]["background"] == 0.0
    assert list(without["class_iou"]) == ["a", "b"] and without["class_iou"] == {"a": 0.5, "b": 1.0}
    assert without["miou"] == pytest.approx(0.75) and with_background["miou"] == pytest.approx(0.5)
    assert without["pixel_accuracy"] == pytest.approx(0.75)
    assert without["class_accuracy"] == pytest.approx((0.5 + 1.0) / 2)


def test_the_data_fact_reaches_every_labeler_and_the_identities(tmp_path):
    data = {"task": "semantic", "format": "csv", "background": False}
    config = parse_config({"data": data, "labelers": [
        {"name": "cam"}, {"name": "grabcut", "id": "gc"}, {"name": "crf", "params": {"sources": ["cam"]}}]})
    assert {spec.key: spec.params["background"] for spec in config.labelers} == {"cam": False, "gc": False,
                                                                                "crf": False}
    assert config.resolved(tmp_path).labelers[0].params["background"] is False
    with pytest.raises(ConfigError, match="set it once, in data"):
        parse_config({"data": data, "labelers": [{"name": "cam", "params": {"background": True}}]})
    with pytest.raises(ConfigError, match="needs data.task: semantic"):
        parse_config({"data": {"background": False}})
    cam = get_labeler_class("cam")
    plain, without = cam({}).fingerprint(), cam({"background": False}).fingerprint()
    assert plain != without and cam({"background": True}).fingerprint() == plain
    root = tmp_path / "scenes"
    write_scenes(str(root), "csv", 8, 48, 0)
    dataset = index(str(root), format="csv", task="semantic")
    before = dataset.fingerprint()
    dataset.background = False
    assert dataset.fingerprint() != before


def test_a_stored_heatmap_set_is_cut_without_background_as_its_params_say(tmp_path):
    from wsss.masks.store import MaskSet, MaskSetWriter

    writer = MaskSetWriter(str(tmp_path / "cam-x"))
    writer.write_heatmap("a", np.array([[[0.9, 0.1]], [[0.2, 0.3]]], np.float32), {"labels": [0, 4]})
    for background, expected in ((True, [[1, 0]]), (False, [[1, I]])):
        manifest = writer.write_manifest({"labeler_id": "cam", "kind": "heatmaps", "complete": True,
                                          "params": {"threshold": 0.5, "background": background}})
        assert MaskSet(writer.uri, manifest, threshold=0.5).read("a").tolist() == expected


def _two_region_scene():
    """A 40 x 60 image, red left of column 30 and blue right of it (noisy), and two CAM-like
    blobs that miss the edge: class 0's centred at column 20 and wide, class 3's at column 48."""
    rng = np.random.default_rng(0)
    image = np.zeros((40, 60, 3), np.float64)
    image[:, :30] = (200, 40, 40)
    image[:, 30:] = (40, 40, 200)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    columns = np.arange(60)[None, :].repeat(40, 0)
    maps = np.stack([np.exp(-((columns - 20) / 16.0) ** 2), np.exp(-((columns - 48) / 8.0) ** 2)]).astype(np.float32)
    truth = np.where(columns < 30, 1, 4).astype(np.uint8)
    return image, maps / maps.max(axis=(1, 2), keepdims=True), truth


def test_pamr_moves_the_class_boundary_onto_the_colour_edge():
    image, maps, truth = _two_region_scene()
    plain = class_map(maps, [0, 3], ThresholdParams(threshold=0.0, background=False))
    assert (plain[:, 30:36] == 1).all()  # the wide blob takes the blue side's first columns
    labeler = get_labeler_class("pamr")({"threshold": 0.0, "background": False})
    batch = {"image": image[None], "labels": np.array([[0, 3]]), "heatmap": maps[None]}
    refined = labeler(batch)["mask"][0]
    assert (refined == truth).mean() > 0.98 > (plain == truth).mean()
    meanwise = get_labeler_class("pamr")({"threshold": 0.0, "background": False, "compete": "mean"})
    assert (meanwise(batch)["mask"][0] == truth).mean() > 0.98


def test_the_headline_leaves_out_the_foregrounds_dice_where_every_pixel_is_foreground():
    from wsss.train.segmentation import headline

    scenes = {"miou": 0.4861, "micro": {"dice": 1.0, "iou": 1.0}}  # no background: Dice is 1 always
    assert headline(scenes, background=False) == "test mIoU 0.4861"
    with_background = {"miou": 0.5, "micro": {"dice": 0.8, "iou": 0.6667}}
    assert headline(with_background, True, 3) == "test mIoU 0.500, test micro Dice 0.800, IoU 0.667"
    assert headline({"micro": {"dice": 0.8923, "iou": 0.8}}) == "test micro Dice 0.8923, IoU 0.8000"
    assert headline({"micro": {"dice": 0.8923, "iou": 0.8}}, digits=3, detail=False) == "test Dice 0.892"
