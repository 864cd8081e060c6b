"""Words and pictures for the app's cards from plain values: captions, measured figures, maps.

Nothing here knows the pipeline's result types (explain sits below the pipeline); the words
that read a :class:`pipeline.DetectorResult` are in :mod:`ui.texts`.

Every picture gets a sentence beside it; numbers say what they are; colours come from
viridis/cividis only, with a legend.
"""
from __future__ import annotations

import re
from typing import Any, Protocol

import numpy as np

from .base import Explanation, jsonable
from .charts import captioned_row, colour_legend, map_panel, outline_mask, side_by_side
from .render import DEFAULT_CMAP, colorize


class ScoredMap(Protocol):
    """A map scored against the forged pixels (``training.lab.LabMap`` is one); declared here so
    that explain draws the lab's figure without importing training."""

    title: str
    heatmap: np.ndarray
    scores: dict[str, float | None]

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")  # what Markdown would read mid-line


def escape(text: str) -> str:
    """Text shown literally in Markdown (a caption's ``[*]`` token stays ``[*]``)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def accuracy_markdown(measured: dict[str, Any] | None) -> str:
    """How well this checkpoint detects, by kind: the sentence and a small table (recorded figures)."""
    if not measured or not measured.get("kinds"):
        return "*How well it detects: no measured figures are recorded for this checkpoint.*"
    rows = ["| kind of fake | AUC | caught |", "| --- | --- | --- |"]
    for k in sorted(measured["kinds"], key=lambda k: -k["auc"]):
        flag = " \u26a0\ufe0f" if k["auc"] < 0.5 else ""
        caught = "\u2013" if k.get("caught") is None else f"{k['caught']:.0%}"
        rows.append(f"| {escape(k['name'])} | {k['auc']:.2f}{flag} | {caught} |")
    real = measured.get("real_called_real")
    tail = f"Real faces called real: {real:.0%}. " if real is not None else ""
    return (f"**How well it detects (measured):** {escape(measured['sentence'])}\n\n" + "\n".join(rows)
            + f"\n\n{tail}AUC 0.5 = guessing; below 0.5 = worse than guessing (\u26a0\ufe0f).")


def accuracy_table(rows: list[tuple[str, dict[str, Any] | None]]) -> str:
    """Detectors x kinds of fake (measured AUC), a column for real faces called real, and the
    one-sentence reading of each row; from each checkpoint's recorded figures."""
    kinds: list[str] = []
    for _, m in rows:
        for k in (m or {}).get("kinds", []):
            if k["name"] not in kinds:
                kinds.append(k["name"])
    head = ["Detector", *kinds, "real faces called real", "in one sentence"]
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for title, m in rows:
        auc = {k["name"]: k["auc"] for k in (m or {}).get("kinds", [])}
        cells = [f"{auc[k]:.2f}" if k in auc else "\u2013" for k in kinds]
        real = (m or {}).get("real_called_real")
        sentence = escape(m["sentence"]) if m else "No measured figures are recorded."
        out.append("| " + " | ".join([title, *cells, "\u2013" if real is None else f"{real:.0%}", sentence]) + " |")
    return "\n".join(out)


