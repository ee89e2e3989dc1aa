"""A pixel classifier fitted across the whole set from the CAM's confident pixels, then on its own
confident predictions, each image's pixels choosing among the image's own classes.

A CAM looks at one image at a time, and its maps spill onto whatever the class co-occurs with:
the bird's map covers the sky it flies in, the cow's the grass it stands on. Across a set the
same stuff looks alike: grass under a cow and grass under a sheep are one colour and one
texture. This labeler learns that. It reads the classifier's own features at its stride-8, -16
and -32 stages (each unit length, on the stride-16 grid: ``ClassifierFeatures``) and fits one
linear layer over them, a logit per pixel class, on the pixels whose CAM is clear (the best map
at least ``seed[0]`` and ahead of the next by ``seed[1]``; with a background, the pixels where
no map reaches ``background_below`` seed the background). It then refits ``rounds`` times on its
own predictions where they reach ``confidence``. Classes weigh in the loss as (all seeds / the
class's seeds) ** ``class_weight``, so the stuff that fills most frames does not swamp the
objects. Every prediction is a softmax over the image's own classes (and the background where
the data has one): the image-level labels say which classes may be there. The probabilities,
at the stride-16 grid, are upsampled to the image and moved along its colours by PAMR
(``refine_iterations``; ``wsss.labelers.pamr``), and each pixel takes its most probable class,
or is ignored (255) where that is under ``threshold``.

The fit (``fit``) reads the train and val images and their image-level labels only, never a
mask; the mask pipeline runs it once per set before the set's images are labelled and keeps the
head in the set's folder (``FIT_FILE``, with the set's fingerprint: a head fitted for other data,
another classifier or other params is never loaded). On MSRC-v2's 237 train and val photos (23
classes, no background, 320 px) the head raised the pseudo-mask mIoU from the CAM's 0.425 to
0.536 fitted once, 0.627 after its refits and 0.658 with PAMR (``jobs/calibrate.py``,
``docs/real-photos.md``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from pydantic import Field

from wsss import storage
from wsss.data.arrays import resize_image
from wsss.data.transforms import to_input_tensor
from wsss.identity import stable_hash
from wsss.labelers.base import MASK_IGNORE, BackgroundParams, HeatmapRef, Labeler
from wsss.labelers.pamr import PamrParams, refine_maps
from wsss.labelers.registry import register
from wsss.models.classifier import get_module

FIT_FILE = "head.pt"  # in the set's folder: the fitted layer and the set fingerprint it is for
FIT_FORMAT = "wsss-pixel-head-v1"
BATCH = 16
FIT_BATCH = 4096  # seed pixels per step of the fit
MIN_STEPS = 300  # a fit on few seeds still takes this many steps


class PixelHeadParams(BackgroundParams):
    heatmap: HeatmapRef = Field(HeatmapRef(method="cam"), description="the CAM whose clear pixels seed the fit")
    seed: tuple[float, float] = Field((0.3, 0.1), description=(
        "a pixel seeds its best class where that class's map is at least seed[0] and ahead of the "
        "image's next class by seed[1]"))
    background_below: float = Field(0.1, ge=0.0, le=1.0, description=(
        "with a background: pixels where no class's map reaches this seed the background"))
    rounds: int = Field(5, ge=0, le=20, description="refits on the head's own confident predictions")
    confidence: float = Field(0.8, gt=0.0, le=1.0, description="predicted probability a refit takes as a label")
    class_weight: float = Field(0.5, ge=0.0, le=2.0, description=(
        "loss weight of a class: (all seed pixels / the class's) ** this (0: unweighted)"))
    epochs: int = Field(30, ge=1, le=500, description=(
        "passes over the seed pixels per fit (at least 300 steps of 4096 pixels)"))
    fit_images: int = Field(1000, ge=2, description="at most this many train and val images fit the head")
    refine_iterations: int = Field(20, ge=0, le=100, description="PAMR steps after the head (0: none)")
    dilations: tuple[int, ...] = Field((1, 2, 4, 8, 16, 32), min_length=1,
                                       description="PAMR's neighbour distances in pixels")
    threshold: float = Field(0.0, ge=0.0, le=1.0, description=(
        "a pixel whose most probable class is under this is ignored (255)"))


class NotFittedError(RuntimeError):
    """The labeler's head has not been fitted (nor loaded) yet."""


