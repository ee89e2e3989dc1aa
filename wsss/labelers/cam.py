"""CAM (Zhou et al. 2016): the class's fc weights times the last feature map.

pytorch-grad-cam has no plain CAM, so the reference is its ``BaseCAM`` with the channel weights
read from the classification head instead of from gradients (no backward pass).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from wsss.labelers.heatmap import HeatmapLabeler
from wsss.labelers.registry import register


def class_activation_map_type():
    from pytorch_grad_cam.base_cam import BaseCAM

    class ClassActivationMap(BaseCAM):
        """M_c(x, y) = sum_k w_k^c f_k(x, y), with w the head's weights for class c."""

        def __init__(self, model: Any, target_layers: list, head: Any):
            super().__init__(model, target_layers, uses_gradients=False)
            self.head_weights = head.weight.detach().float().cpu().numpy()

        def get_cam_weights(self, input_tensor, target_layers, targets, activations, grads):
            return np.stack([self.head_weights[target.category] for target in targets])

    return ClassActivationMap


@register
class CAM(HeatmapLabeler):
    name = "cam"
    description = "CAM: classifier head weights x last feature map, thresholded"
    uses_gradients: ClassVar[bool] = False

    @staticmethod
    def channel_weights(activations, grads, head_rows):
        """w_k^c: the head's row for the target class."""
        return head_rows

    def cam_factory(self, model: Any, target_layer: Any) -> Any:
        return class_activation_map_type()(model, [target_layer], self._head)