def _number(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    if isinstance(value, str) and len(value) <= 200:
        return value
    return None


#: ``Explanation.data`` keys the API carries but the card does not repeat (the caption says them).
NOT_SHOWN = frozenset({"scale_range"})


def data_lines(data: dict[str, Any], limit: int = 12) -> list[str]:
    """Scalars and small dicts of scalars from ``Explanation.data`` as ``key: value`` lines."""
    lines: list[str] = []
    for key, value in jsonable(data).items():
        if len(lines) >= limit:
            break
        if key in NOT_SHOWN:
            continue
        text = _number(value)
        if text is not None:
            lines.append(f"- {key.replace('_', ' ')}: **{escape(text)}**")
        elif isinstance(value, dict) and set(value) == {"shape", "dtype"}:
            continue  # a big array (kept for interaction), not a number to read
        elif isinstance(value, dict):
            parts = [f"{k.replace('_', ' ')} {_number(v)}" for k, v in value.items() if _number(v) is not None]
            if parts:
                lines.append(f"- {key.replace('_', ' ')}: " + ", ".join(parts[:10]))
        elif isinstance(value, list) and 0 < len(value) <= 8 and all(_number(v) is not None for v in value):
            lines.append(f"- {key.replace('_', ' ')}: " + ", ".join(_number(v) for v in value))
    return lines


def explanation_markdown(e: Explanation) -> str:
    """The sentence beside a picture: what it shows and the numbers behind it."""
    text = f"**{escape(e.title)}.** {escape(e.caption)}"
    lines = data_lines(e.data)
    return text + ("\n\n" + "\n".join(lines) if lines else "")


def legend_image(cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """A colour bar that reads every heat map in the app."""
    return colour_legend(f"Map colours ({cmap}), calibrated on real faces: dark = as typical real faces, "
                         "yellow = as unusual as the top 1% of real faces", "typical of real faces",
                         "unusual for a real face", cmap=cmap)


def similarity_picture(grid: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """A patch-similarity grid with the reference patch outlined and a labelled colour bar."""
    return map_panel(grid, f"Similarity to patch row {patch[0] + 1}, column {patch[1] + 1}", "cosine similarity",
                     cmap=DEFAULT_CMAP, vmin=-1, vmax=1, marker=patch)


def mask_picture(mask: np.ndarray) -> np.ndarray:
    """A ground-truth mask drawn in cividis (dark = untouched, yellow = replaced)."""
    return colorize(np.clip(mask, 0, 1), "cividis")


#: Pictures per row in the lab figure (one detector per row of the page).
LAB_COLUMNS = 6
#: Side of each picture in the lab figure, in pixels: large enough for a projector.
LAB_SIDE = 220


def zoom_box(truth: np.ndarray, margin: float = 0.6, min_share: float = 0.35) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: a square around the forged pixels with ``margin`` of their size on
    each side, at least ``min_share`` of the crop, inside it (the whole crop when nothing is forged)."""
    h, w = truth.shape[:2]
    ys, xs = np.nonzero(np.asarray(truth) > 0.5)
    if ys.size == 0:
        return 0, h, 0, w
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    side = max(ys.max() - ys.min(), xs.max() - xs.min()) * (1 + 2 * margin)
    side = int(min(max(side, min_share * min(h, w)), min(h, w)))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    return y0, y0 + side, x0, x0 + side


def face_box(bbox, shape: tuple[int, int], margin: float = 0.35) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: a face's box ``(x0, y0, x1, y1)`` grown by ``margin`` on each side,
    inside a picture of ``shape``."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = shape
    return (max(0, int(y0 - dy)), min(h, int(round(y1 + dy))), max(0, int(x0 - dx)), min(w, int(round(x1 + dx))))


def lab_figure(crop: np.ndarray, truth: np.ndarray, maps: list[ScoredMap]) -> np.ndarray:
    """The forged crop, the ground truth and each map beside it, zoomed to the forged region,
    with the truth outlined on the maps."""
    y0, y1, x0, x1 = zoom_box(truth)
    zoomed = (y1 - y0, x1 - x0) != truth.shape[:2]
    cut = (lambda a: a[y0:y1, x0:x1])
    part = cut(truth)
    panels = [(cut(crop), "what it saw" + (" (zoomed to the forgery)" if zoomed else "")),
              (mask_picture(part), "forged pixels (truth)")]
    for m in maps:
        auc = m.scores.get("pixel_auc")
        title = f"{m.title}, AUC {auc:.2f}" if auc is not None else m.title
        panels.append((outline_mask(colorize(np.clip(cut(m.heatmap), 0, 1), DEFAULT_CMAP), part), title))
    rows = [panels[i:i + LAB_COLUMNS] for i in range(0, len(panels), LAB_COLUMNS)]
    return side_by_side([captioned_row(row, side=LAB_SIDE, colour_bar="map value (0 to 1)",
                                       footer="dashed white line = forged region" if row is rows[-1] else "")
                         for row in rows], gap=0, vertical=True)
