"""Grad-CAM (Selvaraju et al. 2017); pytorch-grad-cam's ``GradCAM`` is the reference."""

from __future__ import annotations

from typing import Any

from wsss.labelers.heatmap import HeatmapLabeler
from wsss.labelers.registry import register


@register
class GradCAM(HeatmapLabeler):
    name = "gradcam"
    description = "Grad-CAM: channel weights from the mean gradient of the class score"

    @staticmethod
    def channel_weights(activations, grads, head_rows):
        """w_k^c = mean over (x, y) of d y^c / d A_k(x, y)."""
        return grads.mean(dim=(2, 3))

    def cam_factory(self, model: Any, target_layer: Any) -> Any:
        from pytorch_grad_cam import GradCAM as Method

        return Method(model=model, target_layers=[target_layer])
