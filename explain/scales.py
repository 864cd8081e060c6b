"""Colour scales for explanation maps: fixed ranges calibrated on real faces, or the fallbacks.

A map's raw values (Grad-CAM without per-image min-max, a residual, an attention weight...) are
mapped to colours on a *fixed* range per (checkpoint, map kind): ``lo`` = the median and ``hi``
= the 99th percentile of that map's values pooled over real faces the checkpoint was trained on
(``python -m training calibrate-maps`` writes them to ``config.json`` under
``extra.map_scales``). A real face then reads mostly dark and a forgery's strong region
saturates, so two faces' maps can be compared.

Without a stored range (random weights, older checkpoints) a map falls back to what it did
before: scaled to the picture's own minimum and maximum (and the caption says so), or, for maps
whose values are already probabilities, their fixed 0..1 range.

``collecting()`` records every raw map the explainers scale, which is how calibration sees
exactly the values the app colours.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

SCALES_KEY = "map_scales"
LO_PERCENTILE, HI_PERCENTILE = 50.0, 99.0
RULE = ("lo = median, hi = 99th percentile of the map's raw values (each face's pixels or cells, "
        "pooled) over real faces; colours run from lo (0) to hi (1), clipped")
#: What a map scaled to its own range says (caption and data).
OWN_MAXIMUM = "scaled to this picture's own maximum: not comparable across faces"
PANEL_SIDE = 224

_COLLECTOR: ContextVar[dict[str, list[np.ndarray]] | None] = ContextVar("map_scale_collector", default=None)


@dataclass(frozen=True)
class MapScale:
    """How one map's raw values become colours: ``(raw - lo) / (hi - lo)``, clipped to [0, 1].

    ``mode``: ``calibrated`` (a range stored with the checkpoint), ``per-picture`` (this map's
    own minimum/maximum) or ``fixed`` (a native range such as probabilities 0..1, ``what``
    names the quantity).
    """

    mode: str
    lo: float
    hi: float
    n_faces: int = 0
    what: str = ""

    @property
    def calibrated(self) -> bool:
        return self.mode == "calibrated"

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Raw values in [0, 1] on this scale (NaN becomes 0)."""
        r = np.nan_to_num(np.asarray(raw, np.float32), nan=self.lo)
        if not self.hi > self.lo:
            return np.zeros_like(r)
        return np.clip((r - self.lo) / (self.hi - self.lo), 0.0, 1.0).astype(np.float32)

    def bar_lines(self) -> tuple[str, str]:
        """Two short lines read beside the colour bar (what 0 and 1 mean)."""
        if self.calibrated:
            return f"0 = median on {self.n_faces} real faces", "1 = their 99th percentile"
        if self.mode == "fixed":
            return self.what or "value", f"fixed range {_num(self.lo)} to {_num(self.hi)}"
        return "0 = this picture's minimum", "1 = its own maximum"

    def ticks(self) -> list[tuple[float, str]]:
        if self.mode == "fixed":
            return [(0.0, _num(self.lo)), (0.5, _num((self.lo + self.hi) / 2)), (1.0, _num(self.hi))]
        return [(0.0, "0"), (0.5, "0.5"), (1.0, "1")]

    def sentence(self) -> str:
        """The caption's sentence about the colours."""
        if self.calibrated:
            return (f"Colours are on a fixed scale calibrated on {self.n_faces} real training faces: dark = at or "
                    f"below the real faces' median ({_num(self.lo)}), brightest = at or above their 99th percentile "
                    f"({_num(self.hi)}), so a typical real face reads mostly dark.")
        if self.mode == "fixed":
            return f"Colours show {self.what or 'the value'} on its fixed range {_num(self.lo)} to {_num(self.hi)}."
        return f"Colours are {OWN_MAXIMUM} (no calibrated range is stored with this checkpoint)."

    def describe(self) -> str:
        """One line for ``Explanation.data['scale']``: starts with the mode."""
        if self.calibrated:
            return (f"calibrated on {self.n_faces} real faces (0 = median {_num(self.lo)}, "
                    f"1 = 99th percentile {_num(self.hi)})")
        if self.mode == "fixed":
            return f"fixed ({self.what or 'value'} {_num(self.lo)} to {_num(self.hi)})"
        return f"per-picture ({OWN_MAXIMUM}; {_num(self.lo)} to {_num(self.hi)})"

    def data(self) -> dict[str, Any]:
        """``scale`` (a line starting with the mode) and ``scale_range`` for ``Explanation.data``."""
        return {"scale": self.describe(),
                "scale_range": {"lo": float(self.lo), "hi": float(self.hi), "n_faces": int(self.n_faces)}}


