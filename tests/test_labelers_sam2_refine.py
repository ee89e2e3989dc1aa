"""sam2_refine and sam2_cam_select on SAM2 hiera tiny at 128 px with random weights, CPU.

Random weights make SAM2's masks meaningless, so the tests check the code paths and the
geometry: which prompts reach the engine, which candidate is kept, and that the keep rule and
the merge with the CAM match a hand computation on the engine's own outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from wsss.data.synthetic import render_image
from wsss.labelers.base import NO_BOX, LabelerContext
from wsss.labelers.registry import get_labeler_class, list_labelers, validate_params
from wsss.labelers.sam2 import label_with_shared_embedding
from wsss.labelers.sam2_engine import release_engines
from wsss.labelers.sam2_refine import (
    background_distance,
    grid_points,
    interior_distance,
    keep_proposals,
    refine_prompts,
)

SIZE = 64
REFINE = {"model": "tiny", "image_size": 128, "sources": ["crf"], "min_distance": 8, "negative_points": 1}
SELECT = {"model": "tiny", "image_size": 128, "grid": 4}


def blob(centre: tuple[int, int], sigma: float, height: float = 1.0, size: int = SIZE) -> np.ndarray:
    """A Gaussian bump at (x, y) with an exactly-zero tail, like a ReLU'd CAM."""
    ys, xs = np.mgrid[:size, :size]
    bump = height * np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.where(bump > 0.05 * height, bump, 0.0).astype(np.float32)


