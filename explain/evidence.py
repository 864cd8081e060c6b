"""Explain one detector's decision on one aligned face.

Each detector family may ship ``explain/<family>.py`` with a function
``explain(detector, aligned, x, out) -> list[Explanation]`` (its own evidence plus Grad-CAM);
families without one get plain Grad-CAM.
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from detectors.faces import AlignedFace

from .base import Explanation
from .gradcam import grad_cam
from .render import resize_map
from .scales import overlay_panel, scale_for

ExplainFn = Callable[[Any, AlignedFace, torch.Tensor, dict], list[Explanation]]


def verdict_words(detector, out: dict | None) -> tuple[bool, str] | None:
    """``(called fake, "calls this face fake (P(fake) 0.81, at or above its threshold 0.50)")``
    from the verdict's own forward output, or ``None`` without one."""
    if out is None or "prob_fake" not in out:
        return None
    prob = float(out["prob_fake"][0])
    threshold = float(detector.config.threshold)
    fake = prob >= threshold
    return fake, (f"calls this face {'fake' if fake else 'real'} (P(fake) {prob:.2f}, "
                  f"{'at or above' if fake else 'below'} its threshold {threshold:.2f})")


def gradcam_caption(detector, out: dict | None, where: str = "on the last feature block",
                    towards: str = "'fake'") -> str:
    """What a Grad-CAM map means, worded after the detector's verdict."""
    verdict = verdict_words(detector, out)
    if verdict is None:
        return f"Bright areas pushed the decision towards {towards} the most (Grad-CAM {where})."
    fake, words = verdict
    if fake:
        return f"The detector {words}. Bright areas pushed it towards {towards} the most (Grad-CAM {where})."
    return (f"The detector {words}. Grad-CAM ({where}) shows which areas would push it towards {towards}; "
            "none pushed enough to change the verdict, so bright here is not a finding of forgery.")


def gradcam_explanation(detector, aligned: AlignedFace, x: torch.Tensor, title: str = "Grad-CAM",
                        forward: Callable[[torch.Tensor], dict] | None = None, out: dict | None = None,
                        where: str = "on the last feature block", towards: str = "'fake'",
                        target_class: int = 1) -> Explanation:
    """Grad-CAM toward ``target_class`` (1 = fake) over the crop, on the checkpoint's calibrated
    scale when it has one (``forward``: see :func:`grad_cam`; ``out``: the verdict's forward
    output, for a caption that follows the verdict)."""
    raw = grad_cam(detector, x, target_class=target_class, forward=forward, raw=True)
    scale = scale_for(detector, "gradcam", raw)
    heat = np.clip(resize_map(scale.apply(raw), aligned.image.shape[:2]), 0.0, 1.0)
    caption = gradcam_caption(detector, out, where, towards) + " " + scale.sentence()
    return Explanation("gradcam", title, overlay_panel(aligned.image, heat, scale), caption, heatmap=heat,
                       data={"cam_max": float(raw.max()), "cam_mean": float(raw.mean()), **scale.data()})


def _family_explainer(family: str) -> ExplainFn | None:
    module = f"explain.{family}"
    if family and importlib.util.find_spec(module) is not None:
        return getattr(importlib.import_module(module), "explain", None)
    return None


def explain(detector, aligned: AlignedFace) -> tuple[dict, list[Explanation]]:
    """Run ``detector`` on ``aligned`` and collect its explanations.

    Returns the forward output (detached) and the explanations.
    """
    x = detector.preprocess(aligned)
    detector.eval()
    with torch.no_grad():
        out = detector(x)
    return out, explanations_for(detector, aligned, x, out)


def explanations_for(detector, aligned: AlignedFace, x: torch.Tensor, out: dict) -> list[Explanation]:
    """The family's explanations of a forward output already computed (``Detector.decide_face``'s),
    Grad-CAM alone for a family without its own explainer."""
    fn = _family_explainer(detector.family)
    return fn(detector, aligned, x, out) if fn else [gradcam_explanation(detector, aligned, x, out=out)]


def as_heatmap_at(explanation: Explanation, size: tuple[int, int]) -> np.ndarray | None:
    """The explanation's raw map resized to ``size`` (for scoring against masks), if it has one."""
    return None if explanation.heatmap is None else resize_map(explanation.heatmap, size)
