"""Segmentation networks (pet vs background), one registry: UNet, timm-encoder UNet, DLV3, FCN.

Every model maps N x 3 x H x W (ImageNet-normalised) to N x 1 x H x W logits (pet vs
background), or N x (C+1) x H x W with ``classes=C+1`` (background and C classes, for
images of several classes each).

Weights (``create_model(name, weights)``):

- ``none``: random init. For an architecture with a pretrained backbone (``deeplabv3``,
  ``fcn``, ``unet_timm``) that is a smoke-run shortcut and needs ``weights_policy: random``
  (see ``uses_random_weights``); the study's UNet has no backbone and trains from scratch.
- ``imagenet``: ImageNet backbone weights from the local torch hub (torchvision) or Hugging
  Face (timm) cache, downloaded only when online; offline and missing -> ``WeightsMissingError``.
  The study's choice for DeepLabV3 and FCN.
- ``coco_voc`` (DeepLabV3, FCN): torchvision's whole network trained on COCO with the 20 VOC
  classes, the final layer replaced by a one-class one (what many users expect of "pretrained").
- a path: a checkpoint written by ``wsss train`` (the whole network), or a backbone state dict
  (e.g. torchvision's ``resnet50-0676ba61.pth``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsss.models.classifier import WeightsMissingError
from wsss.models.packaged import load_packaged, match_input_normalisation
from wsss.models.weights_files import load_weights_file

DEFAULT_TIMM_ENCODER = "resnet34"


NAMED_WEIGHTS = ("imagenet", "coco_voc")  # weights by name; anything else is a file path


@dataclass(frozen=True)
class Architecture:
    """A registry entry: how an architecture is built and what it can start from."""

    build: Callable[..., Any]  # (weights: "none" or one of ``weights``, **options) -> nn.Module
    pretrained_backbone: bool  # False: the study trains it from scratch
    description: str
    weights: tuple[str, ...] = ()  # the named weights it can start from

    def check_weights(self, name: str, weights: str) -> None:
        """Refuse named weights this architecture has none of, listing the ones it has."""
        encoder = "/" in name  # a timm encoder has ImageNet weights only
        if weights in NAMED_WEIGHTS and (weights not in self.weights or (encoder and weights != "imagenet")):
            have = ", ".join(("none", *(("imagenet",) if encoder else self.weights)))
            what = (f"{weights} weights" if self.pretrained_backbone else
                    "pretrained backbone (the study trains it from scratch)")
            raise ValueError(f"model {name!r} has no {what}; its weights: {have}, or a checkpoint "
                             f"path; set train.weights accordingly")


def _architectures() -> dict[str, Architecture]:
    return {
        "unet": Architecture(_build_unet, False, "classic 4-level UNet from scratch (width: multiplier)"),
        "unet_timm": Architecture(_build_timm_unet, True,
                                  f"UNet decoder on a timm encoder (unet_timm/<encoder>, "
                                  f"default {DEFAULT_TIMM_ENCODER})", ("imagenet",)),
        "deeplabv3": Architecture(_build_deeplabv3, True, "torchvision DeepLabV3-ResNet50 (deeplabv3/"
                                  "<timm encoder>: its ASPP head on that encoder)", ("imagenet", "coco_voc")),
        "fcn": Architecture(_build_fcn, True, "torchvision FCN-ResNet50 (fcn/<timm encoder>: its head "
                            "on that encoder)", ("imagenet", "coco_voc")),
    }


def list_models() -> list[str]:
    """Names ``create_model`` accepts (``unet_timm`` also as ``unet_timm/<timm encoder>``)."""
    return list(_architectures())


ENCODER_MODELS = ("unet_timm", "deeplabv3", "fcn")  # "<model>/<timm encoder>" names an encoder


def split_name(name: str) -> tuple[str, str | None]:
    """``deeplabv3/efficientnet_lite0`` -> ("deeplabv3", "efficientnet_lite0"); no "/": no encoder."""
    base, _, encoder = name.partition("/")
    return base, encoder or None


def architecture(name: str) -> Architecture:
    """The registry entry of ``name``; unknown names raise listing the known ones."""
    base, encoder = split_name(name)
    table = _architectures()
    if base not in table or (encoder is not None and base not in ENCODER_MODELS):
        raise ValueError(f"unknown segmentation model {name!r}; known: {', '.join(table)} "
                         f"(or {' | '.join(ENCODER_MODELS)}/<timm encoder>)")
    return table[base]


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options the model's builder does not take, naming them and the ones it does."""
    import inspect

    accepted = [p for p in inspect.signature(architecture(name).build).parameters
                if p not in ("weights", "encoder", "classes")]  # encoder: by the name; classes: by the data
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(accepted) or 'none'}")


def uses_random_weights(name: str, weights: str) -> bool:
    """True when a pretrained-backbone architecture would start from random weights."""
    return architecture(name).pretrained_backbone and weights == "none"


