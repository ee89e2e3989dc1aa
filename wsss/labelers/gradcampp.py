"""Grad-CAM++ (Chattopadhyay et al. 2018) from pytorch-grad-cam, thresholded."""

from __future__ import annotations

from typing import Any

from wsss.labelers.heatmap import HeatmapLabeler
from wsss.labelers.registry import register


@register
class GradCAMPlusPlus(HeatmapLabeler):
    name = "gradcampp"
    description = "Grad-CAM++: channel weights from higher-order gradient terms"

    def cam_factory(self, model: Any, target_layer: Any) -> Any:
        from pytorch_grad_cam import GradCAMPlusPlus as Method

        return Method(model=model, target_layers=[target_layer])
