"""Facial region masks from the 478 landmarks, hard or feathered, at any size.

Used by the forgery engine (where to blend), by region-level explanations (which part a
detector blames) and by VLFFD's region labels. Region names speak of the *person's* left
and right; :data:`FLIP_PAIRS` says which names a horizontal flip swaps.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import mesh_indices as idx

REGIONS = (
    "face", "inner_face", "left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth",
    "left_cheek", "right_cheek", "forehead", "jaw",
)
FLIP_PAIRS = (("left_eye", "right_eye"), ("left_brow", "right_brow"), ("left_cheek", "right_cheek"))
_INNER = idx.LEFT_EYE + idx.RIGHT_EYE + idx.LEFT_BROW + idx.RIGHT_BROW + idx.NOSE + idx.LIPS


def flipped_name(region: str) -> str:
    """The region a horizontal flip turns ``region`` into."""
    for a, b in FLIP_PAIRS:
        if region == a:
            return b
        if region == b:
            return a
    return region


class _FaceFrame:
    """Face-centred axes: ``u`` along the eye line (person's right to left), ``v`` down the face."""

    def __init__(self, pts: np.ndarray) -> None:
        right, left = pts[idx.RIGHT_IRIS_CENTER], pts[idx.LEFT_IRIS_CENTER]
        u = left - right
        self.eye_distance = float(np.linalg.norm(u)) + 1e-6
        self.u = u / self.eye_distance
        self.v = np.array([-self.u[1], self.u[0]])
        mouth = (pts[idx.MOUTH_LEFT_CORNER] + pts[idx.MOUTH_RIGHT_CORNER]) / 2
        self.centre = (right + left) / 2
        if np.dot(mouth - self.centre, self.v) < 0:  # mirrored or upside-down input
            self.v = -self.v
        self.pts = pts

    def proj(self, ids) -> tuple[np.ndarray, np.ndarray]:
        p = self.pts[list(ids)] - self.centre
        return p @ self.u, p @ self.v


def _scaled_hull(points: np.ndarray, scale: float) -> np.ndarray:
    centre = points.mean(0)
    return cv2.convexHull(((points - centre) * scale + centre).astype(np.float32))


def _region_polygons(pts: np.ndarray, region: str) -> tuple[list[np.ndarray], list[str]]:
    """Convex polygons whose union is ``region``, and regions to cut out of it afterwards."""
    f = _FaceFrame(pts)
    groups = {"left_eye": (idx.LEFT_EYE, 1.4), "right_eye": (idx.RIGHT_EYE, 1.4),
              "left_brow": (idx.LEFT_BROW, 1.3), "right_brow": (idx.RIGHT_BROW, 1.3),
              "nose": (idx.NOSE, 1.15), "mouth": (idx.LIPS, 1.25)}
    if region in groups:
        ids, scale = groups[region]
        return [_scaled_hull(pts[list(ids)], scale)], []
    if region == "face":
        return [cv2.convexHull(pts[list(idx.FACE_OVAL)])], []
    if region == "inner_face":
        return [_scaled_hull(pts[list(_INNER)], 1.1)], []
    oval = np.array(idx.FACE_OVAL)
    ou, ov = f.proj(oval)
    if region in ("left_cheek", "right_cheek"):
        side = 1 if region == "left_cheek" else -1
        eye = idx.LEFT_EYE if side == 1 else idx.RIGHT_EYE
        _, eye_v = f.proj(eye)
        _, mouth_v = f.proj(idx.LIPS)
        top, bottom = eye_v.max(), mouth_v.max()
        chosen = oval[(ou * side > 0) & (ov >= top) & (ov <= bottom)]
        inner = [idx.MOUTH_LEFT_CORNER if side == 1 else idx.MOUTH_RIGHT_CORNER]
        nose_u, _ = f.proj(idx.NOSE)
        inner.append(idx.NOSE[int(np.argmax(nose_u * side))])
        inner += list(np.array(eye)[np.argsort(-f.proj(eye)[1])[:4]])
        return [cv2.convexHull(pts[list(chosen) + inner])], ["nose", "mouth", "left_eye", "right_eye"]
    if region == "forehead":
        brows = idx.LEFT_BROW + idx.RIGHT_BROW
        _, brow_v = f.proj(brows)
        chosen = oval[ov < brow_v.min()]
        return [cv2.convexHull(pts[list(chosen) + list(brows)])], ["left_brow", "right_brow", "left_eye", "right_eye"]
    if region == "jaw":
        _, mouth_v = f.proj(idx.LIPS)
        order = [i for i in idx.FACE_OVAL if f.proj([i])[1][0] > mouth_v.min()]
        return [pts[order]], []  # drawn as a thick open polyline
    raise KeyError(f"unknown region {region!r}; choose from {', '.join(REGIONS)}")


def region_mask(landmarks: np.ndarray, region: str, size: tuple[int, int], soft: bool = False,
                feather: float = 0.08) -> np.ndarray:
    """A ``(H, W)`` float32 mask in [0, 1] of ``region`` for landmarks given in that frame.

    ``soft`` feathers the edge with a Gaussian whose sigma is ``feather`` times the distance
    between the eyes, so masks scale with the face, not with the image.
    """
    pts = np.asarray(landmarks, dtype=np.float32)
    h, w = size
    polys, cut = _region_polygons(pts, region)
    mask: np.ndarray = np.zeros((h, w), np.uint8)
    eye_distance = _FaceFrame(pts).eye_distance
    if region == "jaw":
        thickness = max(2, int(round(0.35 * eye_distance)))
        cv2.polylines(mask, [np.round(polys[0]).astype(np.int32)], False, (255,), thickness, cv2.LINE_AA)
        mask = np.minimum(mask, _fill(region_hull(pts), h, w, dilate=thickness // 2))
    else:
        for poly in polys:
            cv2.fillConvexPoly(mask, np.round(poly.reshape(-1, 2) * 4).astype(np.int32), (255,), cv2.LINE_AA, shift=2)
    for other in cut:
        mask[region_mask(pts, other, size) > 0.5] = 0
    out: np.ndarray = mask.astype(np.float32) / 255.0
    if soft:
        sigma = max(0.5, feather * eye_distance)
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.clip(out, 0.0, 1.0)


def region_hull(landmarks: np.ndarray) -> np.ndarray:
    return cv2.convexHull(np.asarray(landmarks, np.float32)[list(idx.FACE_OVAL)])


def _fill(poly: np.ndarray, h: int, w: int, dilate: int = 0) -> np.ndarray:
    mask: np.ndarray = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly.reshape(-1, 2)).astype(np.int32), (255,))
    if dilate > 0:
        mask = cv2.dilate(mask, np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8))
    return mask


def region_masks(landmarks: np.ndarray, size: tuple[int, int], regions=REGIONS, soft: bool = False) -> dict[str, np.ndarray]:
    """Masks of several regions at once, keyed by region name."""
    return {r: region_mask(landmarks, r, size, soft=soft) for r in regions}
