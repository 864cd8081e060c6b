"""VLFFD's own evidence: the sentence it finds most likely, a per-region score map, Grad-CAM."""
from __future__ import annotations

from typing import Any

import numpy as np

from detectors.faces import AlignedFace, region_mask
from detectors.vlffd import PART_NAMES

from .base import Explanation
from .charts import bar_chart
from .pipeline import gradcam_explanation
from .render import DEFAULT_CMAP, heatmap_overlay

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


def _bar_chart(scores: dict[str, float]) -> np.ndarray:
    labels = [PART_NAMES.get(n, n.replace("_", " ")) for n in scores]
    return bar_chart(labels, list(scores.values()), "Which parts does it call forged?", "share of sentence probability",
                     cmap=DEFAULT_CMAP)


def explain(detector, aligned: AlignedFace, x, out: dict[str, Any]) -> list[Explanation]:
    """Sentence + region map, region bar chart, and Grad-CAM toward 'fake'."""
    prob = float(out["prob_fake"][0])
    top = detector.describe(out, 0, top_k=3)
    sentence, p_sentence = top[0]
    scores = region_scores(detector, out)
    size = aligned.image.shape[:2]
    heat = region_map(aligned.landmarks, scores, size)
    verdict = "fake" if prob >= detector.config.threshold else "real"
    alternatives = "; ".join(f'"{s}" ({p:.0%})' for s, p in top[1:])
    caption = (f'Verdict: {verdict} (fake probability {prob:.2f}, threshold {detector.config.threshold:.2f}). '
               f'The sentence that matches this face best: "{sentence}" ({p_sentence:.0%}); next: {alternatives}. '
               "Brighter parts of the face are named in more of the likely sentences.")
    data = {"prob_fake": prob, "sentence": sentence, "sentence_prob": p_sentence, "top_sentences": top,
            "region_scores": scores, "text_prob_fake": float(out["aux"]["text_prob_fake"][0])}
    if "region_probs" in out["aux"]:
        data["region_head"] = region_scores(detector, out, source="head")
    sentence_map = Explanation("vlffd_regions", "Forged parts, in words", heatmap_overlay(aligned.image, heat, cmap=DEFAULT_CMAP),
                               caption, heatmap=heat, data=data)
    bars = Explanation("vlffd_region_bars", "Region scores", _bar_chart(scores),
                       "For each facial part: how much of the sentence probability goes to sentences that say "
                       "this part was forged (0 = none, 1 = all).", data={"region_scores": scores})
    return [sentence_map, bars, gradcam_explanation(detector, aligned, x)]
