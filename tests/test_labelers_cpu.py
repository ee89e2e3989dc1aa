"""CPU pseudo-mask labelers: raw box, GrabCut, GrabCut ∩ SLIC (mix), and the sanity baselines.

Heatmaps are built here from the synthetic trimaps (a blurred pet mask, like a CAM that covers
the pet loosely): the test makes the input, the labelers never see a trimap.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsss.data.decode import decode_image, read_trimap
from wsss.data.pets import index
from wsss.data.synthetic import synthesize
from wsss.labelers import entries
from wsss.labelers.base import MASK_IGNORE, NO_BOX
from wsss.labelers.grabcut import GrabCutParams, grabcut_masks
from wsss.labelers.registry import get_labeler_class, list_labelers, validate_params
from wsss.metrics import SegmentationMeter, trimap_to_target

CPU_LABELERS = ("box", "grabcut", "mix", "all_foreground", "ellipse")
THRESHOLD = 0.3


def pet_heatmap(trimap: np.ndarray) -> np.ndarray:
    """A CAM stand-in: the pet mask blurred by 1/16 of the image side, peak 1."""
    blurred = cv2.GaussianBlur((trimap == 1).astype(np.float32), (0, 0), trimap.shape[0] / 16)
    return blurred / blurred.max()


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pets")
    synthesize(root, images=8, size=96, seed=0)
    records = index(root).records
    trimaps = np.stack([read_trimap(r.trimap_path) for r in records])
    batch = {
        "image": np.stack([decode_image(r.image_path) for r in records]),
        "label": np.array([r.label for r in records]),
        "image_id": np.array([r.image_id for r in records]),
        "heatmap": np.stack([pet_heatmap(t) for t in trimaps]),
    }
    return batch, trimaps


def make(name: str, **params):
    if name in ("box", "grabcut", "mix"):
        params.setdefault("threshold", THRESHOLD)
    return get_labeler_class(name)(params)


def blob_batch(heatmap: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """One noisy image with a given heatmap (N = 1)."""
    height, width = heatmap.shape
    image = np.random.default_rng(seed).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    return {"image": image, "label": np.array([0]), "image_id": np.array(["x"]),
            "heatmap": heatmap[None].astype(np.float32)}


def micro_dice(masks: np.ndarray, trimaps: np.ndarray) -> float:
    meter = SegmentationMeter()
    meter.update_batch(masks, np.stack([trimap_to_target(t) for t in trimaps]))
    return meter.result()["micro"]["dice"]


def test_registered_as_cpu_stage_with_heatmap_only_where_needed():
    known = list_labelers()
    for name in CPU_LABELERS:
        cls = get_labeler_class(name)
        assert name in known and known[name] and cls.stage == "cpu"
        needs_heatmap = cls().heatmap_ref() is not None
        assert needs_heatmap == (name in ("box", "grabcut", "mix"))
    assert set(validate_params("mix", {})) >= set(validate_params("grabcut", {}))


def test_band_is_refused_for_box_labelers():
    with pytest.raises(ValueError, match="band"):
        validate_params("grabcut", {"band": [0.2, 0.6]})


@pytest.mark.parametrize("name", CPU_LABELERS)
def test_shapes_values_and_determinism(pets, name):
    batch, _ = pets
    first, second = make(name)(batch), make(name)(batch)
    count, height, width = batch["image"].shape[:3]
    assert first["mask"].shape == (count, height, width) and first["mask"].dtype == np.uint8
    assert set(np.unique(first["mask"]).tolist()) <= {0, 1}
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    if name in ("box", "grabcut", "mix"):
        assert first["box"].shape == (count, 4) and first["box"].dtype == np.int32
        assert (first["box"][:, 2] > first["box"][:, 0]).all()


@pytest.mark.parametrize("name", CPU_LABELERS)
def test_empty_batch(pets, name):
    batch = {key: value[:0] for key, value in pets[0].items()}
    output = make(name)(batch)
    assert output["mask"].shape == (0, 96, 96)
    assert "box" not in output or output["box"].shape == (0, 4)


def test_fingerprint_follows_params():
    assert make("grabcut").fingerprint() == make("grabcut").fingerprint()
    assert make("grabcut").fingerprint() != make("grabcut", iterations=3).fingerprint()
    assert make("mix").fingerprint() != make("mix", ratio=0.6).fingerprint()


@pytest.mark.parametrize("name", CPU_LABELERS)
def test_ground_truth_never_reaches_label_batch(pets, name):
    batch, trimaps = pets
    seen: list[set[str]] = []

    class Spy(get_labeler_class(name)):
        def label_batch(self, visible):
            seen.append(set(visible))
            return super().label_batch(visible)

    with_trimap = Spy({"threshold": THRESHOLD} if name in ("box", "grabcut", "mix") else {})(
        {**batch, "trimap": trimaps, "head_box": np.zeros((len(trimaps), 4))})
    without = make(name)(batch)
    assert seen and not seen[0] & {"trimap", "head_box"}
    for key in without:
        np.testing.assert_array_equal(with_trimap[key], without[key])


def test_box_of_a_known_blob_largest_and_all_components():
    heatmap = np.zeros((40, 60), np.float32)
    heatmap[5:15, 10:30] = 0.9  # the larger blob: 10 x 20
    heatmap[30:33, 50:55] = 0.8  # a smaller one
    largest = make("box", threshold=0.5)(blob_batch(heatmap))
    np.testing.assert_array_equal(largest["box"][0], [10, 5, 30, 15])
    assert largest["mask"].sum() == 200 and largest["mask"][0, 5:15, 10:30].all()
    every = make("box", threshold=0.5, component="all")(blob_batch(heatmap))
    np.testing.assert_array_equal(every["box"][0], [10, 5, 55, 33])
    assert every["mask"].sum() == 45 * 28
    assert make("box", threshold=0.85)(blob_batch(heatmap))["box"][0].tolist() == [10, 5, 30, 15]


@pytest.mark.parametrize("name", ["box", "grabcut", "mix"])
def test_empty_heatmap_gives_no_box_and_the_empty_policy(name):
    batch = blob_batch(np.zeros((32, 32)))
    background = make(name)(batch)
    ignore = make(name, empty="ignore")(batch)
    np.testing.assert_array_equal(background["box"][0], NO_BOX)
    assert not background["mask"].any()
    assert (ignore["mask"] == MASK_IGNORE).all()


def run_grabcut(image: np.ndarray, box, **params) -> tuple[np.ndarray, str]:
    masks, outcomes = grabcut_masks(image[None], np.array([box], np.int32),
                                    GrabCutParams(**params))
    return masks[0], outcomes[0]


def box_mask(shape, box) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 1
    return mask


def test_grabcut_tiny_box_is_the_raw_box(pets):
    image = pets[0]["image"][0]
    for box in ([20, 30, 21, 60], [20, 30, 50, 31]):
        mask, outcome = run_grabcut(image, box)
        assert outcome == "tiny_box"
        np.testing.assert_array_equal(mask, box_mask(image.shape[:2], box))


@pytest.mark.parametrize("corners", [True, False])
def test_grabcut_box_touching_every_border_runs_framed(pets, corners):
    batch, _ = pets
    heatmap = np.zeros(batch["heatmap"].shape[1:], np.float32)
    if corners:
        heatmap[:] = 1.0  # the whole image is the box
    else:  # a cross: its box touches all four borders, its corners are cold
        heatmap[40:56, :], heatmap[:, 40:56] = 1.0, 1.0
    output = make("grabcut")({**batch, "heatmap": np.repeat(heatmap[None], 8, axis=0)})
    assert (output["box"] == [0, 0, 96, 96]).all()
    _, outcome = run_grabcut(batch["image"][0], [0, 0, 96, 96])
    assert outcome == "framed" and output["mask"].any(axis=(1, 2)).all()
    assert run_grabcut(batch["image"][0], [10, 10, 60, 60], margin=0.0, margin_px=0)[1] == "framed"


def test_grabcut_failure_and_empty_result_fall_back_to_the_raw_box():
    tiny = np.zeros((4, 4, 3), np.uint8)  # the 2 px frame leaves no probable foreground
    mask, outcome = run_grabcut(tiny, [0, 0, 4, 4])
    assert outcome == "failed" and mask.all()
    flat = np.full((40, 40, 3), 120, np.uint8)  # nothing tells the box from its surround
    mask, outcome = run_grabcut(flat, [10, 12, 30, 25])
    assert outcome == "empty_result"
    np.testing.assert_array_equal(mask, box_mask((40, 40), [10, 12, 30, 25]))


def test_grabcut_is_seeded_and_stays_inside_the_crop(pets):
    batch, _ = pets
    boxes = make("box")(batch)["box"]
    first, outcomes = grabcut_masks(batch["image"], boxes, GrabCutParams(seed=3))
    second, _ = grabcut_masks(batch["image"], boxes, GrabCutParams(seed=3))
    np.testing.assert_array_equal(first, second)
    assert set(outcomes) <= {"grabcut", "empty_result"}
    tight, _ = grabcut_masks(batch["image"], boxes, GrabCutParams(margin=0.0, margin_px=2))
    for mask, (x0, y0, x1, y1) in zip(tight, boxes):
        outside = mask.copy()
        outside[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = 0
        assert not outside.any()


def test_grabcut_downscaled_fast_path(pets):
    batch, _ = pets
    boxes = make("box")(batch)["box"]
    params = GrabCutParams(max_side=48, margin=None)  # 96 px images: GrabCut runs at 48 px
    fast, outcomes = grabcut_masks(batch["image"], boxes, params)
    np.testing.assert_array_equal(fast, grabcut_masks(batch["image"], boxes, params)[0])
    assert set(np.unique(fast).tolist()) <= {0, 1} and outcomes.count("grabcut") >= 4
    for mask, outcome in zip(fast, outcomes):  # nearest-neighbour upsampling: 2 x 2 blocks
        if outcome == "grabcut":
            np.testing.assert_array_equal(mask, mask[::2, ::2].repeat(2, 0).repeat(2, 1))
    full, _ = grabcut_masks(batch["image"], boxes, GrabCutParams(margin=None))
    assert not np.array_equal(fast, full)


def test_mix_is_inside_grabcut_and_reuses_a_given_grabcut(pets):
    batch, _ = pets
    grabcut = make("grabcut")(batch)["mask"]
    labeler = make("mix")
    mix = labeler(batch)
    np.testing.assert_array_equal(mix["class_masks"], grabcut)
    assert not (mix["mask"] & (1 - grabcut)).any() and mix["mask"].any()
    np.testing.assert_array_equal(
        labeler.mix_from_grabcut(batch["image"], mix["box"], grabcut), mix["mask"])
    everything = np.ones_like(grabcut)[:, None]  # a different GrabCut mask changes the mix
    one, _ = entries.as_entries(batch)
    direct = labeler.label_batch({**one, "class_masks": everything})
    assert direct["class_masks"] is everything and direct["mask"].sum() > mix["mask"].sum()


def test_mix_ratio_is_monotone(pets):
    batch, _ = pets
    counts = [int(make("mix", ratio=r)(batch)["mask"].sum()) for r in (0.0, 0.3, 0.5, 0.8)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[3]


def test_an_empty_mix_falls_back_to_the_raw_box_as_grabcut_does(pets):
    batch, _ = pets
    # no superpixel is more than 100 % inside GrabCut: every mix is empty, every mask is the box
    np.testing.assert_array_equal(make("mix", ratio=1.0)(batch)["mask"], make("box")(batch)["mask"])


def test_the_box_region_keeps_slic_and_the_mix_inside_the_box(pets):
    batch, _ = pets
    boxes = make("box")(batch)["mask"]
    inside = make("mix", region="box")(batch)["mask"]
    assert inside.any() and not (inside & (1 - boxes)).any()
    assert not np.array_equal(inside, make("mix")(batch)["mask"])


def test_a_failing_slic_quarantines_its_image_not_the_batch(pets, monkeypatch):
    from wsss.labelers import mix as mix_module
    from wsss.labelers.base import LabelerContext
    from wsss.masks.specs import StageSpec
    from wsss.masks.stages import cpu_stage

    batch, _ = pets
    real = mix_module.superpixels
    victim = batch["image"][3]

    def slic_failing_on_one(crop, params):
        if crop.base is victim.base and np.shares_memory(crop, victim):
            raise ValueError("SLIC failed")
        return real(crop, params)

    monkeypatch.setattr(mix_module, "superpixels", slic_failing_on_one)
    params = {"threshold": THRESHOLD, "iterations": 2}
    specs = [StageSpec(id="grabcut", name="grabcut", params=validate_params("grabcut", params), fingerprint="g",
                       uri="unused", kind="masks", heatmap_column="heatmap__h"),
             StageSpec(id="mix", name="mix", params=validate_params("mix", params), fingerprint="m",
                       uri="unused", kind="masks", heatmap_column="heatmap__h")]
    one, _ = entries.as_entries(batch)  # the pipeline's one form: K = 1 entry per image
    rows = {"image": batch["image"], "labels": one["labels"], "classes": one["classes"],
            "image_id": batch["image_id"], "error": np.array([""] * 8, dtype=object),
            "heatmap__h": one["heatmap"]}
    out = cpu_stage(rows, specs, LabelerContext())
    assert out["error__mix"][3] == "mix: ValueError: SLIC failed"
    assert (out["error__mix"][[0, 1, 2, 4, 5, 6, 7]] == "").all() and out["mask__mix"][0].any()
    assert (out["error__grabcut"] == "").all()  # GrabCut's own set is unaffected


def test_baselines_pixel_counts():
    batch = blob_batch(np.zeros((40, 60)))
    batch["image"] = np.repeat(batch["image"], 3, axis=0)
    assert make("all_foreground")(batch)["mask"].sum() == 3 * 40 * 60
    ellipse = make("ellipse")(batch)["mask"]
    expected = sum(((x + 0.5 - 30) / 21) ** 2 + ((y + 0.5 - 20) / 14) ** 2 <= 1
                   for y in range(40) for x in range(60))
    assert (ellipse.sum(axis=(1, 2)) == expected).all() and 0.3 < expected / 2400 < 0.4
    middle_row = ellipse[0, 20]
    assert middle_row.sum() == 42 and middle_row[9:51].all()
    assert make("ellipse", fraction=1.0)(batch)["mask"].sum() > ellipse.sum()


def test_grabcut_and_mix_beat_the_raw_box(pets, capsys):
    batch, trimaps = pets
    dice = {name: micro_dice(make(name)(batch)["mask"], trimaps)
            for name in ("box", "grabcut", "mix", "all_foreground", "ellipse")}
    with capsys.disabled():
        print("\nmicro Dice on 8 synthetic images:", {k: round(v, 4) for k, v in dice.items()})
    assert dice["grabcut"] > dice["box"] + 0.05 and dice["mix"] > dice["box"] + 0.05


def test_seeded_grabcut_is_deterministic_and_grows_past_a_box_that_cuts_the_pet(pets):
    batch, trimaps = pets
    # a CAM that sees only the upper half of each pet: its box cuts the pet in two
    half = batch["heatmap"].copy()
    for heatmap in half:
        rows = np.flatnonzero(heatmap.max(axis=1) >= 0.5)
        heatmap[(rows[0] + rows[-1]) // 2:] *= 0.5
    cut = dict(batch, heatmap=half)
    seeded = make("grabcut", init="seeds")(cut)["mask"]
    again = make("grabcut", init="seeds")(cut)["mask"]
    np.testing.assert_array_equal(seeded, again)
    boxed = make("grabcut", threshold=0.5)(cut)["mask"]
    assert micro_dice(seeded, trimaps) > micro_dice(boxed, trimaps) + 0.05
    assert make("mix", init="seeds")(cut)["mask"].sum() <= seeded.sum()  # mix ⊆ its GrabCut


def test_seeded_grabcut_degenerate_seeds_fall_back_to_the_box_path():
    flat = np.zeros((40, 40), np.float32)
    flat[10:30, 10:30] = 0.2  # under seeds' lo (0.3): no pet seed, a box at threshold 0.1
    labeler = make("grabcut", init="seeds", threshold=0.1)
    mask = labeler(blob_batch(flat))["mask"][0]
    assert mask.any() and not mask[:5].any()  # the box path ran: nothing far outside the box
    nothing = make("grabcut", init="seeds")(blob_batch(np.zeros((40, 40), np.float32)))["mask"]
    assert not nothing.any()  # no box: the empty policy (background)


def test_seed_params_are_checked():
    with pytest.raises(ValueError, match="sure_background"):
        validate_params("grabcut", {"init": "seeds", "seeds": [0.7, 0.3]})
    with pytest.raises(ValueError, match="box_source: dataset"):
        validate_params("mix", {"init": "seeds", "box_source": "dataset"})


def test_heatmap_views_name_their_column_and_change_the_sets_identity():
    from wsss.labelers.base import HeatmapRef

    one = HeatmapRef(method="cam")
    views = HeatmapRef(method="cam", scales=[1.4, 0.6, 1.0], flip=True)
    assert one.key() == "cam-labelled" and views.key() == "cam-labelled@0.6,1,1.4+flip"
    assert HeatmapRef.from_key(views.key()) == views and HeatmapRef.from_key(one.key()) == one
    plain = make("grabcut", heatmap={"method": "cam"})
    viewed = make("grabcut", heatmap={"method": "cam", "scales": [0.6, 1.0, 1.4], "flip": True})
    assert plain.fingerprint() != viewed.fingerprint()
    assert viewed.heatmap_source().own_ref() == viewed.heatmap_ref()
    with pytest.raises(ValueError, match="scales"):
        HeatmapRef(method="cam", scales=[0.0])
