"""The ImageNet classifier's own CAM (``imagenet_cam``): its engine, its identity, the configs
that may use it, and its mask sets on local Ray without any classifier trained on the data."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.config import parse_config
from wsss.data.pets import index
from wsss.labelers.base import LabelerContext
from wsss.labelers.fastcam import CamEngine
from wsss.labelers.imagenet_cam import IMAGENET_BACKBONE, TopClassesEngine
from wsss.labelers.registry import get_labeler_class
from wsss.masks.pipeline import generate_masks
from wsss.models.classifier import build_classifier, get_module, imagenet_classifier, save_classifier

VIEWS = {"scales": [0.6, 1.0], "flip": True}


def _images(count: int = 3, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 60, (count, size, size, 3), dtype=np.uint8)
    for index_, image in enumerate(images):  # a bright disc in a different place in each
        rows, cols = np.mgrid[:size, :size]
        centre = (20 + 25 * index_, 30 + 15 * index_)
        image[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < 18 ** 2] = (200, 140 + 20 * index_, 60)
    return images


def test_one_top_class_gives_the_cam_of_the_predicted_imagenet_class():
    model = imagenet_classifier(IMAGENET_BACKBONE)
    layer, head = get_module(model, "bn2"), get_module(model, "classifier")
    assert head.weight.shape[0] == 1000  # the ImageNet head, not a new one
    images = _images()
    with CamEngine(model, layer, head) as plain:
        predicted = plain.heatmaps(images, None, [("cam", "predicted")])["cam-predicted"]
    with TopClassesEngine(model, layer, head, top_k=1) as top_one:
        ours = top_one.heatmaps(images, None, [("imagenet_cam", "predicted")])["imagenet_cam-predicted"]
    np.testing.assert_allclose(ours, predicted, atol=1e-5)
    with TopClassesEngine(model, layer, head, top_k=5) as top_five:
        blended = top_five.heatmaps(images, None, [("imagenet_cam", "predicted")])["imagenet_cam-predicted"]
    assert np.abs(blended - predicted).max() > 1e-3  # five classes' rows are not the first one's


def test_the_map_ignores_the_label_and_the_classifier_and_cuts_at_its_threshold(tmp_path):
    images = _images()
    labeler = get_labeler_class("imagenet_cam")({"threshold": 0.3, **VIEWS})
    first = labeler({"image": images, "label": np.array([0, 1, 2])})
    other = labeler({"image": images, "label": np.array([5, 5, 5])})
    np.testing.assert_array_equal(first["heatmap"], other["heatmap"])
    assert first["heatmap"].shape == (3, 96, 96) and 0.0 <= first["heatmap"].min() <= first["heatmap"].max() <= 1.0
    np.testing.assert_array_equal(first["mask"], (first["heatmap"] >= 0.3).astype(np.uint8))
    checkpoint = tmp_path / "classifier.pt"
    save_classifier(build_classifier("resnet18", "none"), checkpoint, "resnet18", image_size=64)
    with_classifier = get_labeler_class("imagenet_cam")({"threshold": 0.3, **VIEWS},
                                                        LabelerContext(classifier_checkpoint=str(checkpoint)))
    assert with_classifier.fingerprint() == labeler.fingerprint()  # no classifier of the data in it
    assert labeler.fingerprint() != get_labeler_class("imagenet_cam")({"threshold": 0.2, **VIEWS}).fingerprint()
    assert get_labeler_class("cam")({"threshold": 0.3, **VIEWS}).fingerprint() != labeler.fingerprint()


def _semantic(labelers: list[dict]) -> dict:
    return {"data": {"root": "data/scenes", "format": "csv", "task": "semantic",
                     "classes": ["cow", "grass"]}, "labelers": labelers}


def test_several_classes_refuse_the_one_map_for_every_class():
    with pytest.raises(ValueError, match="imagenet_cam.*one-class masks"):
        parse_config(_semantic([{"name": "imagenet_cam"}]))
    grabcut = {"name": "grabcut", "params": {"init": "seeds", "heatmap": {"method": "imagenet_cam"}}}
    with pytest.raises(ValueError, match="builds on heatmap 'imagenet_cam'"):
        parse_config(_semantic([grabcut]))
    parse_config(_semantic([{"name": "grabcut", "params": {"init": "seeds", "heatmap": {"method": "cam"}}}]))


@pytest.mark.slow
def test_imagenet_sets_are_made_on_ray_with_no_classifier_and_stay_when_one_is_trained(
        ray_local, synthetic_root, tmp_path):
    labelers = [{"name": "imagenet_cam", "params": {"threshold": 0.3, **VIEWS}},
                {"name": "grabcut", "id": "grabcut_imagenet",
                 "params": {"init": "seeds", "threshold": 0.2, "iterations": 2,
                            "heatmap": {"method": "imagenet_cam", **VIEWS}}}]
    config = parse_config({"data": {"root": str(synthetic_root), "image_size": 64, "limit": 2},
                           "pipeline": {"store": str(tmp_path / "store"), "batch_size": 4},
                           "labelers": labelers})
    dataset = index(synthetic_root, limit=2)
    ids = {r.image_id for r in dataset.split("trainval", "test")}
    first = generate_masks(config, dataset, LabelerContext())  # no classifier, no random weights
    for key in ("imagenet_cam", "grabcut_imagenet"):
        assert first.per_set[key]["written"] == len(ids)
        mask_set = first.open(key)
        masks = [mask_set.read(image_id) for image_id in ids]
        assert all(m.shape == (64, 64) and set(np.unique(m).tolist()) <= {0, 1, 255} for m in masks)
    assert any((m == 1).any() and (m == 0).any() for m in masks)  # a cut, not all one value
    checkpoint = tmp_path / "classifier.pt"
    save_classifier(build_classifier("resnet18", "none"), checkpoint, "resnet18", image_size=64)
    again = generate_masks(config, dataset, LabelerContext(classifier_checkpoint=str(checkpoint)))
    assert sum(counts["written"] for counts in again.per_set.values()) == 0  # the same sets
