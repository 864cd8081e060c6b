"""Follow faces through a clip's sampled frames: mediapipe per frame, boxes linked by overlap.

Sampled frames are far apart (16 frames over 10 s is one every 0.6 s), so a face is linked to
the track whose most recent box overlaps it most (IoU at least :data:`MIN_IOU`), falling back
to the nearest box centre within a face width for faces that moved more than their size
allows to overlap. Tracks are ordered by how much face they hold over the clip (the sum of
their box areas), so the first is the subject: large and present in most frames.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import FaceError
from .landmarks import Face, detect_faces

#: Boxes in two frames overlapping at least this much (intersection over union) are one face.
MIN_IOU = 0.3
#: Without overlap, a box whose centre is within this many face widths of a track's is linked.
MAX_CENTRE_SHIFT = 1.0

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One person's face across the sampled frames: frame index -> the face found there."""

    faces: dict[int, Face] = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted(self.faces)

    @property
    def last_box(self) -> Box:
        return self.faces[max(self.faces)].bbox

    @property
    def weight(self) -> float:
        """The sum of its box areas: large faces present in many frames weigh most."""
        return float(sum(f.area for f in self.faces.values()))

    def box(self) -> Box:
        """The mean box over its frames (for pictures and the JSON)."""
        boxes = np.array([f.bbox for f in self.faces.values()], dtype=np.float64)
        return tuple(float(v) for v in boxes.mean(0))  # type: ignore[return-value]


def faces_per_frame(frames: Sequence[np.ndarray], detect: Callable[[np.ndarray], list[Face]] = detect_faces,
                    progress: Callable[[float, str], None] | None = None) -> list[list[Face]]:
    """Every face in every frame (an empty list where none is found)."""
    found: list[list[Face]] = []
    for i, rgb in enumerate(frames):
        try:
            found.append(list(detect(rgb)))
        except FaceError:
            found.append([])
        if progress is not None:
            progress((i + 1) / len(frames), "Finding faces")
    return found


def link_tracks(per_frame: Sequence[Sequence[Face]], min_iou: float = MIN_IOU) -> list[Track]:
    """Link faces frame to frame into tracks, heaviest (largest and longest) first."""
    tracks: list[Track] = []
    for index, faces in enumerate(per_frame):
        taken: set[int] = set()
        for face in sorted(faces, key=lambda f: f.area, reverse=True):
            best = _best_track(face, tracks, taken, min_iou)
            if best is None:
                tracks.append(Track({index: face}))
                taken.add(len(tracks) - 1)
            else:
                tracks[best].faces[index] = face
                taken.add(best)
    return sorted(tracks, key=lambda t: t.weight, reverse=True)


def _best_track(face: Face, tracks: list[Track], taken: set[int], min_iou: float) -> int | None:
    box = face.bbox
    scored = [(iou(box, t.last_box), i) for i, t in enumerate(tracks) if i not in taken]
    overlapping = [s for s in scored if s[0] >= min_iou]
    if overlapping:
        return max(overlapping)[1]
    width = max(box[2] - box[0], box[3] - box[1])
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    near = []
    for _, i in scored:
        b = tracks[i].last_box
        shift = float(np.linalg.norm(centre - np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])))
        size = max(b[2] - b[0], b[3] - b[1])
        if shift <= MAX_CENTRE_SHIFT * max(width, size) and 0.5 <= width / max(size, 1e-6) <= 2.0:
            near.append((shift, i))
    return min(near)[1] if near else None


def track_faces(frames: Sequence[np.ndarray], detect: Callable[[np.ndarray], list[Face]] = detect_faces,
                progress: Callable[[float, str], None] | None = None) -> tuple[list[Track], list[list[Face]]]:
    """Faces found per frame and linked into tracks (heaviest first)."""
    per_frame = faces_per_frame(frames, detect, progress)
    return link_tracks(per_frame), per_frame
