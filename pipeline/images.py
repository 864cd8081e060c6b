"""One upload decoded, its faces found (largest first), and the picture that numbers them."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detectors.faces import Face, detect_faces, load_image
from detectors.faces.io import ImageSource


@dataclass
class PreparedImage:
    """A decoded upload and the faces found in it (largest first)."""

    rgb: np.ndarray
    faces: list[Face]
    key: str = ""  # what it was decoded from (upload path), to reuse it on a second click

    def face(self, index: int | None) -> tuple[int, Face]:
        i = min(max(int(index or 0), 0), len(self.faces) - 1)
        return i, self.faces[i]


def prepare(source: ImageSource, key: str = "") -> PreparedImage:
    """Decode any upload and find its faces; raises the face pipeline's typed errors."""
    rgb = load_image(source)
    return PreparedImage(rgb, detect_faces(rgb), key)


def faces_picture(prepared: PreparedImage, selected: int = 0) -> np.ndarray:
    """The photo with each face's landmarks and a numbered box; the selected face drawn boldly."""
    img = prepared.rgb.copy()
    h, w = img.shape[:2]
    unit = max(1, round(max(h, w) / 400))
    for i, face in enumerate(prepared.faces):
        x0, y0, x1, y1 = (int(round(v)) for v in face.bbox)
        chosen = i == selected
        colour = (253, 231, 37) if chosen else (72, 170, 222)  # viridis yellow / light blue
        for x, y in face.landmarks[::2]:
            cv2.circle(img, (int(x), int(y)), unit, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 3 * unit + 2, cv2.LINE_AA)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 3 * unit if chosen else unit + 1, cv2.LINE_AA)
        label = f"{i + 1}"
        scale = 0.6 * unit + 0.2
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 2 * unit)
        ty = max(th + 4, y0 - 4)
        cv2.rectangle(img, (x0, ty - th - 4), (x0 + tw + 6, ty + 4), colour, -1)
        cv2.putText(img, label, (x0 + 3, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2 * unit, cv2.LINE_AA)
    return img
