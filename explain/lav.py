"""Locate-and-Verify evidence: the patch location map, the patch-similarity grid, the SRM noise
residual the verify stream reads, and Grad-CAM on the verify stream."""
from __future__ import annotations

import numpy as np
import torch

from detectors.faces import AlignedFace
from detectors.patch_grid import patch_similarity_row  # the one implementation; re-exported for callers

from .base import Explanation
from .charts import map_panel
from .evidence import gradcam_explanation, verdict_words
from .render import heatmap_overlay, resize_map
from .scales import fixed, per_picture, scale_for, scaled_map_panel


def location_explanation(detector, aligned: AlignedFace, out: dict) -> Explanation:
    """The patch location map over the face, kept at the crop's size (a click on it picks a
    patch for the similarity grid), on the checkpoint's calibrated scale when it has one."""
    location = out["aux"]["location"][0].detach().float().cpu().numpy()  # (G, G) in [0, 1]
    g = location.shape[0]
    scale = scale_for(detector, "lav_location", location, fixed(0.0, 1.0, "patch probability"))
    heat = np.clip(resize_map(scale.apply(location), aligned.image.shape[:2]), 0.0, 1.0)
    share = float((location > 0.5).mean())
    verdict = verdict_words(detector, out)
    numbers = f"{share:.0%} of the patches are above one half; the highest is {location.max():.2f}."
    if verdict is not None and not verdict[0]:
        reading = (f"The detector {verdict[1]}, so no patch is called manipulated; the brightest patches are the "
                   f"ones it rates least like a real face's. {numbers}")
    elif verdict is not None:
        reading = f"The detector {verdict[1]}; bright patches are the ones it rates most likely forged. {numbers}"
    else:
        reading = f"Bright patches are rated more likely forged. {numbers}"
    caption = (f"Locate: the network splits the face into {g}x{g} patches and rates how likely each one was "
               f"manipulated. {reading} {scale.sentence()} (No colour bar on this one: it keeps the crop's "
               "size so that a click on it can pick a patch.)")
    return Explanation("lav_location", "Patch location map", heatmap_overlay(aligned.image, heat, alpha=0.5), caption,
                       heatmap=heat, data={"location": location, "grid_size": g, **scale.data()})


def similarity_explanation(out: dict, called_fake: bool | None = None) -> Explanation:
    aux = out["aux"]
    location = aux["location"][0].detach().float().cpu().numpy()
    embeddings = aux["patch_embeddings"][0].detach().float().cpu().numpy()  # (D, G, G)
    g = location.shape[0]
    peak = int(location.argmax())
    row, col = divmod(peak, g)
    grid = patch_similarity_row(embeddings, peak)
    picture = map_panel(grid, "Similarity to the highest-rated patch", "cosine similarity", vmin=-1, vmax=1,
                        marker=(row, col))
    which = "the network rates most likely forged" if called_fake else "the location map rates highest"
    caption = ("Patch similarity: each square shows how much a patch's learned features resemble those of the "
               f"patch {which} (outlined, row {row + 1}, column {col + 1}). Training makes forged patches alike "
               "and unlike real ones, so on a forgery a bright cluster would mark one manipulated area"
               + ("; this face is called real, so read the grid as texture likeness only." if called_fake is False
                  else "."))
    return Explanation("lav_similarity", "Patch similarity grid", picture, caption,
                       data={"similarity": grid, "reference_patch": (row, col), "patch_embeddings": embeddings,
                             "grid_size": g})


def srm_explanation(detector, aligned: AlignedFace, x: torch.Tensor) -> Explanation:
    with torch.no_grad():
        residual = detector.srm(x)[0].abs().mean(0).float().cpu().numpy()
    fallback = per_picture(residual, lo=float(residual.min()), hi=float(np.percentile(residual, 99)))
    scale = scale_for(detector, "lav_srm", residual, fallback)
    shown = np.clip(resize_map(scale.apply(residual), aligned.image.shape[:2]), 0.0, 1.0)
    caption = ("Verify input: fixed high-pass (SRM) filters remove the face's content and keep fine noise and "
               "edges. The second stream reads only this; pasted or generated areas often carry a different "
               "noise texture than the rest of the photo. " + scale.sentence()
               + ("" if scale.calibrated else " (The top is the picture's 99th percentile.)"))
    picture = scaled_map_panel(shown, scale, cmap="cividis")
    return Explanation("lav_srm", "Noise residual (SRM filters)", picture, caption,
                       data={"residual_mean": float(residual.mean()),
                             "residual_p99": float(np.percentile(residual, 99)), **scale.data()})


def explain(detector, aligned: AlignedFace, x: torch.Tensor, out: dict) -> list[Explanation]:
    """Location map, patch-similarity grid, SRM residual and Grad-CAM for one face."""
    cam = gradcam_explanation(detector, aligned, x, title="Grad-CAM (verify stream)", out=out,
                              where="on the noise stream's last patch-level block, where the RGB stream's attention "
                                    "guides it")
    verdict = verdict_words(detector, out)
    return [location_explanation(detector, aligned, out),
            similarity_explanation(out, None if verdict is None else verdict[0]),
            srm_explanation(detector, aligned, x), cam]
