"""Align and crop a face the way each detector's crop policy asks (DeepfakeBench-style).

DeepfakeBench aligns five keypoints (eye centres, nose tip, mouth corners) to the ArcFace
112 px template with a similarity transform and a margin scale of 1.3, at 256 px. We do the
same with mediapipe keypoints; ``align=False`` gives an axis-aligned square box instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import mesh_indices as idx
from .landmarks import Face

# ArcFace five-point template in a 112x112 frame (the 96x112 original shifted by 8 in x).
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


@dataclass(frozen=True)
class CropPolicy:
    """How a detector wants its face cut out: output side, margin around the face, alignment."""

    size: int = 256
    margin: float = 1.3
    align: bool = True


@dataclass(frozen=True)
class AlignedFace:
    """A face crop, the 2x3 matrix mapping image to crop pixels, and landmarks in crop pixels."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    matrix: np.ndarray  # (2, 3) float64
    landmarks: np.ndarray  # (478, 2) float32
    policy: CropPolicy


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners, ordered image-left to image-right per pair."""
    eyes = landmarks[[idx.RIGHT_IRIS_CENTER, idx.LEFT_IRIS_CENTER]]
    mouth = landmarks[[idx.MOUTH_RIGHT_CORNER, idx.MOUTH_LEFT_CORNER]]
    eyes = eyes[np.argsort(eyes[:, 0])]
    mouth = mouth[np.argsort(mouth[:, 0])]
    return np.stack([eyes[0], eyes[1], landmarks[idx.NOSE_TIP], mouth[0], mouth[1]]).astype(np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping ``src`` onto ``dst``."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / s.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def crop_matrix(landmarks: np.ndarray, policy: CropPolicy) -> np.ndarray:
    """The 2x3 matrix taking image pixels to crop pixels under ``policy``."""
    if policy.align:
        template = (_ARCFACE_112 - 56.0) / policy.margin * (policy.size / 112.0) + policy.size / 2.0
        return similarity_transform(five_points(landmarks), template)
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    side = max(x1 - x0, y1 - y0) * policy.margin
    scale = policy.size / max(side, 1e-6)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[scale, 0, policy.size / 2 - scale * cx], [0, scale, policy.size / 2 - scale * cy]])


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def align_face(image: np.ndarray, face: Face | np.ndarray, policy: CropPolicy = CropPolicy()) -> AlignedFace:
    """Cut the face out of ``image`` as ``policy`` says, with its landmarks moved along."""
    landmarks = face.landmarks if isinstance(face, Face) else np.asarray(face, dtype=np.float32)
    matrix = crop_matrix(landmarks, policy)
    crop = cv2.warpAffine(image, matrix, (policy.size, policy.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(crop, matrix, apply_matrix(matrix, landmarks), policy)
