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

:func:`lab_maps` then scores each detector's maps against that truth in the detector's own crop
(:func:`score_map`: pixel AUC and best IoU, by :mod:`training.localization`'s convention,
the one ``evaluate`` reports). The scoring lives here, beside the forgeries it scores;
the app's request path already imports this module to make them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from detectors.faces import AlignedFace, CropPolicy, Face, align_face
from explain.render import resize_map

from . import localization
from .data import blend, kinds
from .data.forgery import make_forgery, self_donor

if TYPE_CHECKING:  # the pipeline's result type, for hints only: training does not import the pipeline
    from pipeline.results import DetectorResult

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


# ---- scoring: each detector's maps against the forged pixels ---------------------------------------
def mask_in_crop(mask: np.ndarray, aligned: AlignedFace) -> np.ndarray:
    """A full-image mask moved into a detector's crop with the crop's own matrix."""
    size = aligned.image.shape[1], aligned.image.shape[0]
    return cv2.warpAffine(np.asarray(mask, np.float32), aligned.matrix, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def score_map(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    """How well a map finds the forged pixels of one picture, by :mod:`training.localization`'s
    convention (the one ``evaluate`` reports): ``pixel_auc``, ``iou`` (best) with its
    ``iou_threshold``, and ``forged_share``. A map at another size is resized to the mask first."""
    heat = resize_map(heatmap, mask.shape[:2]) if heatmap.shape != mask.shape else np.asarray(heatmap, np.float32)
    iou, threshold = localization.best_iou([heat], [mask])
    return {"pixel_auc": localization.pixel_auc([heat], [mask]), "iou": iou, "iou_threshold": threshold,
            "forged_share": float(localization.forged(mask).mean())}


@dataclass
class LabMap:
    detector: str
    title: str
    heatmap: np.ndarray
    scores: dict[str, float | None]
    kind: str = ""


def lab_maps(result: DetectorResult, mask_full: np.ndarray) -> tuple[np.ndarray | None, list[LabMap]]:
    """The ground truth in this detector's crop and a score for each of its maps."""
    if not result.ok or result.aligned is None:
        return None, []
    truth = mask_in_crop(mask_full, result.aligned)
    maps = [LabMap(result.title, e.title, resize_map(e.heatmap, truth.shape), score_map(e.heatmap, truth), e.kind)
            for e in result.explanations if e.heatmap is not None]
    return truth, maps