def create_model(name: str, weights: str = "none", classes: int = 1, **options: Any):
    """Build a registered model with ``classes`` output channels (1: pet vs background; C+1
    for C classes and background); ``weights``: none | imagenet | path (see the module doc)."""
    entry = architecture(name)
    check_model_options(name, options)
    encoder = split_name(name)[1]
    if encoder is not None:
        options = {"encoder": encoder, **options}
    if classes != 1:
        options = {**options, "classes": classes}
    entry.check_weights(name, weights)
    if weights == "none" or weights in NAMED_WEIGHTS:
        return entry.build(weights, **options)
    model = entry.build("none", **options)
    load_weights_file(model, weights)
    return model


@dataclass(frozen=True)
class ModelSpec:
    """The model a run trains: a registered name (``unet``, ``deeplabv3/<timm encoder>``) and
    its builder options (``{"width": 0.25}``), one value from the config to the workers."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", dict(self.options))  # a copy: the caller's dict may change

    def override(self, model: str | None = None, options: Mapping[str, Any] | None = None) -> ModelSpec:
        """The one rule of model options: options given are used as they are; otherwise a run
        of this model keeps these options and a run of another model starts from none
        (options belong to the model they were set for)."""
        if options is not None:
            return ModelSpec(model or self.name, options)
        return ModelSpec(model or self.name, self.options if model in (None, self.name) else {})

    def create(self, weights: str = "none", classes: int = 1):
        """``create_model`` of this name with these options."""
        return create_model(self.name, weights, classes, **self.options)

    def as_dict(self) -> dict[str, Any]:
        """The stable dict form, ``{"model": name, "options": {...}}`` (benchmark details); run
        names hash exactly these keys, so renaming one would rename every existing run."""
        return {"model": self.name, "options": dict(self.options)}


# ---- UNet from scratch ----------------------------------------------------------------------


def _double_conv(in_channels: int, out_channels: int):
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )


def _up_and_merge(up, conv, x, skip):
    """Upsample ``x``, pad it to ``skip``'s size (odd sizes), concatenate, convolve."""
    import torch
    import torch.nn.functional as F

    x = up(x)
    dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
    if dy or dx:
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
    return conv(torch.cat([skip, x], dim=1))


def _build_unet(weights: str, width: float = 1.0, in_channels: int = 3, classes: int = 1):
    import torch.nn as nn

    class UNet(nn.Module):
        """Ronneberger et al.'s UNet (4 poolings, 64..1024 channels at width 1) with BatchNorm."""

        def __init__(self):
            super().__init__()
            channels = [max(1, round(c * width)) for c in (64, 128, 256, 512, 1024)]
            self.stem = _double_conv(in_channels, channels[0])
            self.down = nn.ModuleList(_double_conv(a, b) for a, b in zip(channels, channels[1:]))
            self.pool = nn.MaxPool2d(2)
            pairs = list(zip(channels[::-1], channels[-2::-1]))
            self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 2, stride=2) for a, b in pairs)
            self.merge = nn.ModuleList(_double_conv(2 * b, b) for _, b in pairs)
            self.head = nn.Conv2d(channels[0], classes, 1)

        def forward(self, x):
            skips = [self.stem(x)]
            for block in self.down:
                skips.append(block(self.pool(skips[-1])))
            x = skips.pop()
            for up, merge in zip(self.up, self.merge):
                x = _up_and_merge(up, merge, x, skips.pop())
            return self.head(x)

    return UNet()


# ---- UNet on a timm encoder -----------------------------------------------------------------


def _build_timm_unet(weights: str, encoder: str = DEFAULT_TIMM_ENCODER, decoder_width: float = 1.0,
                     classes: int = 1):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    backbone = timm_encoder(encoder, weights)

    class TimmUNet(nn.Module):
        """timm features (strides 2..32) -> UNet decoder -> logits at the input size."""

        def __init__(self):
            super().__init__()
            self.encoder = backbone
            skips = backbone.feature_info.channels()
            outs = [max(8, round(c * decoder_width)) for c in (256, 128, 64, 32)][: len(skips) - 1]
            ins = [skips[-1]] + outs[:-1]
            self.blocks = nn.ModuleList(
                _double_conv(i + s, o) for i, s, o in zip(ins, skips[-2::-1], outs))
            self.head = nn.Conv2d(outs[-1], classes, 1)

        def forward(self, x):
            features = self.encoder(x)
            y = features[-1]
            for block, skip in zip(self.blocks, features[-2::-1]):
                y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                y = block(torch.cat([skip, y], dim=1))
            return F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear",
                                 align_corners=False)

    return TimmUNet()


