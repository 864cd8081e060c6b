"""The forgery lab: forge chosen parts of one face in a whole photo, with the ground truth there.

A workshop participant ticks facial regions and a method. The face is aligned as the training
data are (256 px, margin 1.3), forged with the project's own generators, and pasted back into
the photo, so every detector then crops it by its own policy as it would any upload.

- Whole face (``face`` ticked, or nothing): :func:`training.data.forgery.make_forgery` of the
  method's kind, exactly as in training.
- Parts (eyes, nose, mouth, ...): the method's source face (jittered self copy, mirrored donor,
  or the autoencoder's decoding) is blended through those parts' feathered masks, which is how
  the region forgeries of :mod:`training.data.forgery` forge a part.

The ground truth is the blend weight (where pixels were replaced, scaled to a peak of 1),
which for the donor blend is the replaced region rather than Face X-ray's boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from detectors.faces import CropPolicy, Face, align_face

from .data import blend, kinds
from .data.forgery import make_forgery, self_donor

LAB_POLICY = CropPolicy(size=256, margin=1.3, align=True)
#: Method names shown to participants -> forgery kinds.
METHODS = {"self-blend": "sbi", "donor blend": "donor", "autoencoder deepfake": "ae"}
METHOD_NOTES = {
    "self-blend": "a colour-, sharpness- and scale-jittered copy of the same face, blended back in (SBI)",
    "donor blend": "a mirrored, colour-shifted copy of the face as donor, aligned and colour-matched "
                   "(Face X-ray style)",
    "autoencoder deepfake": "the face re-synthesised by the project's autoencoder and blended in "
                            "(generative up-sampling traces)",
}
#: Parts a participant can tick (the person's left and right).
LAB_REGIONS = tuple(kinds.SENTENCE_REGIONS)


class LabError(ValueError):
    """A lab request that cannot be made (unknown method, missing autoencoder weights)."""


@dataclass
class LabForgery:
    image: np.ndarray  # the whole photo with the forged face
    truth: np.ndarray  # (H, W) float32 in [0, 1]: where pixels were replaced
    original: np.ndarray
    method: str
    regions: list[str]
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


def autoencoder_available() -> bool:
    from .data.autoencoder import DEFAULT_DIR

    return (DEFAULT_DIR / "model.safetensors").is_file()


def make_lab_forgery(rgb: np.ndarray, face: Face, method: str, regions: Sequence[str] = (),
                     seed: int = 0) -> LabForgery:
    """Forge ``regions`` of ``face`` in ``rgb`` with ``method`` (a key of :data:`METHODS`)."""
    if method not in METHODS:
        raise LabError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    kind = METHODS[method]
    if kind == "ae" and not autoencoder_available():
        raise LabError("The autoencoder deepfake needs the autoencoder weights (assets/forgery/autoencoder), "
                       "which this build does not ship yet. Try the self-blend or donor blend.")
    parts = [r for r in regions if r in LAB_REGIONS and r != "face"]
    whole = not parts or "face" in regions
    rng = np.random.default_rng(seed)
    aligned = align_face(rgb, face, LAB_POLICY)
    crop, pts = aligned.image, aligned.landmarks
    if whole:
        forgery = make_forgery(kind, crop, pts, rng)
        weight = forgery.weight if forgery.weight is not None else forgery.mask
        forged, meta = forgery.image, forgery.meta
        chosen = ["face"]
    else:
        chosen = sorted(set(parts), key=LAB_REGIONS.index)
        weight = np.zeros(crop.shape[:2], np.float32)
        for r in chosen:
            weight = np.maximum(weight, blend.part_mask(pts, r, crop.shape[0], rng))
        source = _source(kind, crop, pts, rng, weight)
        forged = blend.alpha_blend(crop, source, weight)
        meta = {"kind": kinds.KIND_NAMES[kinds.KIND_CODES[kind]], "regions": chosen}
    image, truth = _paste(rgb, forged, weight, aligned.matrix)
    where = "the whole face" if whole else ", ".join(r.replace("_", " ") for r in chosen)
    description = f"{method.capitalize()} of {where}: {METHOD_NOTES[method]}."
    return LabForgery(image, truth, rgb, method, chosen, description, dict(meta))


def _source(kind: str, crop: np.ndarray, pts: np.ndarray, rng: np.random.Generator, weight: np.ndarray) -> np.ndarray:
    """The face whose pixels replace the chosen parts."""
    if kind == "sbi":
        src = blend.color_jitter(crop, rng)
        src = blend.frequency_jitter(src, rng)
        return blend.scale_jitter(src, rng, pts)
    if kind == "donor":
        (d_img, d_pts), _ = self_donor(crop, pts, rng)
        return blend.color_transfer(blend.align_donor(d_img, d_pts, pts, crop.shape[0])[0], crop, weight)
    return blend.color_transfer(_decoded(crop, rng), crop, weight)


def _decoded(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop as one of the autoencoder's decoders re-synthesises it (on the app's compute
    thread, like every model call of the app)."""
    from detectors import compute_thread

    return compute_thread.run(_autoencoder_pass, crop, rng)


def _autoencoder_pass(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import torch

    from .data.autoencoder import get_autoencoder

    model = get_autoencoder()
    size, side = model.config.size, crop.shape[0]
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    decoder = model.config.decoders[int(rng.integers(len(model.config.decoders)))]
    with torch.no_grad():
        y = model(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0, decoder)[0]
    out = (y.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return cv2.resize(out, (side, side), interpolation=cv2.INTER_CUBIC)


def _paste(rgb: np.ndarray, forged: np.ndarray, weight: np.ndarray,
           matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put the forged crop back into the photo; pixels outside the blend stay exactly equal."""
    h, w = rgb.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    back = cv2.warpAffine(forged, inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight_full = cv2.warpAffine(weight.astype(np.float32), inverse, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    weight_full = np.clip(weight_full, 0, 1)
    peak = float(weight_full.max())
    truth = weight_full / peak if peak > 0 else weight_full
    # The forged crop already holds the soft blend; paste it wherever anything was replaced.
    paste = np.clip(weight_full * 20.0, 0.0, 1.0)
    return blend.alpha_blend(rgb, back, paste), truth.astype(np.float32)
