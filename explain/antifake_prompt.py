"""AntifakePrompt's own evidence: the question, the model's answer, P(yes)/P(no), and where it
looked — Grad-CAM on the vision encoder's last block toward "no" (the authors' CAM) and the
Q-Former's cross-attention over the image patches."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from detectors.faces import AlignedFace

from .base import BarChart, Explanation
from .charts import hex_shades
from .evidence import gradcam_explanation
from .render import normalize, resize_map
from .scales import overlay_panel, scale_for

NO = 1  # index of the "no" (= fake) logit in the detector's logits


def answer_chart(p_yes: float, p_no: float) -> BarChart:
    """P(yes)/P(no) of the answer's first word (the question and the answer are in the caption)."""
    return BarChart(["yes (real)", "no (fake)"], [p_yes, p_no], "P(first word)", hex_shades((0.25, 0.85)))


@torch.no_grad()
def cross_attention_map(detector, x: torch.Tensor, raw: bool = False) -> np.ndarray:
    """(g, g) map: the Q-Former's cross-attention from its queries to the image patches (mean
    over layers, heads and queries; the class token left out), scaled to [0, 1] per image or,
    with ``raw``, the attention weights themselves."""
    vlm = detector.vlm
    q_ids, _ = detector.question_ids(x.shape[0], x.device)
    configs = (vlm.qformer.config, vlm.vision_model.config)
    previous = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = "eager"  # attention weights need the eager path
    try:
        feats = vlm.get_image_features(x.to(detector._vlm_dtype()), qformer_input_ids=q_ids, output_attentions=True,
                                       return_dict=True)
    finally:
        for c, p in zip(configs, previous):
            c._attn_implementation = p
    maps = [a for a in (feats.qformer_outputs.cross_attentions or ()) if a is not None]
    if not maps:
        raise RuntimeError("the Q-Former returned no cross-attention weights")
    att = torch.stack([a[0].float() for a in maps]).mean(dim=(0, 1))  # (queries, 1 + patches)
    patches = att[:, 1:].mean(0)
    g = detector.config.input_size // detector.config.patch_size
    grid = patches.reshape(g, g).cpu().numpy()
    return grid.astype(np.float32) if raw else normalize(grid)


def explain(detector, aligned: AlignedFace, x: torch.Tensor, out: dict[str, Any]) -> list[Explanation]:
    """The question and answer with P(yes)/P(no), Grad-CAM toward "no", and the Q-Former's
    cross-attention."""
    cfg = detector.config
    p_yes, p_no = float(out["aux"]["p_yes"][0]), float(out["aux"]["p_no"][0])
    was_training = detector.training
    detector.eval()
    answer = detector.generate_answer(x[:1])[0]
    detector.train(was_training)
    verdict = "fake" if float(out["prob_fake"][0]) >= cfg.threshold else "real"
    question = cfg.prompt
    caption = (f'The detector is asked "{question}", where [*] is a learned word tuned to make the model spot '
               f'forgeries. It answers "{answer}". Looking only at its first answer word, "yes" (real) has '
               f"probability {p_yes:.2f} and \"no\" (fake) {p_no:.2f}, so the fake probability is {p_no:.2f}; "
               f"the verdict is {verdict} at threshold {cfg.threshold:.2f}.")
    said = answer.strip().lower()
    if said.startswith(("yes", "no")) and said.startswith("no") != (verdict == "fake"):
        caption += (" The verdict compares that probability with the calibrated threshold, not the generated word, "
                    "so near the threshold the two can disagree.")
    qa = Explanation("antifake_prompt_answer", "Question and answer", None, caption,
                     data={"question": question, "answer": answer, "p_yes": p_yes, "p_no": p_no},
                     chart=answer_chart(p_yes, p_no))
    size = aligned.image.shape[:2]
    cam = gradcam_explanation(detector, aligned, x[:1].detach().clone().requires_grad_(True),
                              title="Grad-CAM toward \"no\" (fake)", out=out, target_class=NO,
                              where="on the vision encoder's last block", towards='"no" (fake)')
    result = [qa, cam]
    try:
        raw = cross_attention_map(detector, x[:1], raw=True)
        scale = scale_for(detector, "antifake_prompt_attention", raw)
        att = np.clip(resize_map(scale.apply(raw), size), 0.0, 1.0)
        result.append(Explanation("antifake_prompt_attention", "Where the question looked",
                                  overlay_panel(aligned.image, att, scale),
                                  "Bright patches drew the most attention from the Q-Former's queries, which read the "
                                  "image with the question in mind (averaged over layers and heads); attention says "
                                  "where it looked, not what it found. " + scale.sentence(), heatmap=att,
                                  data={"attention_max": float(raw.max()), **scale.data()}))
    except (RuntimeError, AttributeError, TypeError):
        pass  # an attention implementation without weights: the other two maps still stand
    return result