def timm_encoder(encoder: str, weights: str, out_indices: tuple[int, ...] | None = None):
    """A timm ``features_only`` encoder; ImageNet weights from a package that ships them
    (``wsss.models.packaged``: offline), else from the hub (WeightsMissingError offline)."""
    import timm

    options = {} if out_indices is None else {"out_indices": out_indices}
    if weights == "imagenet":
        model = timm.create_model(encoder, features_only=True, pretrained=False, **options)
        if load_packaged(model, encoder):
            return match_input_normalisation(model)
    try:
        model = timm.create_model(encoder, features_only=True, pretrained=weights == "imagenet", **options)
    except OSError as error:  # huggingface_hub's LocalEntryNotFoundError is one
        raise WeightsMissingError(_missing_timm_message(encoder)) from error
    return match_input_normalisation(model)


def _timm_head(kind: str, weights: str, encoder: str, classes: int = 1):
    """DeepLabV3's ASPP head or FCN's head on a timm encoder's stride-16 features, logits
    upsampled to the input: the study's heads on a small (and offline-pretrained) backbone."""
    import torch.nn as nn
    import torch.nn.functional as F
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead
    from torchvision.models.segmentation.fcn import FCNHead

    backbone = timm_encoder(encoder, weights, out_indices=(3,))
    channels = backbone.feature_info.channels()[-1]
    head = DeepLabHead(channels, classes) if kind == "deeplabv3" else FCNHead(channels, classes)

    class TimmHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.head = backbone, head

        def forward(self, x):
            logits = self.head(self.encoder(x)[-1])
            return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    return TimmHead()


def _missing_timm_message(encoder: str) -> str:
    home = os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface"))
    return (f"ImageNet weights for the timm encoder {encoder} are not in the local Hugging Face "
            f"cache and this machine is offline. Fetch them from https://huggingface.co/timm "
            f"(the {encoder} model card) into {home}/hub, or set weights: none (random init, "
            f"needs weights_policy: random) or weights: <checkpoint>.")


# ---- torchvision DeepLabV3 / FCN ------------------------------------------------------------


def _wrap_torchvision(network):
    import torch.nn as nn

    class LogitsOnly(nn.Module):
        """torchvision segmentation models return {"out": ...}; keep the logits tensor."""

        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, x):
            return self.network(x)["out"]

    return LogitsOnly()


def _cached(weights: Any, what: str) -> Any:
    """torchvision ``weights`` once they are in the torch hub cache (downloaded when online);
    WeightsMissingError saying what to fetch and where when they are not and cannot be."""
    from torch.hub import get_dir

    cached = Path(get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file():
        try:  # online: torchvision downloads into the cache; offline: a clear error
            weights.get_state_dict(progress=False, check_hash=True)
        except OSError as error:
            raise WeightsMissingError(
                f"{what} are not in the local cache and this machine is offline. Fetch "
                f"{weights.url} into {cached.parent}/ (torch hub cache), or set weights: none "
                f"(random init, needs weights_policy: random) or weights: <checkpoint>.") from error
    return weights


def _imagenet_backbone(weights: str):
    """torchvision's ResNet50 ImageNet weights (from the hub cache), or None for random init."""
    if weights != "imagenet":
        return None
    from torchvision.models import ResNet50_Weights

    return _cached(ResNet50_Weights.IMAGENET1K_V1, "ImageNet weights for the resnet50 backbone")


def _torchvision_segmentation(builder: Callable, coco_voc: Any, head_channels: int, weights: str,
                              classes: int = 1):
    """A torchvision segmentation network with one output channel: from the ImageNet backbone
    (the study), or whole from torchvision's COCO-with-VOC-labels weights, its 21-class final
    layer replaced by a 1-class one and the auxiliary head dropped."""
    import torch.nn as nn

    if weights != "coco_voc":
        return _wrap_torchvision(builder(weights=None, weights_backbone=_imagenet_backbone(weights),
                                         num_classes=classes, aux_loss=False))
    network = builder(weights=_cached(coco_voc, f"{builder.__name__} COCO-with-VOC-labels weights"))
    network.classifier[-1] = nn.Conv2d(head_channels, classes, kernel_size=1)
    network.aux_classifier = None
    return _wrap_torchvision(network)


def _build_deeplabv3(weights: str, encoder: str | None = None, classes: int = 1):
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, deeplabv3_resnet50

    if encoder is not None:
        return _timm_head("deeplabv3", weights, encoder, classes)
    return _torchvision_segmentation(deeplabv3_resnet50,
                                     DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1, 256, weights,
                                     classes)


def _build_fcn(weights: str, encoder: str | None = None, classes: int = 1):
    from torchvision.models.segmentation import FCN_ResNet50_Weights, fcn_resnet50

    if encoder is not None:
        return _timm_head("fcn", weights, encoder, classes)
    return _torchvision_segmentation(fcn_resnet50, FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
                                     512, weights, classes)
