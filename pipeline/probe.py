"""Interactive evidence: a click on a patch redraws LAV's patch-similarity grid for that patch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.patch_grid import patch_similarity_row

from .results import DetectorResult


@dataclass
class PatchProbe:
    """What a click on a crop-sized picture needs to redraw a patch-similarity grid (LAV).

    Built from an explanation whose ``data`` holds ``patch_embeddings`` (D, G, G); ``target``
    is the index of that explanation, ``clickable`` says which pictures are in crop pixels.
    """

    embeddings: np.ndarray
    target: int
    crop_size: tuple[int, int]
    clickable: list[bool]

    @property
    def grid(self) -> int:
        return int(self.embeddings.shape[-1])

    def patch_at(self, x: float, y: float) -> tuple[int, int]:
        h, w = self.crop_size
        g = self.grid
        return min(g - 1, max(0, int(y * g / h))), min(g - 1, max(0, int(x * g / w)))

    def similarity(self, patch: tuple[int, int]) -> np.ndarray:
        """The (G, G) cosine similarity of every patch to ``patch`` (row, column)."""
        return patch_similarity_row(self.embeddings, patch[0] * self.grid + patch[1])


def patch_probe(result: DetectorResult, limit: int | None = None) -> PatchProbe | None:
    """A :class:`PatchProbe` when one of the (first ``limit``) explanations carries patch embeddings."""
    if not result.ok or result.aligned is None:
        return None
    shown = result.explanations[:limit]
    height, width = result.aligned.image.shape[:2]
    crop = (height, width)
    for i, e in enumerate(shown):
        emb = e.data.get("patch_embeddings")
        if emb is not None and np.ndim(emb) == 3:
            return PatchProbe(np.asarray(emb, np.float32), i, crop, [x.image is not None and x.image.shape[:2] == crop for x in shown])
    return None
