"""ProDet's own evidence: attribute probabilities, feature attention, Grad-CAM, and the face's
place on the real -> blendfake -> deepfake path the detector was trained along."""
from __future__ import annotations

import numpy as np
import torch

from detectors.faces import AlignedFace

from .base import BarChart, Explanation
from .charts import hex_shades, message_card, path_plot, shades
from .evidence import gradcam_explanation, verdict_words
from .render import resize_map
from .scales import overlay_panel, scale_for

ATTRIBUTE_WORDS = ("blending traces", "identity inconsistency", "generative artifacts")
#: The heads' names without a claim, for a face the detector calls real.
ATTRIBUTE_NAMES = ("blending", "identity inconsistency", "generative artifacts")
#: The chart's bar labels, short enough for a narrow card.
ATTRIBUTE_SHORT = ("blending", "identity", "generative")
ANCHOR_LABELS = ("real", "self-blend (SBI)", "donor blend (CBI)", "deepfake")
ANCHOR_MARKERS = ("circle", "square", "diamond", "triangle")
#: Anchor colours: cividis samples (dark blue -> grey -> yellow), readable with any colour vision.
ANCHOR_COLOURS = shades((0.0, 1 / 3, 2 / 3, 1.0), "cividis")


def explain(detector, aligned: AlignedFace, x: torch.Tensor, out: dict) -> list[Explanation]:
    """Bar chart of the three attributes, attention map, Grad-CAM and the path plot."""
    aux = out["aux"]
    point = aux["path_xy"][0].detach().cpu().numpy()
    return [attribute_chart(aux["attributes"][0].detach().cpu().numpy(), verdict_words(detector, out),
                            path_place(detector, point)),
            attention_explanation(detector, aligned, aux["attention_map"][0].detach().cpu().numpy()),
            gradcam_explanation(detector, aligned, x, title="Grad-CAM (last feature block)", out=out),
            path_explanation(detector, point, float(out["prob_fake"][0]), verdict_words(detector, out))]


def path_place(detector, point: np.ndarray) -> str | None:
    """Where the face sits on the training path, as words ("closest to the self-blend (SBI)
    centre, position 1.2 of 3"), or None when the checkpoint stores no anchors."""
    if float(detector.anchors_fitted) == 0:
        return None
    nearest, where = path_position(detector.anchor_points().detach().cpu().numpy(), np.asarray(point, np.float64))
    return f"closest to the {ANCHOR_LABELS[nearest]} centre, position {where:.1f} of 3"


def attribute_chart(probs: np.ndarray, verdict: tuple[bool, str] | None = None,
                    place: str | None = None) -> Explanation:
    """The three attribute heads' probabilities as a bar chart; the sentence names a
    kind of trace only when the detector calls the face manipulated (``verdict``: see
    :func:`explain.evidence.verdict_words`; ``place``: :func:`path_place`)."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 0, 1)
    chart = BarChart(list(ATTRIBUTE_SHORT), [float(p) for p in probs], "probability",
                     hex_shades((0.1, 0.5, 0.9), "cividis"))
    strong = [w for w, p in zip(ATTRIBUTE_WORDS, probs) if p >= 0.5]
    if verdict is not None and not verdict[0]:
        heads = ", ".join(f"{n} {p:.0%}" for n, p in zip(ATTRIBUTE_NAMES, probs))
        caption = (f"The detector {verdict[1]}, so its three attribute heads' numbers are not findings ({heads}). "
                   + (f"On the real -> blendfake -> deepfake path it was trained along, this face sits {place}."
                      if place else "This checkpoint stores no path centres to place the face on."))
    else:
        heads = "The detector's three attribute heads: " + ", ".join(
            f"{w} {p:.0%}" for w, p in zip(ATTRIBUTE_WORDS, probs))
        opening = f"The detector {verdict[1]}. " if verdict is not None else ""
        caption = (opening + heads + (". It sees mostly " + " and ".join(strong) + "." if strong
                                      else ". None of the three is above 50%."))
    return Explanation("attributes", "Forgery attributes", None, caption,
                       data={"blending": float(probs[0]), "identity_inconsistency": float(probs[1]),
                             "generative_artifacts": float(probs[2])}, chart=chart)


def attention_explanation(detector, aligned: AlignedFace, attention: np.ndarray) -> Explanation:
    """The channel mean of the sigmoid attention the attributes put on the features, upsampled,
    on the checkpoint's calibrated scale when it has one."""
    raw = np.asarray(attention, dtype=np.float32)
    scale = scale_for(detector, "attention", raw)
    heat = np.clip(resize_map(scale.apply(raw), aligned.image.shape[:2]), 0.0, 1.0)
    caption = (f"Where the attribute heads tell the final classifier to look: brighter cells get more weight "
               f"(attention {raw.min():.2f} to {raw.max():.2f} on a {raw.shape[0]}x{raw.shape[1]} grid over the face). "
               + scale.sentence())
    return Explanation("attention", "Feature attention", overlay_panel(aligned.image, heat, scale), caption,
                       heatmap=heat, data={"attention_min": float(raw.min()), "attention_max": float(raw.max()),
                                           "grid": list(raw.shape), **scale.data()})


