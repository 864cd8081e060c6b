"""Grad-CAM over any detector through its contract (``target_layers``, ``reshape_transform``)."""
from __future__ import annotations

from typing import Callable

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


def grad_cam(detector, x: torch.Tensor, target_class: int = 1, layers: list[nn.Module] | None = None,
             select: Callable[[dict], torch.Tensor] | None = None,
             forward: Callable[[torch.Tensor], dict] | None = None) -> np.ndarray:
    """Grad-CAM map (H, W) in [0, 1] at the input's spatial size, for ``target_class`` (1 = fake).

    ``select`` picks the logits from the forward dict (default ``out["logits"]``); ``forward``
    replaces ``detector(x)`` (e.g. to reuse work done for the verdict); hooks are released when
    done, whatever happens.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = detector.training
    detector.eval()
    wrapper = _Logits(detector, select or (lambda out: out["logits"]), forward)
    try:
        with torch.enable_grad(), GradCAM(model=wrapper, target_layers=layers or detector.target_layers(),
                                          reshape_transform=detector.reshape_transform) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target_class)] * x.shape[0])
    finally:
        detector.train(was_training)
    return np.asarray(maps[0], dtype=np.float32)