def local_maxima(values: np.ndarray) -> np.ndarray:
    """Pixels no 8-neighbour exceeds (plateaus included), as spread_peaks defines a peak."""
    padded = np.pad(values, 1, constant_values=-np.inf)
    neighbours = [padded[1 + dy : 1 + dy + values.shape[0], 1 + dx : 1 + dx + values.shape[1]]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return values >= np.max(neighbours, axis=0)


def pixel(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of [x, y] pixel centres."""
    return (points[:, 1] - 0.5).astype(int), (points[:, 0] - 0.5).astype(int)


def hand_iou(candidate: np.ndarray, coarse: np.ndarray) -> float:
    valid = coarse != 255
    intersection = np.sum(candidate.astype(bool) & (coarse == 1))
    union = np.sum((candidate.astype(bool) & valid) | (coarse == 1))
    return intersection / max(union, 1)


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> LabelerContext:
    models_dir = tmp_path_factory.mktemp("no-sam2-weights")
    return LabelerContext(models_dir=str(models_dir), allow_random_weights=True, seed=0)


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    """Two synthetic pets; coarse masks: the first pet's silhouette with an ignore band, and
    one holding only ignore and background (no foreground to refine); a CAM blob each."""
    rendered = [render_image(seed=0, index=i, size=SIZE) for i in range(2)]
    coarse = np.zeros((2, SIZE, SIZE), np.uint8)
    coarse[0] = rendered[0][1]
    coarse[0, :, 30:34][coarse[0, :, 30:34] == 1] = 255
    coarse[1, 20:40, 20:40] = 255
    return {
        "image": np.stack([image for image, _, _ in rendered]),
        "label": np.array([0, 1]),
        "image_id": np.array(["a_1", "b_2"]),
        "heatmap": np.stack([blob((24, 32), 10.0), blob((40, 24), 8.0)]),
        "source_masks": coarse[:, None],
    }


@pytest.fixture(scope="module")
def shared_run(context, batch):
    """Both labelers on one batch: outputs, encoder passes and the proposals the engine got."""
    release_engines()
    labelers = [get_labeler_class("sam2_refine")(REFINE, context),
                get_labeler_class("sam2_cam_select")(SELECT, context)]
    engine = labelers[0].engine
    model, encode = engine.predictor.model, engine.predictor.model.forward_image
    calls, proposals = [], []
    model.forward_image = lambda images: calls.append(len(images)) or encode(images)
    decode = engine.predict_proposals
    engine.predict_proposals = lambda points, multimask: proposals.append(
        [np.array(p) for p in points]) or decode(points, multimask)
    outputs = label_with_shared_embedding(labelers, batch)
    return labelers, outputs, calls, proposals


def test_registered_as_sam2_stage_and_params_checked():
    for name in ("sam2_refine", "sam2_cam_select"):
        assert name in list_labelers()
        assert get_labeler_class(name).stage == "sam2"
    refine = validate_params("sam2_refine", {"sources": ["crf"]})
    assert (refine["select"], refine["box"], refine["points"], refine["mask_prompt"],
            refine["negative_points"]) == ("iou", True, 3, False, 0)
    select = validate_params("sam2_cam_select", {})
    assert (select["threshold"], select["proposals"], select["grid"], select["inside"],
            select["cover"]) == (0.5, "grid", 8, 0.5, 0.5)
    with pytest.raises(ValueError, match="params.sources"):
        validate_params("sam2_refine", {"sources": ["crf", "grabcut"]})
    with pytest.raises(ValueError, match="params.sources"):
        validate_params("sam2_refine", {})
    with pytest.raises(ValueError, match="no prompt"):
        validate_params("sam2_refine", {"sources": ["crf"], "box": False, "points": 0})
    with pytest.raises(ValueError, match="params.inside"):
        validate_params("sam2_cam_select", {"inside": 1.5})
    with pytest.raises(ValueError, match="params.proposals"):
        validate_params("sam2_cam_select", {"proposals": "everything"})


def test_refine_reads_its_source_and_names_it(context):
    labeler = get_labeler_class("sam2_refine")(REFINE, context)
    assert labeler.source_ids() == ["crf"]
    other = get_labeler_class("sam2_refine")({**REFINE, "sources": ["grabcut"]}, context)
    assert other.fingerprint() != labeler.fingerprint()
    with pytest.raises(ValueError, match="source_masks"):
        labeler({"image": np.zeros((1, SIZE, SIZE, 3), np.uint8)})


def test_refine_prompts_box_interior_points_and_far_negatives():
    coarse = np.zeros((SIZE, SIZE), np.uint8)
    coarse[8:40, 4:24] = 1  # the larger square: its centre is the most interior point
    coarse[44:60, 40:56] = 1
    coarse[20:28, 12:16] = 255  # ignore counts as not foreground: points avoid it
    params = get_labeler_class("sam2_refine").Params(sources=["crf"], points=4, min_distance=8,
                                                     negative_points=2)
    points, box = refine_prompts(coarse, params)
    assert box.tolist() == [4, 8, 56, 60]  # bounding box of every foreground pixel, end exclusive
    positives, negatives = points[points[:, 2] == 1], points[points[:, 2] == 0]
    assert points[:, 2].tolist() == [1.0] * len(positives) + [0.0] * 2
    distance = interior_distance(coarse)
    rows, columns = pixel(positives)
    assert np.all(coarse[rows, columns] == 1)
    assert distance[rows[0], columns[0]] == distance.max()
    assert np.all(local_maxima(distance)[rows, columns])
    assert np.any((rows >= 44) & (columns >= 40))  # the smaller square gets a point too
    gaps = np.linalg.norm(positives[:, None, :2] - positives[None, :, :2], axis=-1)
    assert gaps[np.triu_indices(len(positives), 1)].min() >= 8
    rows, columns = pixel(negatives)
    assert np.all(coarse[rows, columns] == 0)
    assert background_distance(coarse)[rows[0], columns[0]] == background_distance(coarse).max()


def test_interior_distance_counts_the_image_edge_as_a_boundary():
    strip = np.zeros((SIZE, SIZE), np.uint8)
    strip[:20] = 1  # cut by the top edge: the point goes to the middle of what is visible
    params = get_labeler_class("sam2_refine").Params(sources=["crf"], points=1)
    points, _ = refine_prompts(strip, params)
    assert points[0, 1] in (9.5, 10.5)  # rows 9 and 10 are 10 px from both the edge and row 20


def test_empty_coarse_masks_give_no_prompts():
    params = get_labeler_class("sam2_refine").Params(sources=["crf"], negative_points=2)
    assert refine_prompts(np.zeros((SIZE, SIZE), np.uint8), params) == (None, None)
    assert refine_prompts(np.full((SIZE, SIZE), 255, np.uint8), params) == (None, None)


def test_one_encoder_pass_for_both_labelers(shared_run, batch):
    labelers, outputs, calls, _ = shared_run
    assert calls == [len(batch["image"])]
    assert labelers[0].engine is labelers[1].engine and labelers[0].engine.encoder_calls == 1
    for output in outputs.values():
        assert output["mask"].shape == (2, SIZE, SIZE) and output["mask"].dtype == np.uint8
        assert set(np.unique(output["mask"]).tolist()) <= {0, 1}
        assert output["prompts"].dtype == np.float32
    assert outputs[0]["prompts"].shape == (2, 4, 3) and outputs[1]["prompts"].shape == (2, 16, 3)
    assert "box" in outputs[0] and "box" not in outputs[1]  # grid proposals use no box


def test_refine_keeps_the_candidate_closest_to_the_coarse_mask(shared_run, batch, context):
    labelers, outputs, _, _ = shared_run
    refined, coarse = outputs[0], batch["source_masks"][:, 0]
    assert refined["box"][0].tolist() == refine_prompts(coarse[0], labelers[0].params)[1].tolist()
    assert refined["box"][1].tolist() == NO_BOX.tolist()  # only ignore and background
    assert np.all(refined["prompts"][1] == -1) and not refined["mask"][1].any()
    table = refined["prompts"][0]
    points = table[table[:, 2] >= 0]
    assert points[:, 2].tolist() == [1.0] * (len(points) - 1) + [0.0]
    engine = labelers[0].engine
    engine.embed(batch["image"])  # the batch already encoded: no second pass
    candidates, scores = engine.predict([points, None], [refined["box"][0], None], multimask=True)
    ious = [hand_iou(candidate, coarse[0]) for candidate in candidates[0]]
    np.testing.assert_array_equal(refined["mask"][0], candidates[0][int(np.argmax(ious))])
    expected = {"largest": candidates[0][candidates[0].reshape(3, -1).sum(1).argmax()],
                "score": candidates[0][scores[0].argmax()]}
    for select, mask in expected.items():
        labeler = get_labeler_class("sam2_refine")({**REFINE, "select": select}, context)
        np.testing.assert_array_equal(labeler(batch)["mask"][0], mask)
    assert engine.encoder_calls == 1


def test_mask_prompt_reaches_sam2_as_low_resolution_logits(shared_run, batch, context):
    labeler = get_labeler_class("sam2_refine")(
        {**REFINE, "box": False, "points": 0, "negative_points": 0, "mask_prompt": True}, context)
    engine, asked = labeler.engine, []
    predict = engine.predict
    engine.predict = lambda *args: asked.append(args) or predict(*args)
    try:
        output = labeler(batch)
    finally:
        del engine.predict
    points, boxes, _, mask_inputs = asked[0]
    assert points == [None, None] and boxes == [None, None]
    assert mask_inputs[0].shape == (1, 32, 32)  # image_size / 4
    blocks = batch["source_masks"][0, 0].reshape(32, 2, 32, 2)  # each low-res pixel: 2 x 2 of 64 x 64
    logits = mask_inputs[0][0]
    np.testing.assert_allclose(logits[(blocks == 1).all(axis=(1, 3))], 10.0)
    np.testing.assert_allclose(logits[(blocks == 0).all(axis=(1, 3))], -10.0)
    assert np.all(logits[(blocks == 255).all(axis=(1, 3))] == 0.0)  # ignore: undecided
    assert "box" not in output and np.all(output["prompts"] == -1)
    assert not output["mask"][1].any()


def test_grid_proposals_reach_the_engine_as_single_points(shared_run, batch):
    _, outputs, _, proposals = shared_run
    assert [len(points) for points in proposals[0]] == [16, 16]
    lattice = grid_points(SIZE, SIZE, 4)
    assert lattice[:5].tolist() == [[8, 8], [24, 8], [40, 8], [56, 8], [8, 24]]
    for points in proposals[0]:
        np.testing.assert_array_equal(points, lattice)
    kept = outputs[1]["prompts"]
    assert np.all((kept == -1).all(-1) | (kept[..., :2] == lattice).all(-1))


@pytest.fixture(scope="module")
def grid_proposals(shared_run, batch) -> list[list[np.ndarray]]:
    """Per image the lattice's proposals straight from the engine, each its best-scored
    candidate (select: score), on the already encoded batch."""
    engine = shared_run[0][1].engine
    engine.embed(batch["image"])
    lattice = grid_points(SIZE, SIZE, 4)
    masks, scores = engine.predict_proposals([lattice, lattice], True)
    return [[m[s.argmax()] for m, s in zip(image_masks, image_scores)]
            for image_masks, image_scores in zip(masks, scores)]


def hand_selection(proposals: list[list[np.ndarray]], heatmaps: np.ndarray, inside: float = 0.5,
                   cover: float = 0.5) -> list[tuple[np.ndarray, np.ndarray]]:
    """The keep rule and the merge with the CAM, recomputed: (mask, kept) per image."""
    results = []
    for chosen, heatmap in zip(proposals, heatmaps):
        region = heatmap >= 0.5
        kept = []
        for proposal in chosen:
            area, overlap = proposal.sum(), (proposal & region).sum()
            kept.append(area > 0 and (overlap / area > inside or
                                      (region.any() and overlap / region.sum() > cover)))
        union = np.any([m for m, k in zip(chosen, kept) if k] or [np.zeros_like(region)], axis=0)
        results.append((np.where(union, 1, region).astype(np.uint8), np.array(kept)))
    return results


def test_cam_select_matches_a_hand_computation(shared_run, batch, context, grid_proposals):
    outputs = shared_run[1]
    for (mask, kept), output_mask, table in zip(
            hand_selection(grid_proposals, batch["heatmap"]), outputs[1]["mask"], outputs[1]["prompts"]):
        np.testing.assert_array_equal(output_mask, mask)
        assert np.array_equal(table[:, 2] == 1, kept)
    # Random weights make every proposal big, so the defaults keep all of them (by cover); a cover
    # cut at the median share splits them, and the labeler must split them the same way.
    region = batch["heatmap"][0] >= 0.5
    cover = float(np.median([(proposal & region).sum() / region.sum() for proposal in grid_proposals[0]]))
    output = get_labeler_class("sam2_cam_select")({**SELECT, "cover": cover}, context)(batch)
    expected = hand_selection(grid_proposals, batch["heatmap"], cover=cover)
    assert 0 < expected[0][1].sum() < 16
    for (mask, kept), output_mask, table in zip(expected, output["mask"], output["prompts"]):
        np.testing.assert_array_equal(output_mask, mask)
        assert np.array_equal(table[:, 2] == 1, kept)


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_constant_heatmaps(shared_run, batch, context, grid_proposals, level):
    """No CAM region: nothing is kept and the thresholded CAM (all background) stands; a CAM
    everywhere: every non-empty proposal lies inside it."""
    heatmaps = np.full((2, SIZE, SIZE), level, np.float32)
    labeler = get_labeler_class("sam2_cam_select")(SELECT, context)
    output = labeler({**batch, "heatmap": heatmaps})
    np.testing.assert_array_equal(output["mask"], np.full((2, SIZE, SIZE), int(level), np.uint8))
    for (_, kept), chosen, table in zip(hand_selection(grid_proposals, heatmaps), grid_proposals,
                                        output["prompts"]):
        nonempty = np.array([proposal.any() for proposal in chosen])
        assert np.array_equal(kept, nonempty & (level == 1.0))
        assert np.array_equal(table[:, 2] == 1, kept)
    assert labeler.engine.encoder_calls == 1


def test_keep_rule_inside_or_cover():
    region = np.zeros((1, 10, 10), bool)
    region[0, :, :5] = True  # 50 pixels
    part = np.zeros((10, 10), bool)
    part[0:2, 0:2] = True  # all inside, covers 8%: a part of the object
    spill = np.zeros((10, 10), bool)
    spill[:, :] = True  # half inside, covers all of it: the object and more
    stray = np.zeros((10, 10), bool)
    stray[:, 3:10] = True  # 20 of 70 inside, covers 40%
    proposals = np.stack([part, spill, stray, np.zeros((10, 10), bool)])
    assert keep_proposals(proposals, region[0], 0.5, 0.5).tolist() == [True, True, False, False]
    assert keep_proposals(proposals, region[0], 0.25, 0.99).tolist() == [True, True, True, False]
    assert not keep_proposals(proposals, np.zeros((10, 10), bool), 0.0, 0.0).any()


def test_cam_proposals_are_peaks_and_box(shared_run, batch, context):
    from wsss.labelers.geometry import boxes_from_heatmaps
    from wsss.labelers.sam2 import spread_peaks

    labeler = get_labeler_class("sam2_cam_select")(
        {**SELECT, "proposals": "cam", "points": 2, "min_distance": 8, "threshold": 0.3}, context)
    heatmaps = batch["heatmap"].copy()
    heatmaps[1] *= 0.2  # below the threshold everywhere: no box, peaks only
    engine, asked = labeler.engine, []
    decode = engine.predict_proposals
    engine.predict_proposals = lambda points, multimask: asked.append(points) or decode(points, multimask)
    try:
        output = labeler({**batch, "heatmap": heatmaps})
    finally:
        del engine.predict_proposals
    for points, heatmap in zip(asked[0], heatmaps):
        np.testing.assert_array_equal(points, spread_peaks(heatmap, 2, 8))
    assert output["box"][0].tolist() == boxes_from_heatmaps(heatmaps[:1], 0.3, "largest")[0].tolist()
    assert output["box"][1].tolist() == NO_BOX.tolist()
    assert output["prompts"].shape == (2, 2, 3) and not output["mask"][1].any()


def test_each_image_at_its_own_size(context, batch):
    """An original of 96 x 160: prompts reach SAM2 scaled to it, masks come back at 64 x 64."""
    import cv2

    original = cv2.resize(batch["image"][0], (160, 96), interpolation=cv2.INTER_LINEAR)
    one = {"image": batch["image"][:1], "original": [original], "heatmap": batch["heatmap"][:1],
           "source_masks": batch["source_masks"][:1]}
    refine = get_labeler_class("sam2_refine")(REFINE, context)
    select = get_labeler_class("sam2_cam_select")(SELECT, context)
    engine, predicted, proposed = refine.engine, [], []
    encoded = engine.encoder_calls
    predict, decode = engine.predict, engine.predict_proposals
    engine.predict = lambda *args: predicted.append(args) or predict(*args)
    engine.predict_proposals = lambda points, multimask: proposed.append(points) or decode(points, multimask)
    refined, selected = refine(one), select(one)
    assert engine.encoder_calls == encoded + 1 and engine.predictor._orig_hw == [(96, 160)]
    points, boxes = predicted[0][0], predicted[0][1]
    candidates, _ = predict(points, boxes, True)
    assert candidates[0].shape[1:] == (96, 160)
    factors = np.array([160 / SIZE, 96 / SIZE], np.float32)
    table = refined["prompts"][0]
    np.testing.assert_allclose(points[0][:, :2], table[table[:, 2] >= 0][:, :2] * factors)
    np.testing.assert_allclose(boxes[0], refined["box"][0] * np.tile(factors, 2))
    np.testing.assert_allclose(proposed[0][0], grid_points(SIZE, SIZE, 4) * factors)
    assert refined["mask"].shape == selected["mask"].shape == (1, SIZE, SIZE)
    small = [cv2.resize(c.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
             for c in candidates[0]]
    best = small[int(np.argmax([hand_iou(c, one["source_masks"][0, 0]) for c in small]))]
    np.testing.assert_array_equal(refined["mask"][0], best)
    square = get_labeler_class("sam2_refine")(REFINE, context)({**one, "original": None})
    np.testing.assert_array_equal(refined["prompts"], square["prompts"])  # stored at working size
    del engine.predict, engine.predict_proposals
