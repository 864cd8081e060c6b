"""Patch-grid arithmetic shared by the detectors, their explanations, the app and training.

The cosine similarity of patch embeddings, which several places need and must agree on (LAV's
similarity grid, the app's click-a-patch probe, training's pseudo labels). Kept free of
model code, so ``pipeline`` and ``explain`` can import it without loading a detector family.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def patch_similarity(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch embedding (B, D, H, W) to one reference vector per image
    (B, D): (B, H, W)."""
    e = F.normalize(embeddings.float(), dim=1)
    ref = F.normalize(reference.float(), dim=1)
    return torch.einsum("bd,bdhw->bhw", ref, e)


def patch_similarity_row(embeddings: np.ndarray | torch.Tensor, index: int) -> np.ndarray:
    """Cosine similarity of every patch to patch ``index`` (row-major) of one image's (D, G, G)
    embeddings, as a (G, G) array: what the app draws when a user clicks a patch."""
    e = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))[None]  # (1, D, G, G)
    return patch_similarity(e, e.flatten(2)[:, :, index])[0].numpy()

