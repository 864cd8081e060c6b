"""RFFR's evidence: what a model of real faces expects, where the face departs from it, and
which parts of the picture the stage-2 detector leaned on.

Four explanations: the frozen MAE's block-wise reconstruction next to the input, the dense
``|reconstruction - input|`` discrepancy map and the per-block residual energy on the paper's
4 x 4 block grid, each with a colour bar on the checkpoint's calibrated range (0 = the median of
real faces, 1 = their 99th percentile; without one the discrepancy falls back to an absolute
scale, 1 = a colour difference of 1/4 of the full range or more, and the block energy to 0..its
own maximum), and Grad-CAM of the two-ViT detector (both ViTs' last blocks, tokens reshaped to
the patch grid).
"""
from __future__ import annotations

import numpy as np
import torch

from detectors.faces import AlignedFace

from .base import Explanation
from .charts import side_by_side
from .evidence import gradcam_explanation
from .render import resize_map
from .scales import fixed, per_picture, scale_for, scaled_map_panel


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def reconstruction_explanation(detector, aligned: AlignedFace, out: dict) -> Explanation:
    recon = out["aux"]["reconstruction"][0]
    size = aligned.image.shape[:2]
    shown = resize_map(_to_uint8(recon).astype(np.float32), size).clip(0, 255).astype(np.uint8)
    return Explanation("reconstruction", "What a real face would look like here", side_by_side([aligned.image, shown]), (
        "Left: the face. Right: the face rebuilt block by block by a model that has only ever seen real faces, "
        "each block guessed from its surroundings while hidden. Where the two differ, the face does not look "
        "like the real faces the model learned."), data={"input_size": int(recon.shape[-1])})


def difference_map(detector, x: torch.Tensor, out: dict) -> np.ndarray:
    """(S, S) mean over colour channels of ``|reconstruction - input|`` in [0, 1] colour units,
    before the detector's x``residual_gain`` and clipping (which saturate a large share of
    pixels of a real face when the MAE is small), so bright and dark stay apart."""
    recon = out["aux"]["reconstruction"][:1].detach().float()
    with torch.no_grad():
        unit = detector.to_unit(x[:1].to(recon.device)).float()
    return (recon - unit).abs().mean(1)[0].cpu().numpy()


def discrepancy_explanation(detector, aligned: AlignedFace, out: dict, x: torch.Tensor | None = None) -> Explanation:
    if x is not None and "reconstruction" in out["aux"]:
        disc = difference_map(detector, x, out)
        fallback = fixed(0.0, 1.0 / float(detector.config.residual_gain), "|difference| in colour units")
    else:  # the detector's own map: |residual| x gain, clipped at 1
        disc = out["aux"]["discrepancy"][0, 0].detach().float().cpu().numpy()
        fallback = fixed(0.0, 1.0, "|residual| x4, clipped")
    scale = scale_for(detector, "discrepancy", disc, fallback)
    shown = scale.apply(disc)
    picture = scaled_map_panel(shown, scale, "Difference from the rebuilt face")
    energy = float(out["aux"]["residual_energy"][0])
    ring = bool(detector.config.dense_map)
    caption = ("Bright pixels are where the face differs most from what the real-face model expected "
               f"(mean absolute colour difference; the detector reads it x{detector.config.residual_gain:g}, clipped; "
               f"mean squared residual over the 16 blocks: {energy:.4f}). "
               + ("The outer ring of patches is rebuilt with less context, so it is noisier and not used "
                  "by the detector. " if ring else "The outer ring of patches is not rebuilt (shown as 0). ")
               + scale.sentence())
    heat = np.clip(resize_map(shown, aligned.image.shape[:2]), 0.0, 1.0)
    return Explanation("discrepancy", "Discrepancy map", picture, caption, heatmap=heat,
                       data={"residual_energy": energy, "max": float(disc.max()), "mean": float(disc.mean()),
                             **scale.data()})


def block_energy_explanation(detector, aligned: AlignedFace, out: dict) -> Explanation:
    energy = out["aux"]["block_energy"][0].detach().float().cpu().numpy()
    n = int(round(len(energy) ** 0.5))
    grid = energy.reshape(n, n)
    top = max(float(np.nanmax(grid)), 1e-6) if np.isfinite(grid).any() else 1e-6
    scale = scale_for(detector, "block_energy", grid, per_picture(grid, lo=0.0, hi=top))
    shown = scale.apply(grid)
    picture = scaled_map_panel(shown, scale, "Residual energy per block (mean squared residual)", cmap="cividis",
                               cell_values=grid, cell_text="{:.3f}")
    r, c = np.unravel_index(int(np.nanargmax(grid)), grid.shape)
    caption = (f"The face's centre split into the paper's {n}x{n} blocks, each rebuilt while hidden. The numbers are "
               f"each block's mean squared residual: higher = that block was harder to explain as a real face. "
               f"Highest: row {r + 1}, column {c + 1}. " + scale.sentence()
               + ("" if scale.calibrated else " (The bottom of this scale is 0.)"))
    cell = detector.config.block_patches * detector.config.patch_size
    full = np.zeros((detector.config.input_size,) * 2, np.float32)
    off = detector.config.patch_size
    full[off:off + n * cell, off:off + n * cell] = np.kron(shown, np.ones((cell, cell), np.float32))
    heat = np.clip(resize_map(full, aligned.image.shape[:2]), 0.0, 1.0)
    return Explanation("block_energy", "Per-block residual energy", picture, caption, heatmap=heat,
                       data={"block_energy": [float(v) for v in energy], **scale.data()})


def explain(detector, aligned: AlignedFace, x: torch.Tensor, out: dict) -> list[Explanation]:
    """RFFR's own evidence (reconstruction, discrepancy, block energy) and Grad-CAM."""
    return [reconstruction_explanation(detector, aligned, out),
            discrepancy_explanation(detector, aligned, out, x),
            block_energy_explanation(detector, aligned, out),
            gradcam_explanation(detector, aligned, x, title="Grad-CAM (image and residual ViTs)",
                                forward=reusing_residual(detector, out), out=out,
                                where="on both ViTs' last blocks, averaged")]


def reusing_residual(detector, out: dict):
    """``x -> detector(x)`` that reuses the frozen MAE's residual from ``out`` (the verdict's own
    forward pass), so Grad-CAM runs only the stage-2 ViTs again."""
    aux = out["aux"]
    r = {k: aux[k] for k in ("reconstruction", "residual", "block_energy")}
    return lambda x: detector.decide(x, r, aux["blocks"])
