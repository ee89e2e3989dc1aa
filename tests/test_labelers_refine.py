"""Labelers built on other mask sets: ``crf`` (dense-CRF refinement of one set) and ``agree``
(agreement of several sets, disagreement ignored) and ``choose`` (per image, the candidate set
the others' vote agrees with).

Coarse masks are made here from the synthetic trimaps (the ground-truth pet dilated, eroded, or
blurred like a CAM): the test makes the input, the labelers never see a trimap.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsss.data.decode import decode_image, read_trimap
from wsss.data.pets import index
from wsss.data.synthetic import synthesize
from wsss.labelers import crf as crf_module
from wsss.labelers.agreement import AgreementParams, agreed_masks
from wsss.labelers.base import MASK_IGNORE
from wsss.labelers.crf import CrfParams, dense_crf, pairwise_kernel, window_offsets
from wsss.labelers.registry import get_labeler_class, list_labelers, validate_params
from wsss.metrics import SegmentationMeter, trimap_to_target

I = MASK_IGNORE  # noqa: E741  (short, for the arrays below)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as in Ray's 1-CPU tasks: on a shared 2-core machine two intra-op
    threads wait on each other (10x slower here); the masks do not depend on it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    }
    return batch, trimaps


def pet_masks(trimaps: np.ndarray) -> np.ndarray:
    return (trimaps == 1).astype(np.uint8)


def morphed(masks: np.ndarray, radius: int, operation) -> np.ndarray:
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([operation(mask, disc) for mask in masks])


def cam_like(masks: np.ndarray) -> np.ndarray:
    """The pet blurred by 1/16 of the side and cut at 0.3 of its peak: a loose CAM mask."""
    cut = []
    for mask in masks:
        blurred = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), mask.shape[0] / 16)
        cut.append((blurred >= 0.3 * blurred.max()).astype(np.uint8))
    return np.stack(cut)


COARSE = {
    "dilated": lambda pets: morphed(pets, 6, cv2.dilate),
    "eroded": lambda pets: morphed(pets, 4, cv2.erode),
    "cam": cam_like,
}


def micro_dice(masks: np.ndarray, trimaps: np.ndarray) -> float:
    meter = SegmentationMeter()
    meter.update_batch(masks, np.stack([trimap_to_target(t) for t in trimaps]))
    return meter.result()["micro"]["dice"]


def with_sources(batch: dict, *source_masks: np.ndarray) -> dict:
    return {**batch, "source_masks": np.stack(source_masks, axis=1)}


def crf(**params):
    return get_labeler_class("crf")({"sources": ["coarse"], **params})


# -- registry and params -----------------------------------------------------------------------


def test_registered_on_the_cpu_stage_reading_their_sources():
    known = list_labelers()
    for name, sources in (("crf", ["gradcam"]), ("agree", ["box", "mix"])):
        cls = get_labeler_class(name)
        assert name in known and known[name] and cls.stage == "cpu"
        assert cls({"sources": sources}).source_ids() == sources


@pytest.mark.parametrize("name, params, field", [
    ("crf", {"sources": ["a", "b"]}, "sources"),
    ("crf", {}, "sources"),
    ("crf", {"sources": ["a"], "window": 10}, "window"),
    ("crf", {"sources": ["a"], "confidence": 1.0}, "confidence"),
    ("crf", {"sources": ["a"], "sigma": 3}, "sigma"),
    ("agree", {"sources": ["a"]}, "sources"),
    ("agree", {"sources": ["a", "a"]}, "sources"),
    ("agree", {"sources": ["a", "b"], "min_agree": 0.4}, "min_agree"),
    ("choose", {"sources": ["a", "b"]}, "sources"),
    ("choose", {"sources": ["a", "b", "a"]}, "sources"),
    ("choose", {"sources": ["a", "b", "c"], "candidates": 4}, "candidates"),
    ("choose", {"sources": ["a", "b", "c"], "candidates": 1}, "candidates"),
])
def test_params_are_validated_naming_the_field(name, params, field):
    with pytest.raises(ValueError, match=rf"params\.{field}"):
        validate_params(name, params)


def test_source_masks_must_match_the_sources(pets):
    batch, trimaps = pets
    pet = pet_masks(trimaps)
    with pytest.raises(ValueError, match="source_masks"):
        crf()(batch)  # none carried
    with pytest.raises(ValueError, match="source_masks"):
        crf()(with_sources(batch, pet, pet))
    with pytest.raises(ValueError, match="source_masks"):
        get_labeler_class("agree")({"sources": ["a", "b", "c"]})(with_sources(batch, pet, pet))
    with pytest.raises(ValueError, match="source_masks"):
        get_labeler_class("choose")({"sources": ["a", "b", "c", "d"]})(with_sources(batch, pet, pet, pet))


# -- crf ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", COARSE)
def test_crf_improves_a_degraded_mask(pets, kind):
    batch, trimaps = pets
    coarse = COARSE[kind](pet_masks(trimaps))
    refined = crf()(with_sources(batch, coarse))["mask"]
    before, after = micro_dice(coarse, trimaps), micro_dice(refined, trimaps)
    print(f"{kind}: micro Dice coarse {before:.4f} -> crf {after:.4f}")
    assert after > before + 0.02


def test_crf_decides_ignored_pixels_from_the_image(pets):
    """A band of ignore around the pet's outline: the CRF labels it from the colours, mostly
    right, and leaves the confident pixels away from the band alone."""
    batch, trimaps = pets
    pet = pet_masks(trimaps)
    band = (morphed(pet, 3, cv2.dilate) - morphed(pet, 3, cv2.erode)) > 0
    coarse = np.where(band, I, pet).astype(np.uint8)
    refined = crf()(with_sources(batch, coarse))["mask"]
    assert set(np.unique(refined).tolist()) <= {0, 1}
    scored = band & (trimaps != 3)
    accuracy = (refined[scored] == pet[scored]).mean()
    print(f"ignored band: {scored.sum()} px, accuracy {accuracy:.3f}")
    assert accuracy > 0.8
    assert (refined[~band] != pet[~band]).mean() < 0.01


def test_crf_is_deterministic_binary_and_per_image(pets, monkeypatch):
    batch, trimaps = pets
    sourced = with_sources(batch, cam_like(pet_masks(trimaps)))
    first, second = crf()(sourced)["mask"], crf()(sourced)["mask"]
    assert first.shape == trimaps.shape and first.dtype == np.uint8
    assert set(np.unique(first).tolist()) <= {0, 1}
    np.testing.assert_array_equal(first, second)
    monkeypatch.setattr(crf_module, "KERNEL_BUDGET", 1)  # one image per chunk: no cross-talk
    np.testing.assert_array_equal(crf()(sourced)["mask"], first)


def test_crf_on_a_uniform_image_removes_speckles_and_keeps_a_blob():
    """No colour edges: only the smoothness acts. Speckles and pinholes go; a blob a quarter
    of the side across stays (its outline at the half-resolution grid's precision)."""
    rows, cols = np.mgrid[:96, :96]
    blob = ((rows - 48) ** 2 + (cols - 48) ** 2 <= 24**2).astype(np.uint8)
    coarse = blob.copy()
    coarse[[5, 10, 88], [5, 85, 30]] = 1  # speckles
    coarse[48, 48] = 0
    coarse[40:42, 55:57] = 0  # pinholes
    image = np.full((1, 96, 96, 3), 120, np.uint8)
    refined = dense_crf(image, coarse[None], CrfParams(sources=["coarse"]))[0]
    assert refined[[5, 10, 88], [5, 85, 30]].sum() == 0
    assert refined[48, 48] == 1 and refined[40:42, 55:57].all()
    assert (refined & blob).sum() / (refined | blob).sum() > 0.93


def test_crf_without_pairwise_terms_keeps_the_source():
    """Zero kernel weights leave the unary alone: the source's 0/1 come back, ignore -> 0."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    coarse = rng.choice(np.array([0, 1, I], np.uint8), (2, 20, 30))
    params = CrfParams(sources=["coarse"], w_bilateral=0, w_gaussian=0, scale=1.0)
    np.testing.assert_array_equal(dense_crf(images, coarse, params), np.where(coarse == 1, 1, 0))


def test_crf_kernel_is_the_dense_crf_kernel_within_the_window():
    """Each (i, j) weight equals the dense CRF's normalised kernel, k_ij / sqrt(d_i d_j) per
    term, with j restricted to the window (so d sums over the window)."""
    import torch

    rng = np.random.default_rng(1)
    height, width, window = 9, 8, 5
    image = rng.integers(0, 256, (3, height, width)).astype(np.float32)
    params = CrfParams(sources=["x"], window=window, theta_rgb=60.0, theta_xy=2.0)
    spacing = (2.0, 1.5)
    kernel = pairwise_kernel(torch.from_numpy(image)[None], params, spacing)[:, 0].numpy()
    ys, xs = np.divmod(np.arange(height * width), width)
    apart = (ys[:, None] - ys[None]) ** 2 * spacing[0] ** 2 + (xs[:, None] - xs[None]) ** 2 * spacing[1] ** 2
    colour = ((image.reshape(3, -1)[:, :, None] - image.reshape(3, -1)[:, None]) ** 2).sum(0)
    near = (abs(ys[:, None] - ys[None]) <= window // 2) & (abs(xs[:, None] - xs[None]) <= window // 2)
    np.fill_diagonal(near, False)

    def normalised(weights):
        weights = weights * near
        degree = weights.sum(1)
        return weights / np.sqrt(degree[:, None] * degree[None])

    appearance = np.exp(-apart / (2 * params.theta_xy**2) - colour / (2 * params.theta_rgb**2))
    smoothness = np.exp(-apart / (2 * params.theta_gamma**2))
    dense = params.w_bilateral * normalised(appearance) + params.w_gaussian * normalised(smoothness)
    for offset, (dy, dx) in enumerate(window_offsets(window)):
        y, x = ys + dy, xs + dx
        inside = (0 <= y) & (y < height) & (0 <= x) & (x < width)
        expected = np.where(inside, dense[np.arange(height * width), np.clip(y, 0, height - 1) * width
                                          + np.clip(x, 0, width - 1)], 0.0)
        np.testing.assert_allclose(kernel[offset].ravel(), expected, rtol=1e-4, atol=1e-6)


def test_crf_any_size_and_empty_batch():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 37, 50, 3), dtype=np.uint8)
    coarse = np.zeros((3, 37, 50), np.uint8)
    coarse[:, 10:30, 12:40] = 1
    for scale in (1.0, 0.5, 0.3):
        assert dense_crf(images, coarse, CrfParams(sources=["c"], scale=scale)).shape == (3, 37, 50)
    empty = {"image": images[:0], "source_masks": coarse[:0, None]}
    assert crf()(empty)["mask"].shape == (0, 37, 50)


# -- agree -------------------------------------------------------------------------------------

# Three sources over a 2 x 4 image; per pixel: (a, b, c) -> min_agree 1.0 | 0.5
SOURCE_A = [[1, 1, 0, 0], [1, I, I, 0]]
SOURCE_B = [[1, 0, 0, 1], [I, I, 0, 0]]
SOURCE_C = [[1, 1, 0, I], [0, I, 0, 0]]
# (0,0) all fg; (0,1) 2 fg 1 bg; (0,2) all bg; (0,3) 1-1 tie, c abstains; (1,0) 1-1 tie;
# (1,1) nobody votes; (1,2) a abstains, b and c say bg; (1,3) all bg.
UNANIMOUS = ([[1, I, 0, I], [I, I, 0, 0]], [[1, 0, 1, 0], [0, 0, 2 / 3, 1]])
MAJORITY = ([[1, 1, 0, I], [I, I, 0, 0]], [[1, 2 / 3, 1, 0], [0, 0, 2 / 3, 1]])


def three_sources() -> np.ndarray:
    return np.array([[SOURCE_A, SOURCE_B, SOURCE_C]], np.uint8)


@pytest.mark.parametrize("min_agree, expected", [(1.0, UNANIMOUS), (0.5, MAJORITY), (0.67, MAJORITY)])
def test_agree_on_known_pixels(min_agree, expected):
    sources = three_sources()
    batch = {"image": np.zeros((1, 2, 4, 3), np.uint8), "source_masks": sources}
    labeler = get_labeler_class("agree")({"sources": ["a", "b", "c"], "min_agree": min_agree})
    output = labeler(batch)
    np.testing.assert_array_equal(output["mask"][0], np.array(expected[0], np.uint8))
    assert output["agreement"].dtype == np.float32
    np.testing.assert_allclose(output["agreement"][0], expected[1], rtol=1e-6)


def test_agree_counts_an_ignoring_source_as_abstaining():
    """A source that ignores everything changes no label (only the agreement fractions)."""
    sources = three_sources()
    two, _ = agreed_masks(sources[:, :2], 1.0)
    abstaining = np.concatenate([sources[:, :2], np.full_like(sources[:, :1], I)], axis=1)
    with_abstainer, agreement = agreed_masks(abstaining, 1.0)
    np.testing.assert_array_equal(with_abstainer, two)
    assert agreement.max() <= 2 / 3 + 1e-6


def test_agree_of_degraded_pets_is_right_where_it_speaks(pets):
    """Dilated and eroded pets disagree only in a band around the outline: agree ignores the
    band and is (almost) never wrong elsewhere, where each source alone is wrong more often."""
    batch, trimaps = pets
    pet = pet_masks(trimaps)
    dilated, eroded = morphed(pet, 6, cv2.dilate), morphed(pet, 4, cv2.erode)
    labeler = get_labeler_class("agree")({"sources": ["dilated", "eroded"]})
    output = labeler(with_sources(batch, dilated, eroded))
    mask, scored = output["mask"], trimaps != 3
    spoken = scored & (mask != I)
    assert (mask[spoken] == pet[spoken]).mean() > 0.99
    assert ((mask == I) == (dilated != eroded)).all()
    assert (dilated[scored] == pet[scored]).mean() < 0.97 and (eroded[scored] == pet[scored]).mean() < 0.97


def test_choose_takes_per_image_the_candidate_the_vote_agrees_with(pets):
    """Two candidates that each fail on half the photos (a pet shifted off itself), and two
    voters that are rough but right (dilated, eroded): choose takes the right candidate on every
    photo, so its masks beat both candidates'; the voters' own pixels are never copied."""
    batch, trimaps = pets
    pet = pet_masks(trimaps)
    shifted = np.roll(pet, 30, axis=2)
    odd = (np.arange(len(pet)) % 2 == 1)[:, None, None]
    first, second = np.where(odd, shifted, pet), np.where(odd, pet, shifted)
    voters = morphed(pet, 5, cv2.dilate), morphed(pet, 3, cv2.erode)
    output = get_labeler_class("choose")({"sources": ["a", "b", "c", "d"]})(
        with_sources(batch, first, second, *voters))
    assert output["choice"].tolist() == [0, 1] * (len(pet) // 2)
    np.testing.assert_array_equal(output["mask"], pet)
    assert micro_dice(output["mask"], trimaps) > max(micro_dice(first, trimaps), micro_dice(second, trimaps)) + 0.1


def test_choose_scores_class_maps_by_their_classes():
    """Class maps: the candidate whose classes sit where the vote puts them wins, though the
    other one has more pixels equal to the vote (the large background)."""
    vote_like = np.zeros((1, 8, 8), np.uint8)
    vote_like[0, :2, :2], vote_like[0, 6:, 6:] = 3, 5
    right = vote_like.copy()
    right[0, 2:4, :] = 3  # an over-grown class 3, both classes placed
    wrong = np.zeros_like(vote_like)  # background only: 56 of 64 pixels agree with the vote
    sources = np.stack([wrong, right, vote_like, vote_like], 1)
    output = get_labeler_class("choose")({"sources": ["w", "r", "v1", "v2"]})(
        {"image": np.zeros((1, 8, 8, 3), np.uint8), "labels": np.array([[2, 4]]), "source_masks": sources})
    assert output["choice"].tolist() == [1]
    np.testing.assert_array_equal(output["mask"], right)


def test_agree_params_default_to_unanimity():
    assert AgreementParams(sources=["a", "b"]).min_agree == 1.0


# -- ground truth never reaches them -----------------------------------------------------------


@pytest.mark.parametrize("name, sources", [("crf", ["cam"]), ("agree", ["cam", "dilated"]),
                                           ("choose", ["cam", "dilated", "eroded"])])
def test_labelers_read_only_input_keys(pets, name, sources):
    batch, trimaps = pets
    pet = pet_masks(trimaps)
    masks = {"cam": cam_like(pet), "dilated": morphed(pet, 6, cv2.dilate), "eroded": morphed(pet, 4, cv2.erode)}
    sourced = with_sources(batch, *(masks[source] for source in sources))
    seen: list[set[str]] = []

    class Spy(get_labeler_class(name)):
        def label_batch(self, visible):
            seen.append(set(visible))
            return super().label_batch(visible)

    with_trimap = Spy({"sources": sources})({**sourced, "trimap": trimaps})
    without = get_labeler_class(name)({"sources": sources})(sourced)
    assert seen and "trimap" not in seen[0] and "source_masks" in seen[0]
    assert with_trimap.keys() == without.keys()
    for key in without:
        np.testing.assert_array_equal(with_trimap[key], without[key])
