"""VLFFD's own evidence: the sentence it finds most likely, a per-region score map, Grad-CAM."""
from __future__ import annotations

from typing import Any

import numpy as np

from detectors.faces import AlignedFace, region_mask
from detectors.vlffd import PART_NAMES

from .base import BarChart, Explanation
from .charts import hex_shades
from .evidence import gradcam_explanation
from .render import DEFAULT_CMAP
from .scales import MapScale, fixed, overlay_panel, scale_for

WHOLE_FACE = "face"


def region_scores(detector, out: dict, index: int = 0, source: str = "sentences") -> dict[str, float]:
    """Per-region scores of sample ``index``: ``sentences`` (probability mass of the candidate
    sentences naming the region) or ``head`` (the region head's sigmoid)."""
    key = "region_scores" if source == "sentences" else "region_probs"
    values = out["aux"][key][index].detach().float().cpu().numpy()
    return {r: float(v) for r, v in zip(detector.config.regions, values)}


def region_map(landmarks: np.ndarray, scores: dict[str, float], size: tuple[int, int]) -> np.ndarray:
    """(H, W) map in [0, 1]: every region's mask painted with its score (max where they meet);
    the whole-face score is the floor over the face oval."""
    heat = np.zeros(size, np.float32)
    pts = np.asarray(landmarks, np.float32)
    if pts.size == 0 or not np.isfinite(pts).all() or np.ptp(pts, axis=0).min() < 2.0:
        return heat  # no usable landmarks (no face found on the crop): nothing to paint
    if WHOLE_FACE in scores:
        heat = np.maximum(heat, scores[WHOLE_FACE] * region_mask(landmarks, WHOLE_FACE, size))
    for region, score in scores.items():
        if region != WHOLE_FACE:
            heat = np.maximum(heat, float(score) * region_mask(landmarks, region, size, soft=True))
    return np.clip(heat, 0.0, 1.0)


def _bar_chart(scores: dict[str, float]) -> BarChart:
    """The parts, highest score first."""
    ranked = sorted(scores.items(), key=lambda kv: -float(kv[1]))
    labels = [PART_NAMES.get(n, n.replace("_", " ")) for n, _ in ranked]
    values = [float(v) for _, v in ranked]
    return BarChart(labels, values, "share", hex_shades(np.clip(values, 0, 1), DEFAULT_CMAP))


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def stands_out(score: float, scores: dict[str, float], scale: MapScale | None = None) -> bool:
    """Whether a region score is above what a real face shows: past the middle of the calibrated
    range (median .. 99th percentile of real faces), or without one 0.05 above this face's median."""
    if scale is not None and scale.calibrated:
        return float(scale.apply(np.float32(score))) >= 0.5
    return score - float(np.median(list(scores.values()))) >= 0.05


def verdict_caption(detector, out: dict[str, Any], top: list[tuple[str, float]], scores: dict[str, float],
                    scale: MapScale | None = None) -> str:
    """The region map's sentence: which number decides, and what the sentence head says, worded
    after the verdict (on a face called real the parts are only "if it were forged")."""
    prob = float(out["prob_fake"][0])
    threshold = float(detector.config.threshold)
    fake = prob >= threshold
    text_fake = float(out["aux"]["text_prob_fake"][0])
    head = (f"Verdict: {'fake' if fake else 'real'}, from the classification head alone (P(fake) {prob:.2f}, "
            f"{'at or above' if fake else 'below'} the threshold {threshold:.2f}). The sentence head is a separate "
            f"reading that does not decide the verdict: it gives {text_fake:.2f} in total to sentences that call "
            f"the face forged.")
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    parts = [PART_NAMES.get(r, r.replace("_", " ")) for r, _ in ranked[:2]]
    values = ", ".join(f"{v:.2f}" for _, v in ranked[:2])
    if fake:
        sentence, p_sentence = top[0]
        alternatives = "; ".join(f'"{s}" ({p:.0%})' for s, p in top[1:])
        return (head + f' The sentence that matches this face best: "{sentence}" ({p_sentence:.0%})'
                + (f"; next: {alternatives}" if alternatives else "") + ". Brighter parts of the face are named in "
                f"more of the likely sentences (most: the {_listed(parts)}, region scores {values}).")
    if not stands_out(ranked[0][1], scores, scale):
        low, high = min(scores.values()), max(scores.values())
        return (head + f" No part stands out: every region score is between {low:.2f} and {high:.2f}, as on typical "
                "real faces.")
    return (head + f" If the face were forged, the most likely parts would be the {_listed(parts)} (region scores "
            f"{values}); brighter parts are named in more of the likely sentences.")


def explain(detector, aligned: AlignedFace, x, out: dict[str, Any]) -> list[Explanation]:
    """Sentence + region map, region bar chart, and Grad-CAM toward 'fake'."""
    prob = float(out["prob_fake"][0])
    top = detector.describe(out, 0, top_k=3)
    sentence, p_sentence = top[0]
    scores = region_scores(detector, out)
    size = aligned.image.shape[:2]
    values = np.asarray(list(scores.values()), np.float32)
    scale = scale_for(detector, "vlffd_regions", values, fixed(0.0, 1.0, "share of sentence probability"))
    shown_scores = dict(zip(scores, (float(v) for v in scale.apply(values))))
    heat = region_map(aligned.landmarks, shown_scores, size)
    fake = prob >= detector.config.threshold
    caption = verdict_caption(detector, out, top, scores, scale) + " " + scale.sentence()
    data = {"verdict": "fake" if fake else "real",
            "verdict_uses": "prob_fake of the classification head (not the sentence head)",
            "prob_fake": prob, "threshold": float(detector.config.threshold),
            "sentence_head_prob_fake": float(out["aux"]["text_prob_fake"][0]),
            "sentence": sentence, "sentence_prob": p_sentence, "top_sentences": top,
            "region_scores": scores, **scale.data()}
    if "region_probs" in out["aux"]:
        data["region_head"] = region_scores(detector, out, source="head")
    sentence_map = Explanation("vlffd_regions", "Parts named by the sentence head",
                               overlay_panel(aligned.image, heat, scale, cmap=DEFAULT_CMAP), caption, heatmap=heat,
                               data=data)
    bars = Explanation("vlffd_region_bars", "Region scores", None,
                       "For each facial part: how much of the sentence head's probability goes to sentences that say "
                       "this part was forged (0 = none, 1 = all). These scores come from the sentence head, not from "
                       "the verdict's classification head" + ("." if fake else
                                                              "; this face is called real, so they say where a forgery "
                                                              "would most likely be, not that one was found."),
                       data={"region_scores": scores}, chart=_bar_chart(scores))
    return [sentence_map, bars, gradcam_explanation(detector, aligned, x, out=out)]
