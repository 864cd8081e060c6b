"""Patch-grid arithmetic shared by the detectors, their explanations, the app and training.

Two small operations several places need and must agree on: turning a ViT's token sequence into
a (B, C, g, g) grid (what Grad-CAM hooks read), and the cosine similarity of patch embeddings
(LAV's similarity grid, the app's click-a-patch probe, training's pseudo labels). Kept free of
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


def tokens_to_grid(tokens: torch.Tensor, grid: int, prefix_tokens: int = 1,
                   patch_ids: torch.Tensor | None = None) -> torch.Tensor:
    """ViT tokens (B, prefix_tokens + N, C) -> (B, C, grid, grid), the prefix (class, register)
    tokens dropped: the reshape Grad-CAM needs to read a transformer block as a map.

    ``patch_ids`` (N,) are the row-major grid cells the N tokens stand for when the ViT saw only
    some patches (RFFR's masked views); the cells it did not see are zero.
    """
    patches = tokens[:, prefix_tokens:, :]
    b, n, c = patches.shape
    if patch_ids is not None:
        if patch_ids.numel() != n:
            raise ValueError(f"{n} patch tokens for {patch_ids.numel()} patch ids")
        full = patches.new_zeros(b, grid * grid, c)
        full[:, patch_ids] = patches
        patches = full
    elif n != grid * grid:
        raise ValueError(f"{n} patch tokens do not fill a {grid} x {grid} grid")
    return patches.reshape(b, grid, grid, c).permute(0, 3, 1, 2)
