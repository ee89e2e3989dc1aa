"""CAM, Grad-CAM and Grad-CAM++ of a batch from one forward pass and one head-only backward.

pytorch-grad-cam (the reference) runs one object per method, and because every classifier
weight is frozen its input must require grad, so each method pays a forward pass plus a
backward pass through the whole network. Here the model is split at the target layer with a
forward hook: everything up to the target layer runs under ``torch.no_grad``, its output
becomes a fresh leaf that requires grad, and only the rest of the network (for a ResNet: the
global pool and the fc head) is recorded. One such pass gives the activations, the logits and,
with ``autograd.grad`` through the head alone, the class-score gradients that all three
methods need; a second head-only backward serves a second target kind (labelled and
predicted). The weights follow pytorch-grad-cam exactly (its ``GradCAMPlusPlus`` formula is
ported to torch), as do the map's post-processing: ReLU, min-max per image, bilinear resize to
the input size, ReLU, min-max again. In fp32 on the CPU the maps equal pytorch-grad-cam's within
1e-4 (tests/test_fastcam.py, at 64 and 224 px); on CUDA, where PyTorch runs float32
convolutions in TF32 by default, the two differ by up to ~0.02 (0.0175 measured on an H100),
as any two TF32 runs that sum in another order do. The whole batch stays on the device until
the maps come back.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import numpy as np

from wsss.data.transforms import to_input_tensor
from wsss.labelers.registry import cam_methods, get_labeler_class

TARGETS = ("labelled", "predicted")
NORM_EPS = 1e-7  # pytorch_grad_cam.utils.image.scale_cam_image
BF16_ON_CUDA = False  # heatmap labelers on CUDA run the classifier under bf16 autocast
RECENT_BATCHES = 16  # inputs SharedCams remembers: up to 8 scales x 2 mirrorings of a batch


def ref_key(method: str, target: str) -> str:
    """``cam-labelled`` style key of one heatmap kind (as ``HeatmapRef.key``)."""
    if method not in cam_methods() or target not in TARGETS:
        raise ValueError(f"heatmap kind {method!r}/{target!r}; methods: {', '.join(cam_methods())}; "
                         f"targets: {', '.join(TARGETS)}")
    return f"{method}-{target}"


def channel_weights(method: str, activations, grads, head_rows):
    """N x C weights of one method: its labeler class's own ``channel_weights`` (float32
    tensors in, as pytorch-grad-cam computes them)."""
    return get_labeler_class(method).channel_weights(activations, grads, head_rows)


def min_max(maps):
    """Per-map ``(m - min) / (1e-7 + max(m - min))`` over the last two axes."""
    flat = maps.flatten(1)
    shifted = flat - flat.min(dim=1, keepdim=True).values
    return (shifted / (NORM_EPS + shifted.max(dim=1, keepdim=True).values)).view_as(maps)


def cam_maps(weights, activations, size: tuple[int, int]):
    """N x H x W maps in [0, 1] from N x C weights and N x C x h x w activations."""
    import torch.nn.functional as F

    maps = (weights[:, :, None, None] * activations).sum(dim=1).clamp(min=0)
    maps = min_max(maps)
    maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return min_max(maps.clamp(min=0))


class CamEngine:
    """A frozen classifier split at its target layer; ``heatmaps`` gives any set of kinds.

    ``bf16`` runs the network under bf16 autocast (CUDA); the map arithmetic is float32.
    Call ``close`` (or use as a context manager) to remove the hook.
    """

    def __init__(self, model: Any, target_layer: Any, head: Any, device: str = "cpu",
                 bf16: bool = False):
        import torch

        self.model, self.device, self.bf16 = model.eval(), torch.device(device), bf16
        for parameter in model.parameters():
            parameter.requires_grad_(False)  # the maps need activation gradients only
        self.head_weight = head.weight.detach().float()
        self._activations = None
        self._capture = False
        self._handle = target_layer.register_forward_hook(self._split)

    def _split(self, module: Any, inputs: Any, output: Any) -> Any:
        import torch

        if not self._capture:
            return None
        self._capture = False  # a layer called twice splits at its first call only
        torch.set_grad_enabled(True)  # restored when the caller's no_grad block exits
        self._activations = output.detach().requires_grad_(True)
        return self._activations

    def _precision(self) -> Any:
        import torch

        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def forward(self, inputs) -> tuple[Any, Any]:
        """(activations leaf, logits) for normalised N x 3 x H x W inputs on the device."""
        import torch

        self._capture, self._activations = True, None
        with torch.no_grad(), self._precision():
            logits = self.model(inputs)
        self._capture = False
        if self._activations is None:
            raise RuntimeError("the target layer did not run in the model's forward pass")
        return self._activations, logits

    def heatmaps(self, inputs, labels: Iterable[int] | None,
                 kinds: Iterable[tuple[str, str]]) -> dict[str, np.ndarray]:
        """``{key: N x H x W float32 maps}`` for each (method, target); H x W from ``inputs``.

        ``inputs``: N x H x W x 3 uint8 images (numpy) or a normalised N x 3 x H x W tensor.
        ``labels`` are needed for the ``labelled`` target.
        """
        import torch

        kinds = list(dict.fromkeys((m, t) for m, t in kinds))
        keys = [ref_key(m, t) for m, t in kinds]
        tensor = self._to_tensor(inputs)
        activations, logits = self.forward(tensor)
        targets = self._targets(logits, labels, {t for _, t in kinds})
        features = activations.detach().float()
        gradient_targets = [t for t in TARGETS if any(
            get_labeler_class(m).uses_gradients and tt == t for m, tt in kinds)]
        grads = {}
        for index, target in enumerate(gradient_targets):
            score = logits.gather(1, targets[target][:, None]).sum()
            retain = index + 1 < len(gradient_targets)
            grads[target] = torch.autograd.grad(score, activations, retain_graph=retain)[0].float()
        size = tuple(tensor.shape[2:])
        out = {}
        with torch.no_grad():
            for key, (method, target) in zip(keys, kinds):
                rows = self.target_rows(logits, targets[target])
                weights = channel_weights(method, features, grads.get(target), rows)
                out[key] = cam_maps(weights, features, size).cpu().numpy()  # float32 already
        return out

    def target_rows(self, logits, indices):
        """N x C head rows of each image's target class (``indices``: N class indices)."""
        return self.head_weight.to(logits.device)[indices]

    def _to_tensor(self, inputs):
        if isinstance(inputs, np.ndarray):
            return to_input_tensor(inputs, str(self.device))
        return inputs.to(self.device)

    def _targets(self, logits, labels, wanted: set[str]) -> dict[str, Any]:
        import torch

        targets = {}
        if "labelled" in wanted:
            if labels is None:
                raise ValueError("the 'labelled' target needs labels")
            targets["labelled"] = torch.as_tensor(np.asarray(labels, np.int64), device=logits.device)
        if "predicted" in wanted:
            targets["predicted"] = logits.detach().float().argmax(dim=1)
        return targets

    def close(self) -> None:
        """Remove the forward hook (the model is left as it was found, weights frozen)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> CamEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SharedCams:
    """Every configured heatmap kind of the last batch from one ``CamEngine`` pass.

    Heatmap labelers that share a classifier hold one of these: the first asks for a batch
    and gets every kind computed; the others find the batch already done.
    """

    def __init__(self, engine: CamEngine, kinds: Iterable[tuple[str, str]]):
        self.engine = engine
        self.kinds = list(dict.fromkeys(kinds))
        self.passes = 0  # forward passes actually run (a cache hit does not count)
        # the last few batches: labelers averaging several views each ask for every view
        self._recent: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []

    def add(self, method: str, target: str) -> None:
        if (method, target) not in self.kinds:
            self.kinds.append((method, target))
            self._recent = []

    def maps(self, images: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
        """``{key: maps}`` of every kind for N x H x W x 3 uint8 ``images``."""
        labels_array = np.asarray(labels if labels is not None else [], np.int64)
        for cached_images, cached_labels, maps in self._recent:
            if (cached_images.shape == images.shape and np.array_equal(cached_labels, labels_array)
                    and np.array_equal(cached_images, images)):
                return maps
        maps = self.engine.heatmaps(images, labels, self.kinds)
        self.passes += 1
        self._recent = [*self._recent[-(RECENT_BATCHES - 1):],
                        (np.array(images, copy=True), labels_array, maps)]
        return maps
