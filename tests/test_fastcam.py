"""The fast CAM engine against pytorch-grad-cam, and heatmap labelers sharing one pass."""

import numpy as np
import pytest

from wsss.labelers import entries
from wsss.labelers.base import LabelerContext
from wsss.labelers.fastcam import TARGETS, CamEngine
from wsss.labelers.heatmap import share_heatmaps
from wsss.labelers.registry import get_labeler_class, reference_cam_methods

METHODS = reference_cam_methods()  # imagenet_cam has its own test

KINDS = [(method, target) for method in METHODS for target in TARGETS]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two intra-op threads wait on each other
    (10x slower here); the maps do not depend on it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    images[:, 16:48, 20:44] = (200, 120, 40)  # structure, so maps are not flat noise
    return {"image": images, "label": rng.integers(0, 37, 4), "image_id": np.arange(4).astype(str)}


def random_context():
    return LabelerContext(allow_random_weights=True, seed=3)


def reference_maps(method: str, target: str, batch) -> np.ndarray:
    """pytorch-grad-cam at batch size 1 on a copy of the labeler's classifier."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from wsss.data.transforms import to_input_tensor

    labeler = get_labeler_class(method)({"target": target}, random_context())
    cam = labeler.reference_cam()
    maps = []
    for image, label in zip(batch["image"], batch["label"]):
        tensor = to_input_tensor(image[None]).requires_grad_(True)
        targets = [ClassifierOutputTarget(int(label))] if target == "labelled" else None
        maps.append(cam(input_tensor=tensor, targets=targets)[0])
    cam.activations_and_grads.release()
    return np.stack(maps)


@pytest.mark.parametrize("method,target", KINDS)
def test_labeler_maps_match_pytorch_grad_cam(method, target, batch):
    labeler = get_labeler_class(method)({"target": target}, random_context())
    fast = labeler(batch)["heatmap"]
    reference = reference_maps(method, target, batch)
    assert fast.shape == reference.shape == (4, 64, 64)
    assert np.abs(fast - reference).max() < 1e-4
    assert fast.max() > 0.99  # a real map, normalised per image


def test_one_pass_gives_every_kind_with_frozen_stem(batch):
    import torch

    from wsss.models.classifier import build_classifier

    torch.manual_seed(0)
    model = build_classifier("resnet18", "none").eval()
    stem_requires_grad = []
    model.layer3.register_forward_hook(lambda m, i, o: stem_requires_grad.append(o.requires_grad))
    with CamEngine(model, model.layer4, model.fc) as engine:
        maps = engine.heatmaps(batch["image"], batch["label"], KINDS)
    assert stem_requires_grad == [False]  # the stem ran once, without a graph
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    # The same maps from a full backward to the input (what pytorch-grad-cam does):
    saved = {}
    model.layer4.register_forward_hook(lambda m, i, o: saved.__setitem__("a", o))
    from wsss.data.transforms import to_input_tensor
    from wsss.labelers.fastcam import cam_maps, channel_weights

    inputs = to_input_tensor(batch["image"]).requires_grad_(True)
    logits = model(inputs)
    for method, target in KINDS:
        chosen = torch.as_tensor(batch["label"]) if target == "labelled" else logits.argmax(1)
        grads = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), saved["a"],
                                    retain_graph=True)[0]
        weights = channel_weights(method, saved["a"].detach(), grads, model.fc.weight[chosen])
        full = cam_maps(weights, saved["a"].detach(), (64, 64)).detach().numpy()
        assert np.abs(full - maps[f"{method}-{target}"]).max() < 1e-5, (method, target)


def test_shared_labelers_equal_each_labeler_alone(batch):
    kinds = [("cam", "labelled"), ("gradcam", "labelled"), ("gradcampp", "predicted")]
    alone = [get_labeler_class(m)({"target": t}, random_context())(batch)["heatmap"] for m, t in kinds]
    shared = [get_labeler_class(m)({"target": t}, random_context()) for m, t in kinds]
    share_heatmaps(shared)
    together = [labeler(batch)["heatmap"] for labeler in shared]
    for one, other in zip(alone, together):
        np.testing.assert_array_equal(one, other)
    assert shared[0]._cam is shared[2]._cam and shared[0]._cam.passes == 1
    shared[0].close()


def test_labelled_target_needs_labels(batch):
    import torch

    from wsss.models.classifier import build_classifier

    model = build_classifier("resnet18", "none")
    with CamEngine(model, model.layer4, model.fc) as engine, pytest.raises(ValueError, match="labels"):
        engine.heatmaps(batch["image"], None, [("gradcam", "labelled")])
    with pytest.raises(ValueError, match="methods"):
        engine.heatmaps(batch["image"], None, [("scorecam", "predicted")])
    assert torch.is_grad_enabled()  # the split's grad switch never leaks out


def test_heatmap_stage_runs_one_pass_and_stores_each_labelers_maps(batch):
    from wsss.masks.stages import HeatmapStage

    stage = HeatmapStage([{"method": m, "target": "labelled"} for m in METHODS], random_context())
    one, _ = entries.as_entries(batch)  # the pipeline's one form: a map per entry
    out = stage({**one, "error": np.array([""] * 4, dtype=object)})
    assert next(iter(stage.labelers.values()))._cam.passes == 1
    for method in METHODS:
        alone = get_labeler_class(method)({"target": "labelled"}, random_context())(batch)["heatmap"]
        np.testing.assert_array_equal(out[f"heatmap__{method}-labelled"][:, 0], alone.astype(np.float16))
    assert (out["error"] == "").all()


def test_views_average_scales_and_the_mirror_and_share_every_pass(batch):
    views = {"target": "labelled", "scales": [0.5, 1.0], "flip": True}
    many = get_labeler_class("cam")(views, random_context())
    one = get_labeler_class("cam")({"target": "labelled"}, random_context())
    share_heatmaps([many, one])
    averaged = many.heatmaps(batch["image"], batch["label"])
    assert many._cam.passes == 4  # two scales, each plain and mirrored
    plain = one.heatmaps(batch["image"], batch["label"])
    assert many._cam.passes == 4  # the plain view at scale 1 was one of them
    mirrored = batch["image"][:, :, ::-1]
    parts = [plain, one.heatmaps(np.ascontiguousarray(mirrored), batch["label"])[:, :, ::-1]]
    half = get_labeler_class("cam")({"target": "labelled", "scales": [0.5]}, random_context())
    parts += [half.heatmaps(batch["image"], batch["label"]),
              half.heatmaps(np.ascontiguousarray(mirrored), batch["label"])[:, :, ::-1]]
    total = sum(parts)
    expected = total / total.reshape(len(total), -1).max(axis=1)[:, None, None]  # peak 1, 0 kept
    np.testing.assert_allclose(averaged, expected, atol=1e-5)
    assert averaged.shape == plain.shape and 0.0 <= averaged.min() and averaged.max() <= 1.0
    assert not np.allclose(averaged, plain)  # the views change the map
    many.close()
    half.close()


def test_heatmap_stage_makes_a_views_column_under_its_key(batch):
    from wsss.labelers.base import HeatmapRef
    from wsss.masks.stages import HeatmapStage

    ref = HeatmapRef(method="cam", scales=[0.5, 1.0], flip=True)
    stage = HeatmapStage([ref.model_dump()], random_context())
    out = stage({**entries.as_entries(batch)[0], "error": np.array([""] * 4, dtype=object)})
    labeler = get_labeler_class("cam")(ref.labeler_params(), random_context())
    np.testing.assert_array_equal(out[f"heatmap__{ref.key()}"][:, 0],
                                  labeler.heatmaps(batch["image"], batch["label"]).astype(np.float16))


@pytest.mark.parametrize("method", METHODS)
def test_maps_match_pytorch_grad_cam_at_224_px(method):
    """At 224 px the last feature map is 7 x 7 (at 64 px it is 2 x 2): the agreement holds where
    the weights' spatial sums and the bilinear upsampling have real work to do."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    images[:, 60:170, 70:150] = (200, 120, 40)
    batch = {"image": images, "label": np.array([3, 30]), "image_id": np.array(["a", "b"])}
    fast = get_labeler_class(method)({"target": "labelled"}, random_context())(batch)["heatmap"]
    reference = reference_maps(method, "labelled", batch)
    assert fast.shape == reference.shape == (2, 224, 224)
    assert np.abs(fast - reference).max() < 1e-4
