"""Words and pictures for the app's cards, from analysis results (text and arrays, no UI types).

Every picture gets a sentence beside it; numbers say what they are; colours come from
viridis/cividis only, with a legend.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .analysis import DetectorResult, LabMap, combine, jsonable
from .base import Explanation
from .charts import captioned_row, colour_legend, map_panel, outline_mask, side_by_side
from .render import DEFAULT_CMAP, colorize

VERDICT_WORDS = {"fake": "likely manipulated", "real": "likely real"}


def verdict_markdown(result: DetectorResult) -> str:
    """The card's head: verdict with probability and threshold, checkpoint, notes."""
    lines = []
    if result.status == "ok" and result.verdict is not None:
        v = result.verdict
        mark = "\u26a0\ufe0f" if v.is_fake else "\u2714\ufe0f"
        lines.append(f"### {mark} {v.summary().capitalize()}")
        lines.append(f"Probability of manipulation **{v.prob_fake:.3f}**, decision threshold **{v.threshold:.3f}**.")
        lines.append(f"Checkpoint: `{result.source}` \u00b7 {result.seconds:.2f} s")
        if v.n_faces > 1:
            lines.append(f"Face {v.face_index + 1} of {v.n_faces}.")
    elif result.status == "off":
        lines.append("### Not run")
        lines.append("Tick **Run** to include this detector.")
    elif result.status == "error":
        lines.append("### \u274c Failed on this face")
    else:
        lines.append("### Not available")
    if result.message:
        lines.append(f"> **Note:** {result.message}")
    return "\n\n".join(lines)


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


def data_lines(data: dict[str, Any], limit: int = 12) -> list[str]:
    """Scalars and small dicts of scalars from ``Explanation.data`` as ``key: value`` lines."""
    lines: list[str] = []
    for key, value in jsonable(data).items():
        if len(lines) >= limit:
            break
        text = _number(value)
        if text is not None:
            lines.append(f"- {key.replace('_', ' ')}: **{text}**")
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
    text = f"**{e.title}.** {e.caption}"
    lines = data_lines(e.data)
    return text + ("\n\n" + "\n".join(lines) if lines else "")


def combined_markdown(items: Iterable[DetectorResult | dict]) -> str:
    """The verdict across detectors and a table of each one's decision (results or their JSON)."""
    items = [r.to_json() if isinstance(r, DetectorResult) else r for r in items if r]
    combined = combine(items)
    rows = ["| Detector | Verdict | P(manipulated) | Threshold | Checkpoint |", "| --- | --- | --- | --- | --- |"]
    for r in items:
        if r.get("status") == "ok":
            rows.append(f"| {r['title']} | {VERDICT_WORDS[r['label']]} | {r['prob_fake']:.3f} | {r['threshold']:.3f} | "
                        f"`{r['source']}` |")
        else:
            word = {"off": "not run", "error": "failed"}.get(r.get("status"), "not available")
            rows.append(f"| {r['title']} | {word} | \u2013 | \u2013 | \u2013 |")
    note = ("Each detector compares its own probability with its own calibrated threshold; agreement is the share "
            "of detectors on the majority side.")
    return "\n\n".join([f"## Combined verdict: {combined.summary()}", "\n".join(rows), note])


def legend_image(cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """A colour bar that reads every heat map in the app."""
    return colour_legend(f"Map colours ({cmap}): how strongly a region pushed towards 'manipulated'", cmap=cmap)


def similarity_picture(grid: np.ndarray, patch: tuple[int, int]) -> np.ndarray:
    """A patch-similarity grid with the reference patch outlined and a labelled colour bar."""
    return map_panel(grid, f"Similarity to patch row {patch[0] + 1}, column {patch[1] + 1}", "cosine similarity",
                     cmap=DEFAULT_CMAP, vmin=-1, vmax=1, marker=patch)


def mask_picture(mask: np.ndarray) -> np.ndarray:
    """A ground-truth mask drawn in cividis (dark = untouched, yellow = replaced)."""
    return colorize(np.clip(mask, 0, 1), "cividis")


#: Pictures per row in the lab figure (it sits in a narrow card).
LAB_COLUMNS = 3


def lab_figure(crop: np.ndarray, truth: np.ndarray, maps: list[LabMap]) -> np.ndarray:
    """The forged crop, the ground truth and each map beside it, with the truth outlined on the maps."""
    panels = [(crop, "what it saw"), (mask_picture(truth), "forged pixels (truth)")]
    for m in maps:
        auc = m.scores.get("pixel_auc")
        title = f"{m.title}, AUC {auc:.2f}" if auc is not None else m.title
        panels.append((outline_mask(colorize(np.clip(m.heatmap, 0, 1), DEFAULT_CMAP), truth), title))
    rows = [panels[i:i + LAB_COLUMNS] for i in range(0, len(panels), LAB_COLUMNS)]
    return side_by_side([captioned_row(row, colour_bar="map value (0 to 1)",
                                       footer="dashed white line = forged region" if row is rows[-1] else "")
                         for row in rows], gap=0, vertical=True)


def lab_markdown(result: DetectorResult, maps: list[LabMap]) -> str:
    """The sentence beside a lab picture: verdict and how well each map found the forged region."""
    if not result.ok:
        return f"**{result.title}**\n\n" + verdict_markdown(result)
    lines = [f"**{result.title}**: {result.verdict.summary()}"]
    if not maps:
        lines.append("This detector gives no map to compare with the forged region.")
    for m in maps:
        auc, iou = m.scores.get("pixel_auc"), m.scores.get("iou")
        auc_text = f"{auc:.2f}" if auc is not None else "n/a"
        iou_text = f"{iou:.2f}" if iou is not None else "n/a"
        lines.append(f"- {m.title}: pixel AUC **{auc_text}** (0.5 = chance, 1 = perfect), IoU **{iou_text}**")
    return "\n".join(lines)


def lab_table(rows: list[tuple[DetectorResult, list[LabMap]]]) -> str:
    """One line per detector: verdict on the forgery and its best localisation score."""
    out = ["| Detector | Verdict on the forgery | Best map | Pixel AUC | IoU |", "| --- | --- | --- | --- | --- |"]
    for result, maps in rows:
        if not result.ok:
            continue
        best = max(maps, key=lambda m: m.scores.get("pixel_auc") or 0.0, default=None)
        verdict = result.verdict.summary()
        if best is None:
            out.append(f"| {result.title} | {verdict} | \u2013 | \u2013 | \u2013 |")
            continue
        auc, iou = best.scores.get("pixel_auc"), best.scores.get("iou")
        out.append(f"| {result.title} | {verdict} | {best.title} | {'n/a' if auc is None else f'{auc:.2f}'} | "
                   f"{'n/a' if iou is None else f'{iou:.2f}'} |")
    return "\n".join(out)
