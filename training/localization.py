"""How well a map finds the forged pixels: one convention for the forgery lab and ``evaluate``.

The convention:

- **Forged pixels**: a ground-truth mask pixel is forged when its value is ``>= 0.5``
  (:data:`FORGED_AT`), the same ``>=`` rule as a verdict's ``prob_fake >= threshold``; a soft
  blend weight of exactly one half counts as forged.
- **Pixel AUC**: the chance that a forged pixel's map value is higher than an untouched one's,
  ties counted half (Mann-Whitney, equal to scikit-learn's ROC AUC); ``None`` when the pixels are
  all forged or all untouched. Pooled over every pixel of every picture given.
- **IoU**: the best IoU of ``map >= t`` with the forged pixels over every threshold ``t`` the maps
  take, one ``t`` for all the pictures given (so a set's IoU measures a map that could be cut
  once and used as-is); reported with that ``t``. Maps are taken as they are (no per-picture
  rescaling), on the [0, 1] scale the explainers give them. ``None`` when nothing is forged.

The lab scores one picture, ``evaluate`` a set; both call these functions. No scikit-learn
here: the lab scores maps on the app's request path.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: A mask pixel at or above this value is forged.
FORGED_AT = 0.5


def forged(mask: np.ndarray) -> np.ndarray:
    """The forged pixels of a ground-truth mask (boolean, same shape)."""
    return np.asarray(mask, dtype=np.float64) >= FORGED_AT


def pixel_auc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float | None:
    """Pooled pixel AUC of ``maps`` against ``masks`` (see the module's convention)."""
    values, truth = pixels(maps, masks)
    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat(first + (counts - 1) / 2.0 + 1.0, counts)  # tied values share their mean rank
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def best_iou(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[float | None, float | None]:
    """``(iou, t)``: the best pooled IoU of ``map >= t`` with the forged pixels, and that ``t``
    (the highest one where several tie)."""
    values, truth = pixels(maps, masks)
    n_pos = int(truth.sum())
    if n_pos == 0:
        return None, None
    order = np.argsort(-values, kind="mergesort")
    ranked, hits = values[order], truth[order]
    # Marking every pixel down to a value marks the whole run of equal values: score at run ends.
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    marked = ends + 1
    overlap = np.cumsum(hits)[ends]
    iou = overlap / (n_pos + marked - overlap)
    best = int(np.argmax(iou))
    return float(iou[best]), float(ranked[ends[best]])


def pixels(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's map value (NaN read as 0) and whether it is forged, pooled over pictures."""
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps for {len(masks)} masks")
    values, truth = [], []
    for heat, mask in zip(maps, masks):
        heat = np.nan_to_num(np.asarray(heat, dtype=np.float64).squeeze())
        mask = np.asarray(mask, dtype=np.float64).squeeze()
        if heat.shape != mask.shape:
            raise ValueError(f"map {heat.shape} and mask {mask.shape} differ in size")
        values.append(heat.reshape(-1))
        truth.append(forged(mask).reshape(-1))
    if not values:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(values), np.concatenate(truth)
