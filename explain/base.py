"""What every explainer returns, and its data as JSON (:func:`jsonable`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Explanation:
    """One picture of evidence and the sentence that reads it.

    ``image`` is an RGB ``uint8`` array ready to show; ``heatmap`` (optional) is the map as
    coloured, in [0, 1] at the crop's size (on the checkpoint's calibrated scale when it has one,
    see :mod:`explain.scales`), kept for scoring against ground-truth masks; ``data`` holds
    numbers behind the picture (probabilities, region scores) for the API, and for every map on a
    colour scale ``scale`` (a line starting with ``calibrated``, ``per-picture`` or ``fixed``)
    and ``scale_range``.
    """

    kind: str
    title: str
    image: np.ndarray
    caption: str
    heatmap: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)


#: Arrays up to this many elements go into the API as lists; larger ones as their shape.
MAX_JSON_ARRAY = 256


def jsonable(value: Any) -> Any:
    """Numbers, strings, short lists; numpy turned into Python; big arrays summarised."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size <= MAX_JSON_ARRAY:
            return jsonable(value.tolist())
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
