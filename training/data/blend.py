"""Building blocks of the blend forgeries: hull masks, their random deformation, colour jitter
and transfer, and alpha blending that leaves pixels outside the mask untouched.

Everything works on uint8 RGB crops and float32 masks in [0, 1]; masks are deformed at a
quarter of the crop size and upsampled, which keeps a 256 px forgery at a few milliseconds.
"""
from __future__ import annotations

import cv2
import numpy as np

from detectors.faces import mesh_indices as idx
from detectors.faces import region_mask
from detectors.faces.align import five_points, similarity_transform

_INNER = idx.LEFT_EYE + idx.RIGHT_EYE + idx.LEFT_BROW + idx.RIGHT_BROW + idx.NOSE + idx.LIPS


def eye_distance(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[idx.LEFT_IRIS_CENTER] - landmarks[idx.RIGHT_IRIS_CENTER])) + 1e-6


def hull_mask(landmarks: np.ndarray, size: int, rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    """A hard face-hull mask at ``size // scale``: the face oval (forehead included, as the
    81-point dlib hull of SBI) or the inner-face hull (eyes, brows, nose, mouth), chosen at random."""
    small = max(8, size // scale)
    pts = landmarks * (small / size)
    if rng.random() < 0.5:
        poly = cv2.convexHull(pts[list(idx.FACE_OVAL)].astype(np.float32))
    else:
        inner = pts[list(_INNER)]
        centre = inner.mean(0)
        poly = cv2.convexHull(((inner - centre) * rng.uniform(1.05, 1.3) + centre).astype(np.float32))
    mask = np.zeros((small, small), np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly.reshape(-1, 2) * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def deform_mask(mask: np.ndarray, rng: np.random.Generator, size: int, eye_dist: float) -> np.ndarray:
    """Randomly deform (elastic + affine), erode or dilate and blur a low-res hard mask, then
    upsample to ``size``. Returns a soft float32 mask in [0, 1]."""
    h, w = mask.shape
    ed = eye_dist * w / size  # eye distance at mask scale
    # Elastic: a coarse random displacement field, smoothly upsampled.
    grid = rng.normal(0.0, 0.06 * ed, size=(2, 4, 4)).astype(np.float32)
    dx = cv2.resize(grid[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(grid[1], (w, h), interpolation=cv2.INTER_CUBIC)
    # Affine: small scale and shift about the mask centre.
    ys, xs = np.nonzero(mask > 0.5)
    cx, cy = (xs.mean(), ys.mean()) if len(xs) else (w / 2, h / 2)
    s = rng.uniform(0.95, 1.05)
    tx, ty = rng.uniform(-0.04, 0.04, size=2) * ed
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = (gx - cx - tx) / s + cx + dx
    map_y = (gy - cy - ty) / s + cy + dy
    out = cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # Erode or dilate by up to ~10% of the eye distance.
    k = int(round(rng.uniform(0.0, 0.12) * ed))
    if k >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        out = cv2.erode(out, kernel) if rng.random() < 0.5 else cv2.dilate(out, kernel)
    # Blur at the low resolution (16x cheaper), then upsample smoothly.
    sigma = rng.uniform(0.03, 0.15) * ed
    out = cv2.GaussianBlur(out, (0, 0), sigmaX=max(0.4, sigma))
    out = cv2.resize(out, (size, size), interpolation=cv2.INTER_CUBIC)
    # A second, sharper pass keeps some masks with a crisp core and a soft rim (as SBI does).
    if rng.random() < 0.5:
        out = np.clip(out * rng.uniform(1.0, 1.6), 0, 1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def blend_ratio(rng: np.random.Generator) -> float:
    """SBI's random blend ratio: full replacement half of the time, partial otherwise."""
    return float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))


def support_box(weight: np.ndarray, pad: int = 0) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` bounding the pixels where ``weight > 0`` (empty box when none)."""
    x, y, w, h = cv2.boundingRect((weight > 0).astype(np.uint8))
    if w == 0:
        return 0, 0, 0, 0
    H, W = weight.shape
    return max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)


def alpha_blend(target: np.ndarray, source: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight * source + (1 - weight) * target`` in uint8; pixels with weight 0 stay exactly equal."""
    out = target.copy()
    x0, y0, x1, y1 = support_box(weight)
    if x1 <= x0:
        return out
    t = target[y0:y1, x0:x1].astype(np.float32)
    w = weight[y0:y1, x0:x1, None]
    blended = t + w * (source[y0:y1, x0:x1].astype(np.float32) - t)
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Random RGB shift, brightness/contrast and hue/saturation shift (SBI's source augmentation).

    The per-channel affine part runs as a lookup table, which keeps it well under a millisecond.
    """
    shift = rng.uniform(-15, 15, size=3) * strength
    contrast = 1.0 + rng.uniform(-0.15, 0.15) * strength
    bright = rng.uniform(-15, 15) * strength
    mean = float(image.mean())
    levels = np.arange(256, dtype=np.float32)[:, None]
    lut = np.clip((levels + shift - mean) * contrast + mean + bright + 0.5, 0, 255).astype(np.uint8)
    img = cv2.LUT(image, lut.reshape(1, 256, 3))
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hue = np.uint8((np.arange(256) + int(rng.integers(-4, 5) * strength)) % 180)
        sat = np.clip(np.arange(256) + int(rng.integers(-20, 21) * strength), 0, 255).astype(np.uint8)
        hsv_lut = np.stack([hue, sat, np.arange(256, dtype=np.uint8)], -1).reshape(1, 256, 3)
        img = cv2.cvtColor(cv2.LUT(hsv, hsv_lut), cv2.COLOR_HSV2RGB)
    return img


def frequency_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down- then up-sample (loses high frequencies) or sharpen (adds them)."""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        f = rng.uniform(0.35, 0.8)
        small = cv2.resize(image, (max(4, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    blur = cv2.GaussianBlur(image, (0, 0), 1.0)
    amount = rng.uniform(0.3, 1.0)
    return cv2.addWeighted(image, 1 + amount, blur, -amount, 0)


def scale_jitter(image: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray) -> np.ndarray:
    """A slightly scaled and shifted copy (the source face no longer lines up with the target)."""
    h, w = image.shape[:2]
    ed = eye_distance(landmarks)
    c = landmarks[list(idx.FACE_OVAL)].mean(0)
    s = rng.uniform(0.95, 1.05)
    t = rng.uniform(-0.03, 0.03, size=2) * ed
    m = np.array([[s, 0, (1 - s) * c[0] + t[0]], [0, s, (1 - s) * c[1] + t[1]]], np.float32)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def color_transfer(source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer in Lab: match ``source``'s mean/std to ``target`` inside ``weight``.

    Only the box around the mask is converted (the rest of ``source`` is never blended in).
    """
    x0, y0, x1, y1 = support_box(weight)
    sel = weight[y0:y1, x0:x1] > 0.1
    if x1 <= x0 or sel.sum() < 16:
        return source
    src = cv2.cvtColor(source[y0:y1, x0:x1], cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(target[y0:y1, x0:x1], cv2.COLOR_RGB2LAB)
    s_mean, s_std = cv2.meanStdDev(src, mask=sel.astype(np.uint8))
    t_mean, t_std = cv2.meanStdDev(tgt, mask=sel.astype(np.uint8))
    gain = np.clip((t_std + 1e-3) / (s_std + 1e-3), 0.5, 2.0).reshape(3)
    out_box = (src - s_mean.reshape(3)) * gain + t_mean.reshape(3)
    out = source.copy()
    out[y0:y1, x0:x1] = cv2.cvtColor(np.clip(out_box + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return out


def align_donor(donor: np.ndarray, donor_landmarks: np.ndarray, target_landmarks: np.ndarray,
                size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp the donor crop so its five keypoints sit on the target's; returns image and landmarks.

    :func:`five_points` orders eyes and mouth corners by x, so a mirrored donor aligns too.
    """
    m = similarity_transform(five_points(donor_landmarks), five_points(target_landmarks))
    warped = cv2.warpAffine(donor, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pts = (donor_landmarks @ m[:, :2].T + m[:, 2]).astype(np.float32)
    return warped, pts


def part_mask(landmarks: np.ndarray, region: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A feathered, slightly dilated mask of one facial part for region forgeries."""
    hard = region_mask(landmarks, region, (size, size))
    ed = eye_distance(landmarks)
    k = int(round(rng.uniform(0.0, 0.08) * ed))
    if k >= 1:
        hard = cv2.dilate(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = max(0.5, rng.uniform(0.03, 0.1) * ed)
    return np.clip(cv2.GaussianBlur(hard, (0, 0), sigmaX=sigma), 0, 1).astype(np.float32)


def xray_boundary(weight: np.ndarray) -> np.ndarray:
    """Face X-ray's blending boundary ``B = 4 * M * (1 - M)`` of a soft blend mask ``M``."""
    return (4.0 * weight * (1.0 - weight)).astype(np.float32)
