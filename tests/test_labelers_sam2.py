"""SAM2 labelers (centre point, CAM peaks, CAM box) on SAM2 hiera tiny with random weights, CPU.

The image encoder costs seconds per image on CPU, so the module encodes few batches: the engine
cache and ``label_with_shared_embedding`` are what keep it at one encoder pass per batch.
"""

from __future__ import annotations

import numpy as np
import pytest

from wsss.data.synthetic import render_image, trimap_from_mask
from wsss.labelers.base import NO_BOX, LabelerContext
from wsss.labelers.registry import get_labeler_class, list_labelers, validate_params
from wsss.labelers.sam2 import label_with_shared_embedding, spread_minima, spread_peaks
from wsss.labelers.sam2_engine import release_engines
from wsss.models.classifier import WeightsMissingError

SIZE = 64
PARAMS = {
    "sam2_center": {"model": "tiny"},
    "sam2_peaks": {"model": "tiny", "points": 3, "min_distance": 12, "negative_points": 2},
    "sam2_box": {"model": "tiny", "threshold": 0.5},
}


def blob(centre: tuple[int, int], sigma: float, height: float = 1.0, size: int = SIZE) -> np.ndarray:
    """A Gaussian bump at (x, y) with an exactly-zero tail, like a ReLU'd CAM."""
    ys, xs = np.mgrid[:size, :size]
    bump = height * np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.where(bump > 0.05 * height, bump, 0.0).astype(np.float32)


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> LabelerContext:
    models_dir = tmp_path_factory.mktemp("no-sam2-weights")
    return LabelerContext(models_dir=str(models_dir), allow_random_weights=True, seed=0)


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    """Two synthetic pets with ground-truth trimaps and hand-made heatmaps (second: empty)."""
    rendered = [render_image(seed=0, index=i, size=SIZE) for i in range(2)]
    heatmap = np.zeros((2, SIZE, SIZE), np.float32)
    heatmap[0, 8:40, 20:56] = 0.9  # the largest blob -> box [20, 8, 56, 40]
    heatmap[0, 50:58, 4:12] = 0.8  # a smaller blob the box must ignore
    heatmap[1] = blob((40, 30), 6.0, 0.4)  # never reaches the 0.5 threshold: no box
    return {
        "image": np.stack([image for image, _, _ in rendered]),
        "label": np.array([0, 1]),
        "image_id": np.array(["a_1", "b_2"]),
        "heatmap": heatmap,
        "trimap": np.stack([trimap_from_mask(mask) for _, mask, _ in rendered]),
    }


def make_labelers(context: LabelerContext, **overrides: dict) -> list:
    return [get_labeler_class(name)({**params, **overrides.get(name, {})}, context)
            for name, params in PARAMS.items()]


@pytest.fixture(scope="module")
def shared_run(context, batch):
    """Outputs of the three labelers on one batch, and how many times the encoder ran."""
    release_engines()
    labelers = make_labelers(context)
    model = labelers[0].engine.predictor.model
    calls = []
    encode = model.forward_image
    model.forward_image = lambda images: calls.append(len(images)) or encode(images)
    outputs = label_with_shared_embedding(labelers, batch)
    return labelers, outputs, calls


def test_registered_as_sam2_stage():
    for name in PARAMS:
        assert name in list_labelers()
        assert get_labeler_class(name).stage == "sam2"
    assert validate_params("sam2_center", {})["model"] == "small"
    with pytest.raises(ValueError, match="params.model"):
        validate_params("sam2_center", {"model": "huge"})


def test_peaks_ordered_spread_and_counted():
    heatmap = (blob((10, 10), 3, 0.6) + blob((50, 12), 3, 1.0) + blob((30, 50), 3, 0.8)
               + blob((14, 16), 3, 0.9))  # 0.9 is only ~7 px from the 0.6 peak
    peaks = spread_peaks(heatmap, count=3, min_distance=4)
    assert peaks.tolist() == [[50.5, 12.5], [14.5, 16.5], [30.5, 50.5]]
    spread = spread_peaks(heatmap, count=4, min_distance=12)
    assert len(spread) == 3  # the 0.6 peak is too close to the 0.9 one
    gaps = np.linalg.norm(spread[:, None] - spread[None], axis=-1)[np.triu_indices(3, 1)]
    assert gaps.min() >= 12
    assert spread_peaks(blob((20, 40), 5), count=3, min_distance=4).tolist() == [[20.5, 40.5]]
    assert len(spread_peaks(np.zeros((SIZE, SIZE)), count=3, min_distance=4)) == 1


