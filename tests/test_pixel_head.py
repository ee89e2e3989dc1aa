"""The pixel head (``pixel_head``): a pixel classifier fitted across the set on the CAM's clear
pixels, predicting among each image's own classes; its fitted state kept in the set's folder
under the set's fingerprint, and refused for any other set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsss.config import parse_config
from wsss.data.index import index
from wsss.data.synthetic.scenes import write_scenes
from wsss.labelers.base import LabelerContext, ThresholdParams, cut_heatmaps
from wsss.labelers.pixel_head import FIT_FILE, NotFittedError
from wsss.labelers.registry import get_labeler_class

COLOURS = np.array([(210, 40, 40), (40, 190, 60), (40, 60, 210)], np.float32)  # classes 0, 1, 2


def _colour_scenes(count: int, side: int = 128, seed: int = 0):
    """Images of two of three colour classes split at a random column; the maps of the left class
    spill 24 px into the right one (as a CAM spills onto what its class stands on)."""
    rng = np.random.default_rng(seed)
    images, labels, maps, truth, edges = [], [], [], [], []
    columns = np.arange(side)[None, :].repeat(side, 0)
    for _ in range(count):
        left, right = rng.choice(3, 2, replace=False)
        edge = int(rng.integers(side // 3, 2 * side // 3))
        edges.append(edge)
        image = np.where((columns < edge)[..., None], COLOURS[left], COLOURS[right])
        images.append(np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8))
        labels.append([left, right])
        spill = columns < edge + 24
        maps.append(np.stack([np.where(spill, 1.0, 0.1), np.where(spill, 0.3, 0.8)]).astype(np.float32))
        truth.append(np.where(columns < edge, left + 1, right + 1).astype(np.uint8))
    far = np.abs(columns[None] - np.array(edges)[:, None, None]) > 16  # a grid cell from the edge
    return np.stack(images), np.array(labels), np.stack(maps), np.stack(truth), far


def test_the_head_learns_each_class_from_its_look_across_images_where_the_maps_spill():
    images, labels, maps, truth, far = _colour_scenes(16)
    plain = cut_heatmaps(maps, labels, ThresholdParams(threshold=0.0, background=False))
    labeler = get_labeler_class("pixel_head")({"background": False, "refine_iterations": 0, "rounds": 2},
                                              LabelerContext(allow_random_weights=True))
    with pytest.raises(NotFittedError, match="no fitted head"):
        labeler({"image": images[:1], "labels": labels[:1], "heatmap": maps[:1]})
    with labeler:
        labeler.fit(images, labels, labels, heatmaps=maps)
        masks = labeler({"image": images, "labels": labels, "heatmap": maps})["mask"]
        fresh, fresh_labels, fresh_maps, other, fresh_far = _colour_scenes(6, seed=1)
        unseen = labeler({"image": fresh, "labels": fresh_labels, "heatmap": fresh_maps})["mask"]
    # the spill puts 24 of each image's 128 columns on the wrong class; away from the edge (the
    # head sees a 16-px grid) the head has every pixel right, on images it was fitted on or not
    assert (plain == truth)[far].mean() < 0.95
    assert (masks == truth)[far].mean() > 0.99 and (masks == truth).mean() > (plain == truth).mean() + 0.05
    assert (unseen == other)[fresh_far].mean() > 0.97
    for mask, present in zip(masks, labels):  # only the image's own classes
        assert set(np.unique(mask).tolist()) <= {int(k) + 1 for k in present}


def test_with_a_background_the_head_predicts_background_or_the_images_classes():
    images, labels = _colour_scenes(8)[:2]
    images[:, :, :16] = 0  # a black margin no class's map reaches: the background's seeds
    maps = np.zeros((8, 2, 128, 128), np.float32)
    maps[:, 0, :, 16:64], maps[:, 1, :, 64:] = 1.0, 1.0
    labeler = get_labeler_class("pixel_head")({"refine_iterations": 2, "rounds": 1},
                                              LabelerContext(allow_random_weights=True))
    with labeler:
        labeler.fit(images, labels, labels, heatmaps=maps)
        masks = labeler({"image": images, "labels": labels, "heatmap": maps})["mask"]
    assert (masks[:, :, :8] == 0).mean() > 0.9  # the margin
    for mask, present in zip(masks, labels):
        assert set(np.unique(mask).tolist()) <= {0, *(int(k) + 1 for k in present)}


def _study(root: Path, work: Path, **params):
    return parse_config({
        "name": "scenes", "weights_policy": "random",
        "data": {"root": str(root), "format": "csv", "task": "semantic", "image_size": 48},
        "classifier": {"backbone": "resnet18", "weights": "none", "image_size": 48,
                       "storage": str(work / "classifier")},
        "labelers": [{"name": "cam"}, {"name": "pixel_head", "id": "head", "params": {"rounds": 1, **params}}],
        "pipeline": {"store": str(work / "masks")},
        "tracking": {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}", "artifact_location": str(work / "art")}})


@pytest.mark.slow
def test_the_pipeline_fits_the_head_once_keeps_it_with_the_set_and_refuses_another_sets(ray_local, tmp_path):
    import torch

    from wsss.masks.pipeline import generate_masks

    root = tmp_path / "scenes"
    write_scenes(root, "csv", 24, 48, seed=3)
    config = _study(root, tmp_path)
    dataset = index(root, format="csv", task="semantic")
    context = LabelerContext(allow_random_weights=True)
    first = generate_masks(config, dataset, context)
    mask_set = first.open("head")
    head = Path(mask_set.uri) / FIT_FILE
    stored = torch.load(head, weights_only=True)
    assert stored["fingerprint"] == Path(mask_set.uri).name.rsplit("-", 1)[1]
    masks = {r.image_id: mask_set.read(r.image_id) for r in dataset.records}
    for record in dataset.records:
        assert set(np.unique(masks[record.image_id]).tolist()) <= {0, 255, *(k + 1 for k in record.labels)}

    lost = dataset.records[0].image_id  # a mask lost: the rerun remakes it with the same head
    (Path(mask_set.uri) / "masks" / f"{lost}.png").unlink()
    before = head.stat().st_mtime_ns
    again = generate_masks(config, dataset, context)
    assert head.stat().st_mtime_ns == before  # loaded, not fitted again
    assert again.per_set["head"]["written"] == 1
    assert np.array_equal(again.open("head").read(lost), masks[lost])

    other = generate_masks(_study(root, tmp_path, rounds=2), dataset, context)  # other params: its own set, its own fit
    assert other.open("head").uri != mask_set.uri and (Path(other.open("head").uri) / FIT_FILE).is_file()

    stored["fingerprint"] = "0" * 12  # a head for another set put in this set's folder
    torch.save(stored, head)
    (Path(mask_set.uri) / "masks" / f"{lost}.png").unlink()
    with pytest.raises(NotFittedError, match=f"fitted for set '000000000000'.*delete {head}"):
        generate_masks(config, dataset, context)
