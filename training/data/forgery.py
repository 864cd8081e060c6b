"""The forgery generators: one aligned real face + its landmarks in, a forgery out.

Kinds (codes in :mod:`training.data.kinds`):

- ``sbi``: SBI-style self-blend. A colour/frequency/scale-jittered copy of the face is blended
  back through a randomly deformed, eroded/dilated and blurred landmark-hull mask with a random
  ratio. ``mask`` is the blend weight map.
- ``donor``: Face X-ray-style blend. A donor face with similar landmarks is aligned on the five
  keypoints, colour-transferred and blended through a deformed hull; ``mask`` is Face X-ray's
  boundary ``B = 4 M (1 - M)`` of the blend weight ``M`` (kept in ``Forgery.weight``).
- ``region``: VLFFD's PFIG. 1-3 facial parts (or the whole face) are forged, each by self-blend
  or donor blend, and a sentence names them; ``meta["regions"]`` matches the sentence.
- ``ae``: the autoencoder deepfake. The crop is decoded by one of the autoencoder's decoders
  and the decoded face is colour-matched and blended into the target through a deformed hull.
- ``real``: the face unchanged (zero mask), for uniform handling.

Every generator is a pure function of its inputs and ``rng``: the same seed gives the same forgery.
Pixels where ``weight == 0`` are returned unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from detectors.faces import CropPolicy, align_face

from . import blend, kinds
from .sentences import sentence_for

#: Facial parts region forgeries choose from by default (``face`` = whole face alone).
DEFAULT_REGIONS = tuple(kinds.SENTENCE_REGIONS)
Donor = tuple[np.ndarray, np.ndarray]  # (aligned crop uint8, landmarks in crop pixels)


@dataclass
class Forgery:
    """A made forgery. ``mask``: ground truth for localisation (float32 (H, W) in [0, 1]);
    ``weight``: where and how strongly pixels were replaced; ``meta``: kind, regions, sentence, ..."""

    image: np.ndarray
    mask: np.ndarray
    label: int
    meta: dict[str, Any] = field(default_factory=dict)
    weight: np.ndarray | None = None


def _check(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a square (S, S, 3) uint8 aligned crop, got {image.shape} {image.dtype}")
    return image, np.asarray(landmarks, np.float32), image.shape[0]


def _jittered_source(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                     box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """SBI's source augmentation: colour, then frequency, then a small scale/shift.

    With ``box`` only that part is computed (the rest is a copy of ``image``): blends read the
    source only where their weight is non-zero, and that is most of the cost saved.
    """
    if box is not None:
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return image
        shifted = landmarks - np.array([x0, y0], np.float32)
        part = _jittered_source(np.ascontiguousarray(image[y0:y1, x0:x1]), shifted, rng)
        out = image.copy()
        out[y0:y1, x0:x1] = part
        return out
    src = blend.color_jitter(image, rng)
    if rng.random() < 0.7:
        src = blend.frequency_jitter(src, rng)
    if rng.random() < 0.7:
        src = blend.scale_jitter(src, rng, landmarks)
    return src


def _finish(kind: int, image: np.ndarray, mask: np.ndarray, weight: np.ndarray, regions: Sequence[str],
            **meta: Any) -> Forgery:
    regions = list(regions)
    info = {"kind": kinds.KIND_NAMES[kind], "regions": regions, "sentence": sentence_for(kind, regions), **meta}
    return Forgery(image, np.clip(mask, 0, 1).astype(np.float32), 0 if kind == kinds.REAL else 1, info,
                   weight.astype(np.float32))


def real(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, **_: Any) -> Forgery:
    image, _, s = _check(image, landmarks)
    zeros = np.zeros((s, s), np.float32)
    return _finish(kinds.REAL, image.copy(), zeros, zeros, [])


def sbi(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, **_: Any) -> Forgery:
    image, pts, s = _check(image, landmarks)
    m = blend.deform_mask(blend.hull_mask(pts, s, rng), rng, s, blend.eye_distance(pts))
    source = _jittered_source(image, pts, rng, blend.support_box(m, pad=4))
    ratio = blend.blend_ratio(rng)
    weight = m * ratio
    out = blend.alpha_blend(image, source, weight)
    return _finish(kinds.SBI, out, weight, weight, ["face"], blend_ratio=ratio)


def self_donor(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[Donor, str]:
    """A donor made from the face itself when no pool is at hand (the app's forgery lab):
    its mirror image (faces are not symmetric, so identity cues disagree), colour-shifted."""
    s = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    pts = landmarks.copy()
    pts[:, 0] = (s - 1) - pts[:, 0]
    return (blend.color_jitter(flipped, rng, strength=0.5), pts), "self-derived (mirrored copy of the same face)"


def _pick_donor(image: np.ndarray, pts: np.ndarray, rng: np.random.Generator,
                donors: Sequence[Donor] | None) -> tuple[Donor, str]:
    if donors:
        return donors[int(rng.integers(len(donors)))], "pool neighbour"
    return self_donor(image, pts, rng)


def donor(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
          donors: Sequence[Donor] | None = None, **_: Any) -> Forgery:
    image, pts, s = _check(image, landmarks)
    (d_img, d_pts), origin = _pick_donor(image, pts, rng, donors)
    warped, _ = blend.align_donor(d_img, d_pts, pts, s)
    m = blend.deform_mask(blend.hull_mask(pts, s, rng), rng, s, blend.eye_distance(pts))
    source = blend.color_transfer(warped, image, m)
    ratio = blend.blend_ratio(rng)
    weight = m * ratio
    out = blend.alpha_blend(image, source, weight)
    return _finish(kinds.DONOR, out, blend.xray_boundary(weight), weight, ["face"], donor=origin, blend_ratio=ratio)


def region(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, regions: Sequence[str] | None = None,
           donors: Sequence[Donor] | None = None, **_: Any) -> Forgery:
    """Forge 1-3 parts chosen from ``regions`` (``face`` alone means the whole face)."""
    image, pts, s = _check(image, landmarks)
    allowed = [r for r in (regions or DEFAULT_REGIONS) if r in kinds.SENTENCE_REGIONS]
    if not allowed:
        raise ValueError(f"no usable region in {regions!r}; choose from {kinds.SENTENCE_REGIONS}")
    parts = [r for r in allowed if r != "face"]
    if "face" in allowed and (not parts or rng.random() < 0.1):
        chosen = ["face"]
    else:
        k = int(rng.choice([1, 1, 2, 2, 3])) if len(parts) > 1 else 1
        chosen = sorted(rng.choice(parts, size=min(k, len(parts)), replace=False).tolist(),
                        key=kinds.SENTENCE_REGIONS.index)
    out = image
    total = np.zeros((s, s), np.float32)
    methods: dict[str, str] = {}
    jittered = donor_face = None  # made once per forgery, shared by its parts
    for r in chosen:
        if r == "face":
            m = blend.deform_mask(blend.hull_mask(pts, s, rng), rng, s, blend.eye_distance(pts))
        else:
            m = blend.part_mask(pts, r, s, rng)
        if rng.random() < 0.5:
            if jittered is None:
                jittered = _jittered_source(image, pts, rng)
            source, how = jittered, "self-blend"
        else:
            if donor_face is None:
                (d_img, d_pts), origin = _pick_donor(image, pts, rng, donors)
                donor_face = blend.align_donor(d_img, d_pts, pts, s)[0]
            source, how = blend.color_transfer(donor_face, image, m), f"donor ({origin})"
        w = m * float(rng.uniform(0.6, 1.0))
        out = blend.alpha_blend(out, source, w)
        total = np.maximum(total, w)
        methods[r] = how
    return _finish(kinds.REGION, out, total, total, chosen, methods=methods)


def autoencode(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, model=None,
               ae_weights: str | None = None) -> tuple[np.ndarray, str]:
    """The aligned crop as a random decoder of the autoencoder re-synthesises it: the face is
    re-framed to the autoencoder's crop, decoded and warped back. Returns ``(decoded, decoder)``."""
    import torch

    from .autoencoder import get_autoencoder

    image, pts, s = _check(image, landmarks)
    model = model or get_autoencoder(ae_weights)
    size = model.config.size
    framed = align_face(image, pts, CropPolicy(size=size, margin=model.config.crop_margin, align=True))
    dec = model.config.decoders[int(rng.integers(len(model.config.decoders)))]
    with torch.no_grad():
        x = torch.from_numpy(framed.image).permute(2, 0, 1)[None].float() / 255.0
        y = model(x, dec)[0].permute(1, 2, 0).numpy()
    decoded = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)
    back = cv2.invertAffineTransform(framed.matrix)
    decoded = cv2.warpAffine(decoded, back, (s, s), flags=cv2.INTER_CUBIC if s > size else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
    return decoded, dec


def autoencoder(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                ae_weights: str | None = None, model=None, sharpen_p: float = 0.5, whole_frame_p: float = 0.0,
                **_: Any) -> Forgery:
    """Decode the face with a random decoder of the autoencoder and blend it into the target.

    With probability ``sharpen_p`` the decoded face is unsharp-masked first: decoders of a small
    autoencoder are soft, and a detector should learn their up-sampling traces, not their blur.
    With probability ``whole_frame_p`` (default 0) the decoded frame replaces the whole image,
    background and hair included, with no blending: an entirely synthesised picture, the way a
    face generator makes one, rather than a face swapped into a real photo.
    """
    image, pts, s = _check(image, landmarks)
    decoded, dec = autoencode(image, pts, rng, model=model, ae_weights=ae_weights)
    sharpen = float(rng.uniform(0.5, 2.0)) if rng.random() < sharpen_p else 0.0
    if sharpen:  # so that "smoother than real" is not what gives an autoencoder face away
        soft = cv2.GaussianBlur(decoded, (0, 0), float(rng.uniform(0.8, 1.5)))
        decoded = cv2.addWeighted(decoded, 1 + sharpen, soft, -sharpen, 0)
    if whole_frame_p > 0 and rng.random() < whole_frame_p:  # no draw at 0: earlier streams stay as they were
        everything = np.ones((s, s), np.float32)
        return _finish(kinds.DEEPFAKE, decoded, everything, everything, ["face"], decoder=dec, blend_ratio=1.0,
                       sharpened=round(sharpen, 2), whole_frame=True)
    m = blend.deform_mask(blend.hull_mask(pts, s, rng), rng, s, blend.eye_distance(pts))
    source = blend.color_transfer(decoded, image, m)
    ratio = float(rng.choice([0.75, 1.0, 1.0, 1.0]))
    weight = m * ratio
    out = blend.alpha_blend(image, source, weight)
    return _finish(kinds.DEEPFAKE, out, weight, weight, ["face"], decoder=dec, blend_ratio=ratio,
                   sharpened=round(sharpen, 2))


GENERATORS = {"real": real, "sbi": sbi, "donor": donor, "region": region, "ae": autoencoder}


def make_forgery(kind: str, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                 regions: list[str] | None = None, donors: Sequence[Donor] | None = None, **options: Any) -> Forgery:
    """Make one forgery of ``kind`` (real|sbi|donor|region|ae) from an aligned crop.

    ``landmarks``: (478, 2) in crop pixels (``AlignedFace.landmarks``); ``regions``: parts a
    region forgery may touch; ``donors``: ``[(crop, landmarks), ...]`` of other faces aligned
    with the same policy (a mirrored copy of the face is used when none are given, and
    ``meta["donor"]`` says so); ``options``: ``ae_weights`` (folder) or ``model`` for ``ae``.
    """
    if kind not in GENERATORS:
        raise KeyError(f"unknown forgery kind {kind!r}; choose from {', '.join(GENERATORS)}")
    return GENERATORS[kind](image, landmarks, rng, regions=regions, donors=donors, **options)
