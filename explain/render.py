"""Turn maps into pictures with colour-blind-safe colour maps (viridis/cividis), never red/green."""
from __future__ import annotations

import cv2
import matplotlib
import numpy as np

DEFAULT_CMAP = "viridis"


def normalize(heatmap: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] (a constant map becomes all zeros)."""
    h = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    lo, hi = float(h.min()), float(h.max())
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def colorize(heatmap: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """A [0, 1] map as an RGB ``uint8`` image."""
    rgba = matplotlib.colormaps[cmap](np.clip(heatmap, 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a map to ``(H, W)`` bilinearly."""
    h, w = size
    return cv2.resize(np.asarray(heatmap, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Blend a [0, 1] map (any size) over an RGB image."""
    m = resize_map(heatmap, image.shape[:2])
    return (image.astype(np.float32) * (1 - alpha) + colorize(m, cmap).astype(np.float32) * alpha).round().astype(np.uint8)

