"""Base of the CAM family: a breed classifier's heatmap, per image in [0, 1], then a threshold.

Maps come from ``wsss.labelers.fastcam``: one forward pass and a backward through the head
only, built once per labeler (per Ray actor); labelers on one classifier can share one pass
for all their kinds (``share_heatmaps``). pytorch-grad-cam's object for each method
(``cam_factory``) stays the reference the fast path must match (``reference_cam``).
The classifier runs at the resolution it was trained at; heatmaps are upsampled to the image.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from wsss.data.arrays import resize_image
from wsss.identity import file_hash
from wsss.labelers.base import HeatmapRef, HeatmapView, Labeler, ThresholdParams, cut_heatmaps
from wsss.labelers.fastcam import BF16_ON_CUDA, CamEngine, SharedCams, ref_key
from wsss.models.classifier import (
    WeightsMissingError,
    backbone_spec,
    build_classifier,
    get_module,
    load_classifier,
)

RANDOM_CLASSIFIER_BACKBONE = "resnet18"


class HeatmapParams(ThresholdParams, HeatmapView):
    target: Literal["labelled", "predicted"] = "labelled"


class HeatmapLabeler(Labeler):
    """Subclasses set ``channel_weights(activations, grads, head_rows)``, the method's formula the
    fast engine runs, and ``cam_factory(model, target_layer)``, the pytorch-grad-cam reference."""

    Params = HeatmapParams
    stage: ClassVar[str] = "heatmap"
    per_class: ClassVar[bool] = True  # a map per class the image carries (masks.stages.class_heatmaps)
    uses_gradients: ClassVar[bool] = True  # False: the formula reads no gradient (no backward)
    has_reference: ClassVar[bool] = True  # pytorch-grad-cam has this method (``cam_factory``)

    @staticmethod
    def channel_weights(activations, grads, head_rows):
        """N x C channel weights from N x C x h x w activations and gradients and N x C head rows."""
        raise NotImplementedError

    def __init__(self, params=None, context=None):
        super().__init__(params, context)
        self._cam: Any = None
        self._input_size: int | None = None

    def cam_factory(self, model: Any, target_layer: Any) -> Any:
        raise NotImplementedError

    def weights_id(self) -> str:
        checkpoint = self.context.classifier_checkpoint
        if checkpoint is None:
            return f"random-{RANDOM_CLASSIFIER_BACKBONE}-seed{self.context.seed}"
        return file_hash(checkpoint)

    def _load_model(self) -> tuple[Any, str, int | None]:
        checkpoint = self.context.classifier_checkpoint
        if checkpoint is not None:
            model, meta = load_classifier(checkpoint, self.context.device)
            return model, meta["backbone"], meta.get("image_size")
        if not self.context.allow_random_weights:
            raise WeightsMissingError(
                f"labeler {self.name!r} needs a trained breed classifier: set "
                f"classifier.checkpoint, or train one with `wsss classify --config C`")
        import torch

        torch.manual_seed(self.context.seed)
        model = build_classifier(RANDOM_CLASSIFIER_BACKBONE, "none")
        return model.to(self.context.device).eval(), RANDOM_CLASSIFIER_BACKBONE, None

    def _build(self) -> Any:
        """Load the classifier and its fast CAM engine (``wsss.labelers.fastcam``) once."""
        if self._cam is None:
            model, backbone, self._input_size = self._load_model()
            spec = backbone_spec(model, backbone)
            self._model, self._layer = model, get_module(model, spec.target_layer)
            self._head = get_module(model, spec.head)
            bf16 = BF16_ON_CUDA and self.context.device.startswith("cuda")
            engine = self._engine(model, self._layer, self._head, bf16)
            self._cam = SharedCams(engine, [(self.name, self.params.target)])
        return self._cam

    def _engine(self, model: Any, layer: Any, head: Any, bf16: bool) -> CamEngine:
        """The fast engine for this method (one whose target rows differ overrides it)."""
        return CamEngine(model, layer, head, self.context.device, bf16=bf16)

    def reference_cam(self) -> Any:
        """pytorch-grad-cam's object for this method on a copy of the classifier: the reference
        the fast engine is tested and benchmarked against. Release it when done."""
        import copy

        self._build()
        layer = next(name for name, module in self._model.named_modules() if module is self._layer)
        model = copy.deepcopy(self._model)  # its own hooks: the engine's model stays clean
        return self.cam_factory(model, get_module(model, layer))

    def own_ref(self) -> HeatmapRef:
        """The heatmap this labeler makes, as box and SAM2 labelers name it."""
        return HeatmapRef(method=self.name, target=self.params.target, **self.params.view_params())

    def heatmaps(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """N x H x W float32 heatmaps in [0, 1] for the labelled (or predicted) class: the
        mean of every view (``scales`` x ``flip``), normalised per image."""
        views = [(scale, mirrored) for scale in self.params.scales
                 for mirrored in ((False, True) if self.params.flip else (False,))]
        total = sum(self._view_maps(images, labels, scale, mirrored) for scale, mirrored in views)
        if len(views) > 1:
            total = total / np.maximum(total.reshape(len(total), -1).max(axis=1), 1e-7)[:, None, None]
        return np.clip(total, 0.0, 1.0)

    def _view_maps(self, images: np.ndarray, labels: np.ndarray, scale: float,
                   mirrored: bool) -> np.ndarray:
        """One view's maps at the images' size: the classifier at ``scale`` x its input size."""
        import cv2

        shared = self._build()
        height, width = images.shape[1:3]
        side = None if self._input_size is None and scale == 1.0 else \
            round((self._input_size or height) * scale)
        inputs = images[:, :, ::-1] if mirrored else images
        if side and (height, width) != (side, side):
            inputs = np.stack([resize_image(np.ascontiguousarray(image), side) for image in inputs])
        maps = shared.maps(np.ascontiguousarray(inputs), labels)[ref_key(self.name, self.params.target)]
        if maps.shape[1:] != (height, width):
            maps = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
                             for m in maps])
        return maps[:, :, ::-1] if mirrored else maps

    def class_heatmaps(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """N x K x H x W heatmaps, one per entry of each image's label set (N x K, -1 padded);
        zeros where a row has fewer classes. Each is this method's map for that class, so the
        classes an image carries compete for its pixels (``base.class_map``)."""
        labels = np.asarray(labels, np.int64)
        maps = np.zeros((len(images), labels.shape[1], *images.shape[1:3]), np.float32)
        for k in range(labels.shape[1]):
            rows = np.flatnonzero(labels[:, k] >= 0)
            if len(rows) == len(images):  # every image has this entry (one class each: K = 1)
                maps[:, k] = self.heatmaps(images, labels[:, k])
            elif len(rows):
                maps[rows, k] = self.heatmaps(images[rows], labels[rows, k])
        return maps

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        heatmaps = self.class_heatmaps(batch["image"], batch["labels"])
        return {"heatmap": heatmaps, "mask": cut_heatmaps(heatmaps, batch["classes"], self.params)}

    def close(self) -> None:
        if self._cam is not None:
            self._cam.engine.close()  # shared: the others' engine is this one's, already closed
            self._cam = None
        super().close()


def share_heatmaps(labelers: list[HeatmapLabeler]) -> None:
    """Let labelers on the same classifier and device share one engine and one pass per batch.

    Builds the first labeler of each group (a bad checkpoint raises here) and points the rest
    at its ``SharedCams``, which then computes every member's kind in one pass. Outputs are
    those of each labeler alone: the same engine code on the same batch.
    """
    leaders: dict[tuple, HeatmapLabeler] = {}
    for labeler in labelers:
        group = (labeler.weights_id(), labeler.context.device, labeler.context.seed)
        leader = leaders.setdefault(group, labeler)
        shared = leader._build()
        if labeler is not leader:
            labeler.close()
            labeler._cam, labeler._model, labeler._input_size = shared, leader._model, leader._input_size
            labeler._layer, labeler._head = leader._layer, leader._head
            shared.add(labeler.name, labeler.params.target)
