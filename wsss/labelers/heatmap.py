"""Base of the CAM family: a breed classifier's heatmap, per image in [0, 1], then a threshold.

One CAM object is built per labeler instance (per Ray actor) and reused for every batch:
pytorch-grad-cam registers hooks on the model and leaks when its objects are re-created.
The classifier runs at the resolution it was trained at; heatmaps are upsampled to the image.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from wsss.labelers.base import Labeler, ThresholdParams, apply_threshold, file_hash

RANDOM_CLASSIFIER_BACKBONE = "resnet18"


class HeatmapParams(ThresholdParams):
    target: Literal["labelled", "predicted"] = "labelled"


class HeatmapLabeler(Labeler):
    """Subclasses set ``cam_factory(model, target_layer)`` returning a pytorch-grad-cam object."""

    Params = HeatmapParams
    stage: ClassVar[str] = "heatmap"

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
        from wsss.models.classifier import WeightsMissingError, build_classifier, load_classifier

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
        if self._cam is None:
            from wsss.models.classifier import backbone_spec, get_module

            model, backbone, self._input_size = self._load_model()
            for parameter in model.parameters():
                parameter.requires_grad_(False)  # CAMs need activation gradients, not weights'
            layer = get_module(model, backbone_spec(model, backbone).target_layer)
            self._model, self._head = model, get_module(model, backbone_spec(model, backbone).head)
            self._cam = self.cam_factory(model, layer)
        return self._cam

    def heatmaps(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """N x H x W float32 heatmaps in [0, 1] for the labelled (or predicted) class."""
        import cv2
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from wsss.data.arrays import resize_image
        from wsss.models.classifier import to_input_tensor

        cam = self._build()
        height, width = images.shape[1:3]
        inputs = images
        if self._input_size and (height, width) != (self._input_size, self._input_size):
            inputs = np.stack([resize_image(image, self._input_size) for image in images])
        tensor = to_input_tensor(inputs, self.context.device).requires_grad_(True)
        targets = None
        if self.params.target == "labelled":
            targets = [ClassifierOutputTarget(int(label)) for label in labels]
        maps = np.asarray(cam(input_tensor=tensor, targets=targets), dtype=np.float32)
        if maps.shape[1:] != (height, width):
            maps = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
                             for m in maps])
        return np.clip(maps, 0.0, 1.0)

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        heatmap = self.heatmaps(batch["image"], batch["label"])
        return {"heatmap": heatmap, "mask": apply_threshold(heatmap, self.params)}

    def close(self) -> None:
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None
        super().close()
