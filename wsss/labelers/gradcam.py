"""Grad-CAM (Selvaraju et al. 2017) from pytorch-grad-cam, thresholded."""

from __future__ import annotations

from typing import Any

from wsss.labelers.heatmap import HeatmapLabeler
from wsss.labelers.registry import register


@register
class GradCAM(HeatmapLabeler):
    name = "gradcam"
    description = "Grad-CAM: channel weights from the mean gradient of the class score"

    def cam_factory(self, model: Any, target_layer: Any) -> Any:
        from pytorch_grad_cam import GradCAM as Method

        return Method(model=model, target_layers=[target_layer])