def test_negative_points_land_at_spread_minima():
    heatmap = 1.0 - blob((32, 32), 20)  # minimum 0 at the centre, a 1.0 plateau outside
    assert spread_minima(heatmap, count=2, min_distance=5).tolist() == [[32.5, 32.5]]
    cam = blob((32, 32), 8)  # zero plateau around one bump
    minima = spread_minima(cam, count=4, min_distance=20)
    assert len(minima) == 4
    columns, rows = (minima[:, 0] - 0.5).astype(int), (minima[:, 1] - 0.5).astype(int)
    assert np.all(cam[rows, columns] == cam.min())
    gaps = np.linalg.norm(minima[:, None] - minima[None], axis=-1)[np.triu_indices(4, 1)]
    assert gaps.min() >= 20


def test_missing_checkpoint_names_file_and_url(tmp_path, context):
    default = get_labeler_class("sam2_center")({"model": "small"}, LabelerContext(models_dir=str(tmp_path)))
    with pytest.raises(WeightsMissingError) as caught:
        default.weights_id()
    expected = tmp_path / "sam2.1_hiera_small.pt"
    assert str(expected) in str(caught.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_small.pt" in str(caught.value)
    explicit = tmp_path / "elsewhere" / "sam.pt"  # an explicit path is never replaced by random weights
    labeler = get_labeler_class("sam2_box")({"model": "large", "checkpoint": str(explicit)}, context)
    with pytest.raises(WeightsMissingError, match="sam2.1_hiera_large.pt") as caught:
        labeler({"image": np.zeros((1, 8, 8, 3), np.uint8), "heatmap": np.zeros((1, 8, 8))})
    assert str(explicit) in str(caught.value)


def test_random_weights_only_when_allowed(tmp_path, context):
    refused = get_labeler_class("sam2_center")({"model": "tiny"}, LabelerContext(models_dir=str(tmp_path)))
    with pytest.raises(WeightsMissingError, match="sam2.1_hiera_tiny.pt"):
        refused({"image": np.zeros((1, 8, 8, 3), np.uint8)})
    allowed = get_labeler_class("sam2_center")({"model": "tiny"}, context)
    assert allowed.weights_id() == "random-tiny-seed0"
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(b"not really weights")
    on_disk = get_labeler_class("sam2_center")({"model": "tiny"}, LabelerContext(models_dir=str(tmp_path)))
    assert on_disk.weights_id() not in ("", "random-tiny-seed0")
    assert on_disk.fingerprint() != allowed.fingerprint()


def test_shared_embedding_encodes_each_batch_once(shared_run, batch):
    labelers, outputs, calls = shared_run
    assert calls == [len(batch["image"])]  # one encoder pass for three prompt kinds
    assert labelers[0].engine is labelers[1].engine is labelers[2].engine
    assert labelers[0].engine.encoder_calls == 1
    for output in outputs.values():
        assert output["mask"].shape == (2, SIZE, SIZE) and output["mask"].dtype == np.uint8
        assert set(np.unique(output["mask"]).tolist()) <= {0, 1}
        assert output["prompts"].dtype == np.float32
    centre, peaks = outputs[0], outputs[1]
    assert centre["prompts"].tolist() == [[[32.0, 32.0, 1.0]]] * 2
    assert peaks["prompts"].shape == (2, 5, 3)
    assert peaks["prompts"][0, :3, 2].tolist() == [1.0] * 3 and peaks["prompts"][0, 3:, 2].tolist() == [0.0] * 2
    assert peaks["prompts"][1, :, 2].tolist() == [1.0, -1.0, -1.0, 0.0, 0.0]  # one bump: one peak
    for heatmap, negatives in zip(batch["heatmap"], peaks["prompts"][:, 3:, :2]):
        columns, rows = (negatives - 0.5).astype(int).T
        assert np.all(heatmap[rows, columns] == heatmap.min())


def test_box_prompt_from_hand_made_heatmap(shared_run):
    box = shared_run[1][2]
    assert box["box"].dtype == np.int32
    assert box["box"][0].tolist() == [20, 8, 56, 40]
    assert box["box"][1].tolist() == NO_BOX.tolist()  # no blob >= 0.5: centre point instead
    assert box["prompts"][0].tolist() == [[-1.0, -1.0, -1.0]]
    assert box["prompts"][1].tolist() == [[32.0, 32.0, 1.0]]


def test_deterministic_across_engines_and_blind_to_ground_truth(shared_run, context, batch):
    first = shared_run[1]
    release_engines()  # a second engine, built from the same seed
    without_truth = {key: value for key, value in batch.items() if key != "trimap"}
    again = label_with_shared_embedding(make_labelers(context), without_truth)
    for index, output in first.items():
        assert again[index].keys() == output.keys()
        for key in output:
            np.testing.assert_array_equal(again[index][key], output[key])


def test_selection_by_area_score_and_single_output(shared_run, context, batch):
    centre = shared_run[0][0]
    images = batch["image"]
    points = [np.array([[32.0, 32.0, 1.0]], np.float32)] * 2
    engine = centre.engine
    engine.embed(images)
    candidates, scores = engine.predict(points, None, multimask=True)
    assert all(c.shape == (3, SIZE, SIZE) for c in candidates)
    variants = {"largest": [c[c.reshape(3, -1).sum(1).argmax()] for c in candidates],
                "score": [c[s.argmax()] for c, s in zip(candidates, scores)]}
    for select, expected in variants.items():
        labeler = get_labeler_class("sam2_center")({"model": "tiny", "select": select}, context)
        np.testing.assert_array_equal(labeler({"image": images})["mask"], np.stack(expected))
    single, _ = engine.predict(points, None, multimask=False)
    labeler = get_labeler_class("sam2_center")({"model": "tiny", "output": "single"}, context)
    np.testing.assert_array_equal(labeler({"image": images})["mask"], np.concatenate(single))


def test_peaks_from_a_classifier_heatmap(context, batch):
    """Without a heatmap in the batch, the peaks come from the (random) Grad-CAM classifier."""
    labeler = get_labeler_class("sam2_peaks")(PARAMS["sam2_peaks"], context)
    output = labeler({"image": batch["image"], "label": batch["label"]})
    assert output["mask"].shape == (2, SIZE, SIZE)
    positives = output["prompts"][:, :3]
    assert np.all((positives[..., 2] == 1.0) | (positives[..., 2] == -1.0))
    assert np.all(positives[:, 0, 2] == 1.0)  # at least the global maximum


def test_batched_preprocessing_matches_sam2s_own():
    """Resize + normalise as one tensor op gives the embedding sam2's per-image path gives."""
    import torch

    from wsss.labelers.sam2_engine import EngineKey, Sam2Engine

    engine = Sam2Engine(EngineKey("tiny", None, "cpu", 0, 256))
    images = [np.random.default_rng(i).integers(0, 255, (80, 80, 3), dtype=np.uint8) for i in range(2)]
    with torch.inference_mode():
        engine.predictor.set_image_batch(images)
        reference = engine.predictor._features
        engine._set_image_batch_on_device(images)
        ours = engine.predictor._features
    assert torch.allclose(reference["image_embed"], ours["image_embed"], atol=1e-5)
    for expected, got in zip(reference["high_res_feats"], ours["high_res_feats"]):
        assert torch.allclose(expected, got, atol=1e-5)


def test_top_points_are_the_highest_scoring_pixels():
    from wsss.labelers.sam2 import top_points

    heatmap = blob((10, 10), 3, 0.6) + blob((50, 12), 3, 1.0)
    top = top_points(heatmap, 3)
    assert top[0].tolist() == [50.5, 12.5]  # the global maximum first
    assert np.all(np.abs(top - [50.5, 12.5]).max(axis=1) <= 1.0)  # then its neighbours: no spreading
    assert not np.all(np.abs(spread_peaks(heatmap, 3, 8) - [50.5, 12.5]).max(axis=1) <= 1.0)


def test_sam2_sees_each_image_at_its_own_size_and_returns_working_size_masks(context, batch):
    """The original (here 96 x 160: another size and aspect) is encoded; the centre prompt lands
    at the original's centre; the mask comes back at the working size."""
    import cv2

    from wsss.labelers.sam2 import scale_prompts

    release_engines()
    original = cv2.resize(batch["image"][0], (160, 96), interpolation=cv2.INTER_LINEAR)
    labeler = get_labeler_class("sam2_center")({"model": "tiny"}, context)
    engine = labeler.engine
    seen = []
    embed = engine.embed
    engine.embed = lambda images: seen.append([image.shape for image in images]) or embed(images)
    out = labeler({"image": batch["image"][:1], "original": [original]})
    assert seen == [[(96, 160, 3)]] and out["mask"].shape == (1, SIZE, SIZE)
    assert out["prompts"].tolist() == [[[32.0, 32.0, 1.0]]]  # stored at the working size
    masks, _ = engine.predict([np.array([[80.0, 48.0, 1.0]], np.float32)], None, multimask=True)
    largest = masks[0][masks[0].reshape(len(masks[0]), -1).sum(1).argmax()].astype(np.uint8)
    expected = cv2.resize(largest, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(out["mask"][0], expected)
    squeezed = get_labeler_class("sam2_center")({"model": "tiny", "original_size": False}, context)
    squeezed({"image": batch["image"][:1], "original": [original]})
    assert seen[-1] == [(SIZE, SIZE, 3)]  # the working-size square, as before
    points, box = scale_prompts(np.array([[32.0, 16.0, 1.0]], np.float32), np.array([8, 8, 32, 48]), 2.5, 1.5)
    assert points.tolist() == [[80.0, 24.0, 1.0]] and box.tolist() == [20.0, 12.0, 80.0, 72.0]


def test_images_of_different_sizes_preprocess_as_sam2_does():
    import torch

    from wsss.labelers.sam2_engine import EngineKey, Sam2Engine

    engine = Sam2Engine(EngineKey("tiny", None, "cpu", 0, 256))
    images = [np.random.default_rng(i).integers(0, 255, shape, dtype=np.uint8)
              for i, shape in enumerate([(80, 120, 3), (96, 64, 3)])]
    with torch.inference_mode():
        engine.predictor.set_image_batch(images)
        reference = engine.predictor._features
        engine._set_image_batch_on_device(images)
        ours = engine.predictor._features
    assert torch.allclose(reference["image_embed"], ours["image_embed"], atol=1e-5)
    assert engine.predictor._orig_hw == [(80, 120), (96, 64)]


def test_several_classes_prompt_sam2_per_class_with_one_encoder_pass(context, batch):
    """Per class the image carries: its own box (from its own map), one embedding for all."""
    labeler = get_labeler_class("sam2_box")(PARAMS["sam2_box"], context)  # the module's engine
    model = labeler.engine.predictor.model
    calls = []
    encode = model.forward_image
    model.forward_image = lambda images: calls.append(len(images)) or encode(images)
    images = np.ascontiguousarray(batch["image"][:, ::-1])  # not the batch the engine holds
    maps = np.zeros((2, 2, SIZE, SIZE), np.float32)
    maps[0, 0, 8:40, 20:56] = 0.9  # class 4 of image 0: box [20, 8, 56, 40]
    maps[0, 1, 44:60, 2:18] = 0.7  # class 1 of image 0: box [2, 44, 18, 60]
    maps[1, 0, 10:30, 10:30] = 0.8  # image 1 carries one class (column 1 is padding)
    labels = np.array([[4, 1], [2, -1]])
    out = labeler({"image": images, "image_id": batch["image_id"], "label": labels[:, 0],
                   "labels": labels, "heatmap": maps})
    assert calls == [2]  # two images, three class prompts, one encoder pass
    assert out["box"].tolist() == [[[20, 8, 56, 40], [2, 44, 18, 60]], [[10, 10, 30, 30], [-1] * 4]]
    assert set(np.unique(out["mask"][0]).tolist()) <= {0, 5, 2}
    assert set(np.unique(out["mask"][1]).tolist()) <= {0, 3}
    peaks = get_labeler_class("sam2_peaks")(PARAMS["sam2_peaks"], context)
    assert set(np.unique(peaks({"image": images, "image_id": batch["image_id"], "label": labels[:, 0],
                                "labels": labels, "heatmap": maps})["mask"][1]).tolist()) <= {0, 3}
    model.forward_image = encode
    assert calls == [2]  # the peaks reused the embedding too