def path_position(anchors: np.ndarray, point: np.ndarray) -> tuple[int, float]:
    """The nearest anchor, and the point's position along the polyline real(0) .. deepfake(3)."""
    nearest = int(np.argmin(np.linalg.norm(anchors - point, axis=1)))
    best, where = np.inf, 0.0
    for i in range(len(anchors) - 1):
        a, b = anchors[i], anchors[i + 1]
        seg = b - a
        t = float(np.clip(np.dot(point - a, seg) / max(float(np.dot(seg, seg)), 1e-12), 0, 1))
        d = float(np.linalg.norm(a + t * seg - point))
        if d < best:
            best, where = d, i + t
    return nearest, where


def path_explanation(detector, point: np.ndarray, prob_fake: float,
                     verdict: tuple[bool, str] | None = None) -> Explanation:
    """A 2-D plot of the four anchors' feature centres and this face (fixed PCA plane)."""
    fitted = float(detector.anchors_fitted)
    if fitted == 0:
        return Explanation("path", "Real -> blendfake -> deepfake path", message_card("No anchors stored in this checkpoint"),
                           "This checkpoint has no stored anchor centres, so the face cannot be placed on the path.",
                           data={"fitted": False})
    anchors = detector.anchor_points().detach().cpu().numpy()
    spread = detector.anchor_spread.detach().cpu().numpy()
    point = np.asarray(point, dtype=np.float64)
    picture = path_plot(anchors, ANCHOR_LABELS, ANCHOR_MARKERS, ANCHOR_COLOURS, point,
                        "this face", "Where this face sits on the training path", "path axis 1 (arbitrary units)",
                        "path axis 2")
    nearest, where = path_position(anchors, point)
    how = "fitted on training data after training" if fitted >= 2 else "running averages from training"
    steps = np.linalg.norm(np.diff(anchors, axis=0), axis=1).mean()
    overlap = float(spread[spread > 0].mean() / max(steps, 1e-12)) if (spread > 0).any() else None
    caption = (f"The detector was trained along real -> self-blend -> donor blend -> deepfake. This face's features "
               f"sit closest to the {ANCHOR_LABELS[nearest]} centre (position {where:.1f} of 3 along the path; "
               f"P(fake) {prob_fake:.2f}). Centres: {how}.")
    if verdict is not None:
        caption += (f" The detector {verdict[1]}; the verdict comes from its classifier, not from this position"
                    + (", which only hints at the kind of forgery." if verdict[0] else
                       ", so a place near a forgery centre is not a finding of forgery." if nearest else "."))
    if overlap is not None and overlap > 1:
        caption += (" Faces of one kind scatter more widely than the centres lie apart, so the kinds overlap in "
                    "this model's features: read the position as a rough hint.")
    return Explanation("path", "Real -> blendfake -> deepfake path", picture, caption,
                       data={"fitted": True, "point": point.tolist(), "anchors": anchors.tolist(),
                             "spread": spread.tolist(), "overlap": overlap, "nearest": ANCHOR_LABELS[nearest],
                             "path_position": where})
