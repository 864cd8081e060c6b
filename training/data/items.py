"""Shared steps of every data set: crop a face from a file, and turn a crop into a batch item."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from detectors.faces import CropPolicy, align_face, load_image

from . import kinds
from .augment import AugmentConfig, augment
from .sentences import regions_of, sentence_for

#: Keys of every item (and batch) the data sets produce.
ITEM_KEYS = ("image", "label", "kind", "mask", "regions", "sentence", "video_id")


def in_val_split(name: str, val_fraction: float) -> bool:
    """Deterministic split by a hash of ``name`` (a file name or a video id)."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < val_fraction


def centre_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The centred square of ``image`` resized to ``size``, and its 2x3 matrix."""
    h, w = image.shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) / 2, (h - side) / 2
    s = size / side
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float64)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR), m


def crop_face(image: np.ndarray, landmarks: np.ndarray | None, policy: CropPolicy
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(crop, crop landmarks or None, matrix)``; a centred square crop when there is no face."""
    if landmarks is None:
        crop, m = centre_crop(image, policy.size)
        return crop, None, m
    a = align_face(image, landmarks, policy)
    return a.image, a.landmarks, a.matrix


def warp_mask(mask: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return np.clip(cv2.warpAffine(mask.astype(np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR), 0, 1)


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image as float32 in [0, 1] at ``shape`` (grey levels; any channel > 0 counts)."""
    m = load_image(path).astype(np.float32).max(-1) / 255.0
    if m.shape != shape:
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return m


def make_item(image: np.ndarray, mask: np.ndarray, label: int, kind: int, regions: np.ndarray, video_id: str,
              detector_config: Any, rng: np.random.Generator | None = None, aug: AugmentConfig | None = None,
              sentence: str | None = None) -> dict[str, Any]:
    """Augment (if ``aug``), resize to the detector's input size and normalise into an item dict.

    ``sentence=None`` derives it from kind and (possibly flipped) regions.
    """
    fixed_sentence = sentence
    if aug is not None and rng is not None:
        image, mask, regions, flipped = augment(image, mask, regions, rng, aug)
        if flipped and int(kind) == kinds.REGION:
            fixed_sentence = None  # a flip turns "left" into "right": derive the sentence again
    s = int(detector_config.input_size)
    if image.shape[0] != s:
        interp = cv2.INTER_AREA if image.shape[0] > s else cv2.INTER_LINEAR
        image = cv2.resize(image, (s, s), interpolation=interp)
        mask = cv2.resize(mask, (s, s), interpolation=cv2.INTER_LINEAR)
    mean = np.asarray(detector_config.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(detector_config.std, np.float32).reshape(3, 1, 1)
    x = (image.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std
    text = fixed_sentence if fixed_sentence is not None else sentence_for(int(kind), regions_of(regions))
    return {
        "image": torch.from_numpy(np.ascontiguousarray(x)),
        "label": torch.tensor(int(label), dtype=torch.long),
        "kind": torch.tensor(int(kind), dtype=torch.long),
        "mask": torch.from_numpy(np.clip(mask, 0, 1).astype(np.float32)[None].copy()),
        "regions": torch.from_numpy(np.asarray(regions, np.float32).copy()),
        "sentence": text,
        "video_id": str(video_id),
    }
