"""Donor choice for the blend forgeries: nearest neighbours over landmark shapes (Face X-ray).

Each face is described by its landmarks in a canonical aligned frame (so pose and face shape
count, position and scale do not); a donor is drawn from its ``k`` nearest other faces.
"""
from __future__ import annotations

import numpy as np

from detectors.faces import CropPolicy
from detectors.faces import mesh_indices as idx
from detectors.faces.align import apply_matrix, crop_matrix

_SHAPE_POINTS = np.array(sorted(set(idx.FACE_OVAL + idx.LEFT_EYE + idx.RIGHT_EYE + idx.NOSE + idx.LIPS
                                    + idx.LEFT_BROW + idx.RIGHT_BROW)))


def shape_descriptor(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks of the shape points in a canonical 1.0-sized aligned frame, flattened."""
    policy = CropPolicy(size=1, margin=1.3, align=True)
    pts = apply_matrix(crop_matrix(np.asarray(landmarks, np.float64), policy), np.asarray(landmarks))
    return pts[_SHAPE_POINTS].reshape(-1).astype(np.float32)


def nearest_neighbours(landmarks: list[np.ndarray], k: int = 20) -> np.ndarray:
    """``(N, min(k, N-1))`` indices of each face's nearest other faces, closest first."""
    n = len(landmarks)
    if n < 2:
        return np.zeros((n, 0), np.int64)
    desc = np.stack([shape_descriptor(p) for p in landmarks])
    sq = (desc ** 2).sum(1)
    dist = sq[:, None] + sq[None, :] - 2 * desc @ desc.T
    np.fill_diagonal(dist, np.inf)
    k = min(k, n - 1)
    part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(dist, part, 1).argsort(1)
    return np.take_along_axis(part, order, 1)