STRIDES = (8, 16, 32)  # the classifier stages the head reads, on the stride-16 grid


def feature_layers(model: Any) -> tuple[str, ...]:
    """The modules whose outputs are the classifier's stride-8, -16 and -32 features: a timm
    model's last feature stage at each reduction, a ResNet's layer2 to layer4."""
    info = getattr(model, "feature_info", None)
    if info is not None:
        entries = info if isinstance(info, list) else info.get_dicts()
        by_reduction = {entry["reduction"]: entry["module"] for entry in entries}  # the last of each
        if all(stride in by_reduction for stride in STRIDES):
            return tuple(by_reduction[stride] for stride in STRIDES)
    if all(hasattr(model, f"layer{n}") for n in (2, 3, 4)):
        return "layer2", "layer3", "layer4"
    raise ValueError(f"pixel_head: no stride-8, -16 and -32 stages found in {type(model).__name__} "
                     f"(timm models with feature_info and ResNets have them)")


class ClassifierFeatures:
    """N x D x h x w features of the classifier on its stride-16 grid (``feature_layers``): each
    stage's unit-length vectors, the stride-8 one averaged over 2 x 2, the stride-32 one upsampled."""

    def __init__(self, model: Any, input_size: int | None, device: str):
        self.model, self.input_size, self.device = model, input_size, device
        self._outputs: dict[int, Any] = {}
        self._hooks = [get_module(model, name).register_forward_hook(self._keeper(index))
                       for index, name in enumerate(feature_layers(model))]

    def _keeper(self, index: int):
        def keep(module, inputs, output):
            self._outputs[index] = output
        return keep

    def __call__(self, images: np.ndarray):
        import torch
        import torch.nn.functional as F

        side = self.input_size or images.shape[1]
        if images.shape[1:3] != (side, side):
            images = np.stack([resize_image(np.ascontiguousarray(image), side) for image in images])
        with torch.no_grad():
            self.model(to_input_tensor(images, self.device))
            grid = self._outputs[1].shape[-2:]
            stages = [F.adaptive_avg_pool2d(self._outputs[0].float(), grid), self._outputs[1].float(),
                      F.interpolate(self._outputs[2].float(), size=grid, mode="bilinear", align_corners=False)]
            features = torch.cat([F.normalize(stage, dim=1) for stage in stages], dim=1) / len(stages) ** 0.5
        self._outputs.clear()
        return features.cpu()

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def allowed_values(classes: np.ndarray, background: bool) -> list[list[int]]:
    """Per image, the mask values its pixels may take: background (0) where the data has one,
    then k + 1 for each entry's pixel class k (``classes`` N x K, -1 padded)."""
    return [([0] if background else []) + [int(k) + 1 for k in row if k >= 0] for row in classes]


def seed_values(maps, values: list[int], params: PixelHeadParams):
    """h*w int64 seeds of one image from its K x h x w maps: the mask value of its clear best class,
    0 (background) where no map reaches ``background_below`` (with a background), else -1."""
    import torch

    entries = torch.as_tensor(values[1:] if params.background else values)
    flat = maps.flatten(1)
    top = flat.topk(min(2, len(flat)), dim=0).values
    seeds = entries[flat.argmax(dim=0)]
    clear = top[0] >= params.seed[0]
    if len(flat) > 1:
        clear &= (top[0] - top[1]) >= params.seed[1]
    seeds = torch.where(clear, seeds, torch.full_like(seeds, -1))
    if params.background:
        seeds = torch.where(top[0] < params.background_below, torch.zeros_like(seeds), seeds)
    return seeds


