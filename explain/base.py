"""What every explainer returns, and its data as JSON (:func:`jsonable`, :func:`explanation_json`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BarChart:
    """A handful of numbers for the browser to draw (Gradio's native bar plot), one bar per label;
    ``colours`` are hex strings, one per bar. Its title is the explanation's."""

    labels: list[str]
    values: list[float]
    value_title: str
    colours: list[str]
    value_range: tuple[float, float] = (0.0, 1.0)


@dataclass
class Explanation:
    """One picture of evidence, or one chart of a few numbers, and the sentence that reads it.

    ``image`` is an RGB ``uint8`` array ready to show, or ``None`` for a ``chart`` (a
    :class:`BarChart` the browser draws); ``heatmap`` (optional) is the map as
    coloured, in [0, 1] at the crop's size (on the checkpoint's calibrated scale when it has one,
    see :mod:`explain.scales`), kept for scoring against ground-truth masks; ``data`` holds
    numbers behind the picture (probabilities, region scores) for the API, and for every map on a
    colour scale ``scale`` (a line starting with ``calibrated``, ``per-picture`` or ``fixed``)
    and ``scale_range``.
    """

    kind: str
    title: str
    image: np.ndarray | None
    caption: str
    heatmap: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)
    chart: BarChart | None = None


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


def explanation_json(e: Explanation, image: int | None = None) -> dict[str, Any]:
    """One explanation for the API: its words and numbers, ``image`` (the index of its picture in
    the gallery sent beside the JSON, ``None`` for a chart) and ``chart`` (the bars, or ``None``)."""
    return {"kind": e.kind, "title": e.title, "caption": e.caption, "data": jsonable(e.data), "image": image,
            "chart": jsonable(asdict(e.chart)) if e.chart is not None else None}
