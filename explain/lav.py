"""Locate-and-Verify evidence: the patch location map, the patch-similarity grid, the SRM noise
residual the verify stream reads, and Grad-CAM on the verify stream."""
from __future__ import annotations

import numpy as np
import torch

from detectors.faces import AlignedFace

from .base import Explanation
from .charts import map_panel
from .pipeline import gradcam_explanation
from .render import colorize, heatmap_overlay, normalize, resize_map


def patch_similarity_row(embeddings: np.ndarray, index: int) -> np.ndarray:
    """Cosine similarity of every patch to patch ``index`` (row-major), as a (G, G) grid.

    ``embeddings`` is the (D, G, G) array kept in the similarity explanation's ``data``; the app
    calls this when a user clicks a patch.
    """
    e = np.asarray(embeddings, dtype=np.float32)
    d, g, _ = e.shape
    flat = e.reshape(d, -1)
    flat = flat / (np.linalg.norm(flat, axis=0, keepdims=True) + 1e-8)
    return (flat[:, index] @ flat).reshape(g, g)


def location_explanation(aligned: AlignedFace, out: dict) -> Explanation:
    location = out["aux"]["location"][0].detach().float().cpu().numpy()  # (G, G) in [0, 1]
    g = location.shape[0]
    heat = np.clip(resize_map(location, aligned.image.shape[:2]), 0.0, 1.0)
    share = float((location > 0.5).mean())
    caption = (f"Locate: the network splits the face into {g}x{g} patches and rates how likely each one "
               f"was manipulated. Bright patches look forged. {share:.0%} of the patches are above one half; "
               f"the strongest is {location.max():.2f}.")
    return Explanation("lav_location", "Patch location map", heatmap_overlay(aligned.image, heat, alpha=0.5), caption,
                       heatmap=heat, data={"location": location, "grid_size": g})


def similarity_explanation(out: dict) -> Explanation:
    aux = out["aux"]
    location = aux["location"][0].detach().float().cpu().numpy()
    embeddings = aux["patch_embeddings"][0].detach().float().cpu().numpy()  # (D, G, G)
    g = location.shape[0]
    peak = int(location.argmax())
    row, col = divmod(peak, g)
    grid = patch_similarity_row(embeddings, peak)
    picture = map_panel(grid, "Similarity to the most-forged patch", "cosine similarity", vmin=-1, vmax=1,
                        marker=(row, col))
    caption = ("Patch similarity: each square shows how much a patch's learned features resemble those of the "
               f"patch the network finds most suspicious (outlined, row {row + 1}, column {col + 1}). Forged "
               "patches are trained to look alike and unlike real ones, so a bright cluster marks one "
               "manipulated area.")
    return Explanation("lav_similarity", "Patch similarity grid", picture, caption,
                       data={"similarity": grid, "reference_patch": (row, col), "patch_embeddings": embeddings,
                             "grid_size": g})


def srm_explanation(detector, aligned: AlignedFace, x: torch.Tensor) -> Explanation:
    with torch.no_grad():
        residual = detector.srm(x)[0].abs().mean(0).float().cpu().numpy()
    shown = normalize(np.clip(residual, 0, np.percentile(residual, 99)))
    shown = resize_map(shown, aligned.image.shape[:2])
    caption = ("Verify input: fixed high-pass (SRM) filters remove the face's content and keep fine noise and "
               "edges. The second stream reads only this; pasted or generated areas often carry a different "
               "noise texture than the rest of the photo.")
    return Explanation("lav_srm", "Noise residual (SRM filters)", colorize(shown, "cividis"), caption)


def explain(detector, aligned: AlignedFace, x: torch.Tensor, out: dict) -> list[Explanation]:
    """Location map, patch-similarity grid, SRM residual and Grad-CAM for one face."""
    cam = gradcam_explanation(detector, aligned, x, title="Grad-CAM (verify stream)")
    cam.caption = ("Bright areas pushed the verdict towards 'fake' the most (Grad-CAM on the noise stream's "
                   "last patch-level block, where the RGB stream's attention guides it).")
    return [location_explanation(aligned, out), similarity_explanation(out), srm_explanation(detector, aligned, x), cam]