def _num(v: float) -> str:
    return f"{v:.3g}"


# ---- which scale -------------------------------------------------------------------------------
def stored_scale(detector, kind: str) -> dict[str, Any] | None:
    """The checkpoint's calibrated range for ``kind`` (``extra.map_scales``), if usable."""
    extra = getattr(getattr(detector, "config", None), "extra", None) or {}
    entry = (extra.get(SCALES_KEY) or {}).get(kind)
    if not isinstance(entry, dict):
        return None
    try:
        lo, hi = float(entry["lo"]), float(entry["hi"])
    except (KeyError, TypeError, ValueError):
        return None
    return entry if np.isfinite(lo) and np.isfinite(hi) and hi > lo else None


def per_picture(raw: np.ndarray, lo: float | None = None, hi: float | None = None) -> MapScale:
    """This map's own range (``lo``/``hi`` override one end, e.g. ``lo=0``)."""
    r = np.asarray(raw, np.float32)
    finite = r[np.isfinite(r)]
    low = float(lo) if lo is not None else (float(finite.min()) if finite.size else 0.0)
    high = float(hi) if hi is not None else (float(finite.max()) if finite.size else low)
    return MapScale("per-picture", low, high)


def fixed(lo: float, hi: float, what: str) -> MapScale:
    return MapScale("fixed", float(lo), float(hi), what=what)


def scale_for(detector, kind: str, raw: np.ndarray, fallback: MapScale | None = None) -> MapScale:
    """The colour scale of map ``kind``: the checkpoint's calibrated range when stored, else
    ``fallback`` (default: the picture's own range). Records ``raw`` while :func:`collecting`."""
    found = _COLLECTOR.get()
    if found is not None:
        found.setdefault(kind, []).append(np.asarray(raw, np.float32).copy())
    entry = stored_scale(detector, kind)
    if entry is not None:
        return MapScale("calibrated", float(entry["lo"]), float(entry["hi"]), int(entry.get("n_faces") or 0))
    return fallback if fallback is not None else per_picture(raw)


@contextmanager
def collecting() -> Iterator[dict[str, list[np.ndarray]]]:
    """Within the block, every raw map passed to :func:`scale_for` is kept, by kind."""
    found: dict[str, list[np.ndarray]] = {}
    token = _COLLECTOR.set(found)
    try:
        yield found
    finally:
        _COLLECTOR.reset(token)


def calibrate(maps: Sequence[np.ndarray], max_values_per_map: int = 20000, seed: int = 0) -> dict[str, float]:
    """``lo``/``hi`` (see :data:`RULE`) over the pooled values of ``maps`` (one per face; a map
    with more than ``max_values_per_map`` values contributes a fixed random subset, so every
    face weighs the same)."""
    rng = np.random.default_rng(seed)
    pooled = []
    for m in maps:
        v = np.asarray(m, np.float32).ravel()
        v = v[np.isfinite(v)]
        if v.size > max_values_per_map:
            v = v[rng.choice(v.size, max_values_per_map, replace=False)]
        pooled.append(v)
    values = np.concatenate(pooled) if pooled else np.zeros(0, np.float32)
    if values.size == 0:
        raise ValueError("no finite map values to calibrate on")
    lo, hi = (float(np.percentile(values, q)) for q in (LO_PERCENTILE, HI_PERCENTILE))
    if not hi > lo:  # most values tied at the median (e.g. a ReLU map): the top of the rest
        above = values[values > lo]
        hi = float(np.percentile(above, HI_PERCENTILE)) if above.size else lo + 1e-6
    return {"lo": lo, "hi": hi}


