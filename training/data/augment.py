"""Augmentation applied identically to real and fake faces (so that no class owns an artifact).

Horizontal flip (mask flipped, left/right region labels swapped), colour, Gaussian blur, and a
down-scale + JPEG + up-scale step that mimics a face saved small and compressed (as the
``dev-gan`` images are: 128 px JPEG q75). Every draw comes from the given ``rng``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .sentences import flip_vector


@dataclass
class AugmentConfig:
    flip: float = 0.5  # probability of a horizontal flip
    color: float = 0.5  # probability of a brightness/contrast/saturation change
    color_strength: float = 0.15
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    resize: float = 0.5  # probability of the down-scale before JPEG
    resize_scale: tuple[float, float] = (0.4, 0.9)
    jpeg: float = 0.8
    jpeg_quality: tuple[int, int] = (60, 95)

    @classmethod
    def from_cfg(cls, cfg: Any) -> AugmentConfig | None:
        """``None``/``True`` -> defaults, ``False`` -> no augmentation, dict -> overrides."""
        if cfg is False:
            return None
        if cfg is None or cfg is True:
            return cls()
        out = cls()
        for k, v in dict(cfg).items():
            if not hasattr(out, k):
                raise ValueError(f"unknown augment option {k!r}")
            setattr(out, k, tuple(v) if isinstance(v, list) else v)
        return out


def augment(image: np.ndarray, mask: np.ndarray, regions: np.ndarray, rng: np.random.Generator,
            cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Returns ``(image, mask, regions, flipped)``; image uint8 (S, S, 3), mask float32 (S, S)."""
    flipped = bool(rng.random() < cfg.flip)
    if flipped:
        image = np.ascontiguousarray(image[:, ::-1])
        mask = np.ascontiguousarray(mask[:, ::-1])
        regions = flip_vector(regions)
    if rng.random() < cfg.color:
        image = _color(image, rng, cfg.color_strength)
    if rng.random() < cfg.blur:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(*cfg.blur_sigma)))
    h, w = image.shape[:2]
    small = image
    if rng.random() < cfg.resize:
        f = float(rng.uniform(*cfg.resize_scale))
        small = cv2.resize(image, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    if rng.random() < cfg.jpeg:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            small = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    if small.shape[:2] != (h, w):
        small = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(small), mask, regions, flipped


def _color(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    img = image.astype(np.float32)
    brightness = rng.uniform(-1, 1) * strength * 255 * 0.5
    contrast = 1 + rng.uniform(-1, 1) * strength
    saturation = 1 + rng.uniform(-1, 1) * strength * 2
    gray = img.mean(-1, keepdims=True)
    img = gray + (img - gray) * saturation
    img = (img - img.mean()) * contrast + img.mean() + brightness
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
