"""Explain one detector's decision on one aligned face.

Each detector family may ship ``explain/<family>.py`` with a function
``explain(detector, aligned, x, out) -> list[Explanation]`` (its own evidence plus Grad-CAM);
families without one get plain Grad-CAM.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable

import numpy as np
import torch

from detectors.faces import AlignedFace

from .base import Explanation
from .gradcam import grad_cam
from .render import heatmap_overlay, resize_map

ExplainFn = Callable[[Any, AlignedFace, torch.Tensor, dict], list[Explanation]]


def gradcam_explanation(detector, aligned: AlignedFace, x: torch.Tensor, title: str = "Grad-CAM",
                        forward: Callable[[torch.Tensor], dict] | None = None) -> Explanation:
    """Grad-CAM toward "fake" over the crop, with its caption (``forward``: see :func:`grad_cam`)."""
    heat = resize_map(grad_cam(detector, x, forward=forward), aligned.image.shape[:2])
    return Explanation("gradcam", title, heatmap_overlay(aligned.image, heat), (
        "Bright areas pushed the decision towards 'fake' the most (Grad-CAM on the last feature block)."), heatmap=heat)


def _family_explainer(family: str) -> ExplainFn | None:
    module = f"explain.{family}"
    if family and importlib.util.find_spec(module) is not None:
        return getattr(importlib.import_module(module), "explain", None)
    return None


def explain(detector, aligned: AlignedFace) -> tuple[dict, list[Explanation]]:
    """Run ``detector`` on ``aligned`` and collect its explanations.

    Returns the forward output (detached) and the explanations.
    """
    x = detector.preprocess(aligned)
    detector.eval()
    with torch.no_grad():
        out = detector(x)
    fn = _family_explainer(detector.family)
    explanations = fn(detector, aligned, x, out) if fn else [gradcam_explanation(detector, aligned, x)]
    return out, explanations


def as_heatmap_at(explanation: Explanation, size: tuple[int, int]) -> np.ndarray | None:
    """The explanation's raw map resized to ``size`` (for scoring against masks), if it has one."""
    return None if explanation.heatmap is None else resize_map(explanation.heatmap, size)
