"""Real photographs of several classes each (``../shared/data/msrc-v2-dev``, MSRC-v2: 23 classes,
no background class): the msrc preset's path end to end on 42 photos. A multi-label classifier
trained on 14 training photos, its CAM per class the image carries and the preset's pixel head
(fitted on the 28 train and val photos' image labels), scored on 14 test photos by mIoU over
the data's classes: every pixel the best of its image's classes beats cutting each class
against a background threshold (the fault the preset fixes), the pixel head beats the CAM it
starts from, and both stay above floors set under what this setup measured (CAM 0.478, pixel
head 0.506, background cut 0.247). On all 296 photos the head's gain is far larger (0.424 to
0.662); here its head learns from 28 photos.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wsss.config import load_config
from wsss.data.arrays import resize_mask
from wsss.data.decode import record_class_truth
from wsss.data.prepare import prepare_dataset
from wsss.labelers.base import ThresholdParams, class_map
from wsss.masks.pipeline import generate_masks
from wsss.masks.plan import labeler_context
from wsss.masks.scoring import mask_quality
from wsss.metrics import SegmentationMeter
from wsss.train.classifier import run_classifier

REPO = Path(__file__).resolve().parents[1]
REAL_ROOT = Path(os.environ.get("WSSS_REAL_MSRC", REPO.parent / "shared" / "data" / "msrc-v2-dev"))
FLOORS = {"cam": 0.40, "pixel-head": 0.45}  # measured: cam 0.478, pixel-head 0.506, background cut 0.247
HEAD_GAIN = 0.01  # the pixel head over the CAM (measured +0.027, its head fitted on 28 photos)

needs_real_scenes = pytest.mark.skipif(
    not (REAL_ROOT / "labels.csv").is_file(),
    reason=f"real several-class photos not found at {REAL_ROOT} (set WSSS_REAL_MSRC to an MSRC-v2 folder "
           f"with labels.csv, images/ and masks/)")


def _study(tmp_path: Path):
    config = load_config(REPO / "jobs" / "configs" / "msrc.yaml", {
        "data.root": str(REAL_ROOT), "data.limit": 14,
        "classifier.image_size": 224, "classifier.epochs": 3, "classifier.storage": str(tmp_path / "classifier"),
        "pipeline.store": str(tmp_path / "store"),
        "tracking.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.artifact_location": str(tmp_path / "artifacts")})
    return config


def background_cut(mask_set, records, classes: list[str], threshold: float = 0.3) -> float:
    """mIoU of a stored CAM set cut as the pet study cuts it: each class against a background."""
    meter = SegmentationMeter(len(classes))
    params = ThresholdParams(threshold=threshold, background=True)
    for record in records:
        maps = mask_set.read_heatmap(record.image_id)
        cut = class_map(maps, mask_set.read_heatmap_classes(record.image_id), params)
        meter.update(cut, resize_mask(record_class_truth(record), cut.shape))
    return meter.result(classes, background=False)["miou"]


@needs_real_scenes
@pytest.mark.slow
def test_class_maps_without_a_background_beat_the_background_cut_on_real_scenes(ray_local, tmp_path):
    config = _study(tmp_path)
    dataset = prepare_dataset(config.data)
    assert dataset.background is False and len(dataset.records) <= 42
    classifier = run_classifier(config)
    summary = generate_masks(config, dataset, labeler_context(config, classifier["checkpoint"]), splits=("test",))
    test = dataset.split("test")
    miou = {key: mask_quality(summary.open(key), test, ("ignore",), dataset.classes, background=False)["ignore"]
            ["miou"] for key in ("cam", "pixel-head")}
    cut = background_cut(summary.open("cam"), test, dataset.classes)
    print("real-scene pseudo-mask mIoU:", {k: round(v, 3) for k, v in miou.items()}, "background cut",
          round(cut, 3))
    assert miou["cam"] > cut + 0.03, (miou, cut)
    assert miou["pixel-head"] > miou["cam"] + HEAD_GAIN, miou  # the preset's best generator
    for key, floor in FLOORS.items():
        assert miou[key] >= floor, miou
