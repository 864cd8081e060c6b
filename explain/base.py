"""What every explainer returns."""
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
