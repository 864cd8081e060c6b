"""Grad-CAM over any detector through its contract (``target_layers``, ``reshape_transform``)."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn


class _Logits(nn.Module):
    """Adapts a dict-returning detector to pytorch-grad-cam, which expects a logits tensor."""

    def __init__(self, detector: nn.Module, select: Callable[[dict], torch.Tensor],
                 forward: Callable[[torch.Tensor], dict] | None = None) -> None:
        super().__init__()
        self.detector = detector
        self.select = select
        self.run = forward or detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(self.run(x))


def _raw_grad_cam_class():
    """pytorch-grad-cam's GradCAM without its per-image min-max: per layer ``ReLU(sum_k w_k A^k)``
    (``w_k`` = the spatial mean of the target's gradient over channel ``k``) resized bilinearly
    to the input, then the mean over layers, in the layer's own units."""
    from pytorch_grad_cam import GradCAM

    class RawGradCAM(GradCAM):
        def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
            activations = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
            grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
            width, height = self.get_target_width_height(input_tensor)
            per_layer = []
            for layer, a, g in zip(self.target_layers, activations, grads):
                cam = np.maximum(self.get_cam_image(input_tensor, layer, targets, a, g, eigen_smooth), 0)
                per_layer.append(np.stack([cv2.resize(np.float32(c), (width, height), interpolation=cv2.INTER_LINEAR)
                                           for c in cam])[:, None])
            return per_layer

        def aggregate_multi_layers(self, cam_per_target_layer):
            return np.maximum(np.concatenate(cam_per_target_layer, axis=1), 0).mean(axis=1)

    return RawGradCAM


def grad_cam(detector, x: torch.Tensor, target_class: int = 1, layers: list[nn.Module] | None = None,
             select: Callable[[dict], torch.Tensor] | None = None,
             forward: Callable[[torch.Tensor], dict] | None = None, raw: bool = False) -> np.ndarray:
    """Grad-CAM map (H, W) at the input's spatial size, for ``target_class`` (1 = fake).

    By default scaled to [0, 1] per image (pytorch-grad-cam's min-max); ``raw=True`` keeps
    Grad-CAM's own values (``ReLU`` of the gradient-weighted sum of the layer's activations, >= 0,
    in the layer's units) so that a fixed, calibrated colour range can be applied. ``select``
    picks the logits from the forward dict (default ``out["logits"]``); ``forward`` replaces
    ``detector(x)`` (e.g. to reuse work done for the verdict); hooks are released when done,
    whatever happens.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = detector.training
    detector.eval()
    wrapper = _Logits(detector, select or (lambda out: out["logits"]), forward)
    method = _raw_grad_cam_class() if raw else GradCAM
    try:
        with torch.enable_grad(), method(model=wrapper, target_layers=layers or detector.target_layers(),
                                         reshape_transform=detector.reshape_transform) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target_class)] * x.shape[0])
    finally:
        detector.train(was_training)
    return np.asarray(maps[0], dtype=np.float32)