# ---- pictures ----------------------------------------------------------------------------------
def colour_bar(height: int, scale: MapScale, cmap: str) -> np.ndarray:
    """A vertical colour bar ``height`` px tall whose labels say what the scale's ends mean."""
    from .charts import BAR_PAD, PAPER, TEXT_SIZE, side_by_side, vertical_colour_bar, vertical_text

    first, second = scale.bar_lines()
    bar = np.asarray(vertical_colour_bar(height, first, scale.ticks(), cmap))
    line = np.asarray(vertical_text(second, TEXT_SIZE))
    column = np.full((bar.shape[0], line.shape[1], 3), PAPER, np.uint8)
    top = BAR_PAD + max(0, (height - line.shape[0]) // 2)
    column[top:top + line.shape[0]] = line[: bar.shape[0] - top]
    return side_by_side([bar, column], gap=2)


def _square(picture: np.ndarray, side: int) -> np.ndarray:
    if picture.shape[0] == side and picture.shape[1] == side:
        return picture
    shrink = picture.shape[0] > side
    return cv2.resize(np.ascontiguousarray(picture), (side, side),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def overlay_panel(image: np.ndarray, shown: np.ndarray, scale: MapScale, cmap: str = "viridis",
                  alpha: float = 0.45, side: int = PANEL_SIDE) -> np.ndarray:
    """The [0, 1] map ``shown`` over the crop, enlarged to ``side`` px, with a labelled colour bar."""
    from .charts import MARGIN, PAPER, side_by_side
    from .render import heatmap_overlay

    face = _square(heatmap_overlay(image, shown, alpha=alpha, cmap=cmap), side)
    row = side_by_side([face, colour_bar(side, scale, cmap)], gap=10)
    out = np.full((row.shape[0] + 2 * MARGIN, row.shape[1] + 2 * MARGIN, 3), PAPER, np.uint8)
    out[MARGIN:-MARGIN, MARGIN:-MARGIN] = row
    return out


def scaled_map_panel(shown: np.ndarray, scale: MapScale, title: str = "", cmap: str = "viridis",
              cell_values: np.ndarray | None = None, cell_text: str = "{:.3f}", side: int = PANEL_SIDE) -> np.ndarray:
    """A [0, 1] map (a small grid drawn as crisp cells, a larger map smoothly) with a title and a
    labelled colour bar; ``cell_values`` (same grid) are written in the cells."""
    from PIL import ImageDraw

    from .charts import (
        INK,
        MARGIN,
        PAPER,
        TITLE_SIZE,
        _title_block,
        draw_lines,
        font,
        grid_pixels,
        line_height,
        side_by_side,
    )
    from .render import colorize

    grid = np.clip(np.nan_to_num(np.asarray(shown, np.float32)), 0, 1)
    pixels, cell = grid_pixels(grid, side)
    map_h = pixels.shape[0]
    picture = colorize(pixels, cmap)
    if cell_values is not None:
        canvas = Image.fromarray(picture)
        draw = ImageDraw.Draw(canvas)
        f = font(10)
        for (r, c), v in np.ndenumerate(np.asarray(cell_values, np.float32)):
            if np.isfinite(v):
                ink = INK if grid[r, c] > 0.6 else PAPER
                draw.text(((c + 0.5) * cell, (r + 0.5) * cell), cell_text.format(float(v)), font=f, fill=ink,
                          anchor="mm")
        picture = np.asarray(canvas)
    row = side_by_side([picture, colour_bar(map_h, scale, cmap)], gap=10)
    width = row.shape[1] + 2 * MARGIN
    lines = _title_block(title, width)
    top = MARGIN + len(lines) * line_height(TITLE_SIZE) + (4 if lines else 0)
    canvas = Image.new("RGB", (width, top + row.shape[0] + MARGIN), PAPER)
    draw_lines(ImageDraw.Draw(canvas), width / 2, MARGIN, lines, TITLE_SIZE, align="center")
    canvas.paste(Image.fromarray(row), (MARGIN, top))
    return np.asarray(canvas)