def fit_layer(features: list, labels: list, width: int, params: PixelHeadParams, seed: int):
    """A D -> ``width`` linear layer fitted on every labelled pixel (label >= 0) of the images'
    D x P features, with the class weights of ``class_weight``."""
    import torch
    import torch.nn.functional as F

    pixels = torch.cat([f.T for f in features]).float()
    targets = torch.cat(labels)
    kept = targets >= 0
    pixels, targets = pixels[kept], targets[kept]
    generator = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(pixels.shape[1], width)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.01)
        layer.bias.zero_()
    if not len(targets):
        return layer
    counts = torch.bincount(targets, minlength=width).float()
    weights = (counts.sum() / counts.clamp_min(1)) ** params.class_weight
    weights = weights / weights[counts > 0].mean()
    optimiser = torch.optim.Adam(layer.parameters(), 1e-2, weight_decay=1e-4)
    per_epoch = -(-len(targets) // FIT_BATCH)
    for _ in range(max(params.epochs, -(-MIN_STEPS // per_epoch))):  # few seeds: still MIN_STEPS steps
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(targets), FIT_BATCH):
            rows = order[start:start + FIT_BATCH]
            loss = F.cross_entropy(layer(pixels[rows]), targets[rows], weight=weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return layer


def restricted(logits, values: list[int]):
    """len(values) x P probabilities: the softmax of ``logits`` (W x P) over the allowed values."""
    import torch

    return torch.softmax(logits[torch.as_tensor(values)], dim=0)


@register
class PixelHeadLabeler(Labeler):
    name = "pixel_head"
    description = ("a pixel classifier on the classifier's features, fitted across the set on the "
                   "CAM's clear pixels and its own, over each image's classes; then PAMR")
    Params = PixelHeadParams
    stage = "cpu"
    per_class = True
    fits = True  # the pipeline fits it on the train and val images first (``wsss.masks.fitting``)

    def __init__(self, params=None, context=None):
        super().__init__(params, context)
        self._features: ClassifierFeatures | None = None
        self._layer: Any = None

    @property
    def fitted(self) -> bool:
        return self._layer is not None

    def features(self) -> ClassifierFeatures:
        if self._features is None:
            model, _, input_size = self.heatmap_source()._load_model()  # a copy of its own
            self._features = ClassifierFeatures(model, input_size, self.context.device)
        return self._features

    def fit(self, images: np.ndarray, labels: np.ndarray, classes: np.ndarray, progress: Any = None,
            heatmaps: np.ndarray | None = None) -> None:
        """Fit the head on N x H x W x 3 ``images`` with their N x K ``labels`` (the classes whose
        CAMs are taken) and ``classes`` (the pixel classes they paint), -1 padded; ``progress``
        (a console stage) advances per image of the feature pass. The seeds come from the
        ``heatmap`` labeler's maps, or from ``heatmaps`` (N x K x H x W) where given."""
        import torch
        import torch.nn.functional as F

        params = self.params
        values = allowed_values(classes, params.background)
        features, seeds = [], []
        source = self.heatmap_source() if heatmaps is None else None
        for start in range(0, len(images), BATCH):
            rows = slice(start, start + BATCH)
            grid = self.features()(images[rows])
            maps = torch.from_numpy(np.ascontiguousarray(
                heatmaps[rows] if heatmaps is not None else source.class_heatmaps(images[rows], labels[rows]),
                np.float32))
            maps = F.adaptive_avg_pool2d(maps, grid.shape[-2:])
            for offset, feature in enumerate(grid):
                allowed = values[start + offset]
                entries = len(allowed) - int(params.background)
                features.append(feature.flatten(1).half())
                seeds.append(seed_values(maps[offset, :entries], allowed, params))
            if progress is not None:
                progress.advance(len(grid))
        width = 1 + max((max(v) for v in values if v), default=1)
        layer = fit_layer(features, seeds, width, params, self.context.seed)
        for round_number in range(params.rounds):
            with torch.no_grad():
                labelled = []
                for feature, allowed in zip(features, values):
                    probabilities = restricted(layer(feature.T.float()).T, allowed)
                    best, index = probabilities.max(dim=0)
                    chosen = torch.as_tensor(allowed)[index]
                    labelled.append(torch.where(best >= params.confidence, chosen, torch.full_like(chosen, -1)))
            layer = fit_layer(features, labelled, width, params, self.context.seed + round_number + 1)
        self._layer = layer.eval()

    def save_fit(self, location: str, fingerprint: str) -> None:
        """Write the fitted head to ``location`` whole, for the set of ``fingerprint``."""
        import torch

        buffer = io.BytesIO()
        torch.save({"format": FIT_FORMAT, "fingerprint": fingerprint, "state": self._layer.state_dict()}, buffer)
        storage.write_bytes(location, buffer.getvalue())

    def load_fit(self, location: str, fingerprint: str) -> None:
        """Load the head ``save_fit`` wrote for the set of ``fingerprint``; a head for another set
        (other data, classifier or params) is an error that says how to remake it."""
        import torch

        if not storage.is_file(location):
            raise NotFittedError(f"labeler {self.name!r}: no fitted head at {location}: `wsss pseudo` "
                                 f"fits it before labelling; delete the set's folder to remake the set whole")
        payload = torch.load(io.BytesIO(storage.read_bytes(location)), map_location="cpu", weights_only=True)
        if payload.get("format") != FIT_FORMAT or payload.get("fingerprint") != fingerprint:
            raise NotFittedError(
                f"labeler {self.name!r}: the head at {location} was fitted for set "
                f"{payload.get('fingerprint')!r}, not {fingerprint!r}: delete {location} and rerun "
                f"`wsss pseudo` to refit it")
        state = payload["state"]
        layer = torch.nn.Linear(state["weight"].shape[1], state["weight"].shape[0])
        layer.load_state_dict(state)
        self._layer = layer.eval()

    def head_digest(self) -> str:
        """A short hash of the fitted weights (what a log line can name)."""
        state = self._layer.state_dict()
        return stable_hash([state["weight"].sum().item(), state["bias"].tolist()], 8)

    def probabilities(self, images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, list[list[int]]]:
        """N x W x H x W maps of each image's allowed values (``allowed_values``, zero padded to
        the longest) at the images' size, and those values."""
        import torch
        import torch.nn.functional as F

        if not self.fitted:
            raise NotFittedError(f"labeler {self.name!r} has no fitted head: `wsss pseudo` fits it on "
                                 f"the train and val images first; called directly, call fit() first")
        values = allowed_values(classes, self.params.background)
        grid = self.features()(images)
        width = max(len(v) for v in values)
        out = torch.zeros((len(images), width, *grid.shape[-2:]))
        with torch.no_grad():
            logits = self._layer(grid.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).flatten(2)
            for row, allowed in enumerate(values):
                out[row, :len(allowed)] = restricted(logits[row], allowed).view(len(allowed), *grid.shape[-2:])
        maps = F.interpolate(out, size=images.shape[1:3], mode="bilinear", align_corners=False).numpy()
        return maps, values

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images, params = batch["image"], self.params
        maps, values = self.probabilities(images, batch["classes"])
        if params.refine_iterations:  # image by image, its own maps only: no padded map is moved
            pamr = PamrParams(iterations=params.refine_iterations, dilations=params.dilations)
            for row, allowed in enumerate(values):
                maps[row, :len(allowed)] = refine_maps(images[row:row + 1], maps[row:row + 1, :len(allowed)], pamr)[0]
        best, index = maps.max(axis=1), maps.argmax(axis=1)
        table = np.zeros((len(values), maps.shape[1]), np.uint8)
        for row, allowed in enumerate(values):
            table[row, :len(allowed)] = allowed
        masks = table[np.arange(len(values))[:, None, None], index]
        masks = np.where(best >= max(params.threshold, 1e-6), masks, MASK_IGNORE).astype(np.uint8)
        return {"mask": masks}

    def close(self) -> None:
        if self._features is not None:
            self._features.close()
            self._features = None
        super().close()
