"""Grad-CAM++ (Chattopadhyay et al. 2018); pytorch-grad-cam's ``GradCAMPlusPlus`` is the
reference, and its closed form (exponential class score, so higher derivatives are powers of the
first) is ported here as is."""

from __future__ import annotations

from typing import Any

from wsss.labelers.heatmap import HeatmapLabeler
from wsss.labelers.registry import register

GRADCAMPP_EPS = 1e-6  # pytorch_grad_cam.grad_cam_plusplus


@register
class GradCAMPlusPlus(HeatmapLabeler):
    name = "gradcampp"
    description = "Grad-CAM++: channel weights from higher-order gradient terms"

    @staticmethod
    def channel_weights(activations, grads, head_rows):
        """w_k^c = sum_xy alpha_xy ReLU(g_xy), alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)."""
        grads_2 = grads * grads
        grads_3 = grads_2 * grads
        sum_activations = activations.sum(dim=(2, 3), keepdim=True)
        aij = grads_2 / (2 * grads_2 + sum_activations * grads_3 + GRADCAMPP_EPS)
        aij = aij.masked_fill(grads == 0, 0.0)  # the paper's ReLU: no weight where no gradient
        return (grads.clamp(min=0) * aij).sum(dim=(2, 3))

    def cam_factory(self, model: Any, target_layer: Any) -> Any:
        from pytorch_grad_cam import GradCAMPlusPlus as Method

        return Method(model=model, target_layers=[target_layer])
