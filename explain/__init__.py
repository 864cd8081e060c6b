"""Explanations over any detector: Grad-CAM and each method's own evidence, rendered to images.

Explainers return :class:`Explanation` objects (arrays and captions, no UI types); the app
only lays them out.
"""
from .base import Explanation
from .gradcam import grad_cam
from .render import colorize, heatmap_overlay

__all__ = ["Explanation", "colorize", "grad_cam", "heatmap_overlay"]
