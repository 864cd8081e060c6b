"""Find faces and their 478 landmarks with mediapipe's face mesh (static mode, refined iris)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import NoFaceFound

#: Images whose shorter side is below this are upscaled before detection (face mesh misses
#: faces in small crops such as 128 px FFHQ thumbnails otherwise).
DETECTION_MIN_SIDE = 256
#: Below this shorter side there is nothing to analyse.
MIN_IMAGE_SIDE = 24
MAX_FACES = 5
N_LANDMARKS = 478


@dataclass(frozen=True)
class Face:
    """One detected face: landmarks in the pixel coordinates of the image it was found in."""

    landmarks: np.ndarray  # (478, 2) float32, x then y

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        x0, y0 = self.landmarks.min(axis=0)
        x1, y1 = self.landmarks.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return (x1 - x0) * (y1 - y0)

    def flipped(self, width: int) -> "Face":
        """The same face in the horizontally mirrored image (landmark indices unchanged)."""
        pts = self.landmarks.copy()
        pts[:, 0] = (width - 1) - pts[:, 0]
        return Face(pts)


class _FaceMesh:
    """One mediapipe graph per process, guarded by a lock (its graphs are not thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mesh = None

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            if self._mesh is None:
                import mediapipe as mp  # heavy import, deferred to first use

                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=MAX_FACES,
                    refine_landmarks=True,
                    min_detection_confidence=0.5,
                )
            result = self._mesh.process(rgb)
        h, w = rgb.shape[:2]
        faces = []
        for lms in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in lms.landmark], dtype=np.float32)
            faces.append(pts)
        return faces


_MESH = _FaceMesh()


def _run_mesh(rgb: np.ndarray) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    scale = max(1.0, DETECTION_MIN_SIDE / min(h, w))
    work = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    found = _MESH(np.ascontiguousarray(work))
    if not found:
        # Faces that fill the whole frame (tight crops) are found once the frame has room around them.
        pad = max(work.shape[:2]) // 4
        padded = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        found = [pts - pad for pts in _MESH(padded)]
    return [pts / scale for pts in found]


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """All faces in ``rgb`` (at most :data:`MAX_FACES`), largest first.

    Raises :class:`NoFaceFound` when there is none, so callers never get an empty list.
    """
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise NoFaceFound(f"the picture is only {w}x{h} pixels")
    faces = [Face(pts.astype(np.float32)) for pts in _run_mesh(rgb)]
    if not faces:
        raise NoFaceFound()
    return sorted(faces, key=lambda f: f.area, reverse=True)
