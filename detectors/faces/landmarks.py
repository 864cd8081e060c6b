"""Find faces and their 478 landmarks with mediapipe's face mesh (static mode, refined iris)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

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

    def flipped(self, width: int) -> Face:
        """The same face in the horizontally mirrored image (landmark indices unchanged)."""
        pts = self.landmarks.copy()
        pts[:, 0] = (width - 1) - pts[:, 0]
        return Face(pts)


class _Mediapipe:
    """mediapipe's face mesh and full-range face detector, created on first use and guarded
    by a lock (their graphs are not thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mesh: Any = None  # mediapipe's solutions (untyped)
        self._detector: Any = None

    def _build(self) -> None:
        import mediapipe as mp  # heavy import, deferred to first use

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=MAX_FACES, refine_landmarks=True, min_detection_confidence=0.5)
        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def mesh(self, rgb: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            if self._mesh is None:
                self._build()
            result = self._mesh.process(np.ascontiguousarray(rgb))
        h, w = rgb.shape[:2]
        return [np.array([(p.x * w, p.y * h) for p in lms.landmark], dtype=np.float32)
                for lms in result.multi_face_landmarks or []]

    def boxes(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes ``(x0, y0, x1, y1)`` in pixels from the full-range (up to ~5 m) detector."""
        with self._lock:
            if self._detector is None:
                self._build()
            result = self._detector.process(np.ascontiguousarray(rgb))
        h, w = rgb.shape[:2]
        out = []
        for det in result.detections or []:
            box = det.location_data.relative_bounding_box
            out.append((box.xmin * w, box.ymin * h, (box.xmin + box.width) * w, (box.ymin + box.height) * h))
        return out


_MP = _Mediapipe()


def _upscaled(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    scale = max(1.0, DETECTION_MIN_SIDE / min(h, w))
    if scale == 1.0:
        return rgb, 1.0
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC), scale


def _mesh_whole(rgb: np.ndarray) -> list[np.ndarray]:
    work, scale = _upscaled(rgb)
    found = _MP.mesh(work)
    if not found:
        # Faces that fill the whole frame (tight crops) are found once the frame has room around them.
        pad = max(work.shape[:2]) // 4
        padded = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        found = [pts - pad for pts in _MP.mesh(padded)]
    return [pts / scale for pts in found]


def _mesh_in_box(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """Landmarks of the face in ``box``, meshed on a crop around it (for faces small in frame)."""
    x0, y0, x1, y1 = box
    side = 2.2 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = max(1, int(round(side)))
    crop = cv2.copyMakeBorder(rgb, size, size, size, size, cv2.BORDER_REPLICATE)[
        top + size: top + 2 * size, left + size: left + 2 * size]
    work, scale = _upscaled(crop)
    found = _MP.mesh(work)
    if not found:
        return None
    centre = np.array([work.shape[1] / 2, work.shape[0] / 2])
    best = min(found, key=lambda pts: np.linalg.norm(pts.mean(0) - centre))
    return best / scale + np.array([left, top], np.float32)


def _covered(box: tuple[float, float, float, float], faces: list[np.ndarray]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for pts in faces:
        (fx0, fy0), (fx1, fy1) = pts.min(0), pts.max(0)
        if fx0 <= cx <= fx1 and fy0 <= cy <= fy1:
            return True
    return False


def _run_mesh(rgb: np.ndarray) -> list[np.ndarray]:
    faces = _mesh_whole(rgb)
    if len(faces) < MAX_FACES:
        for box in _MP.boxes(rgb):
            if not _covered(box, faces):
                pts = _mesh_in_box(rgb, box)
                if pts is not None and not _covered(tuple(pts.min(0)) + tuple(pts.max(0)), faces):
                    faces.append(pts)
    return faces[:MAX_FACES]


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
