"""The classifier backbones the project knows, with the layers CAM methods read.

A backbone name is a torchvision model name from ``BACKBONES`` or ``timm/<model name>``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneSpec:
    """Where a backbone keeps its last feature map and its classification head."""

    target_layer: str  # dotted module path whose output is the last feature map
    head: str  # dotted path of the final linear layer (replaced by a 37-way one)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("layer4", "fc"),
    "resnet34": BackboneSpec("layer4", "fc"),
    "resnet50": BackboneSpec("layer4", "fc"),
    "resnet101": BackboneSpec("layer4", "fc"),
    "densenet121": BackboneSpec("features", "classifier"),
}
TIMM_PREFIX = "timm/"
# timm models whose pooled, classified features are not their last feature stage: CAM reads the
# layer the head pools (EfficientNet: conv_head + bn2, 1280 channels, not blocks.6 with 320).
TIMM_SPECS: dict[str, BackboneSpec] = {
    f"{prefix}efficientnet_lite{n}": BackboneSpec("bn2", "classifier") for prefix in ("", "tf_") for n in (0, 1, 2)
}


def check_backbone_name(name: str) -> str:
    """Return ``name`` when it is a known backbone, else raise listing the known ones."""
    if name in BACKBONES or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)):
        return name
    known = ", ".join(BACKBONES)
    raise ValueError(f"unknown backbone {name!r}; known: {known}, or timm/<any timm model>")
