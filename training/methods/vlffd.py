"""VLFFD's Coarse-and-Fine co-training (C2F), reconstructed from arXiv:2307.16545.

One stage on mixed data. Every sample trains the coarse real/fake head (cross-entropy on two
logits, the softmax form of BCE). Samples of the *fine* kinds — region forgeries with their
sentence (PFIG's mixed images) and real faces ("This face is real.") — also train the
image-text alignment: a symmetric InfoNCE between image and sentence embeddings at the
model's learnable temperature. Coarse-only kinds (SBI/donor blends, autoencoder deepfakes)
have no sentence in the paper's sense and skip that term.

``L = cls_weight * L_cls + itc_weight * L_itc + region_weight * L_region`` with the paper-free
defaults 1.0 / 1.0 / 0.0 (METHODS.md's reconstruction; the weights could not be checked in the
paper text from here). ``L_region`` is an optional multi-label BCE of the region head against
the ``regions`` multi-hot vector, on fine samples only (coarse fakes have no region labels).

Recipe ``method:`` keys: ``cls_weight``, ``itc_weight``, ``region_weight``, ``fine_kinds``
(kind names, default ``[real, region]``), ``freeze_text`` (train only the image side),
``backbone_lr_scale`` (the towers' lr relative to the recipe's, which the heads and the
temperature use; the paper's 1e-5 vs 1e-4 is 0.1),
``init_pretrained_clip`` (fill the towers from the config's ``pretrained_weights`` first;
needs the Hub, for ``full``), ``stages`` (names of successive C2F stages, default ``[c2f]``; the
recipe's ``stages:`` section sets each one's steps, lr and data mix) and ``stage_weights``
(per-stage overrides of the three loss weights, e.g. ``{warmup: {itc_weight: 0}}``). The demo
uses stages as a curriculum for its from-scratch towers; the paper trains one stage.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from training.data import kinds
from training.methods.base import Stage, TrainingMethod, register_method


def symmetric_infonce(image: torch.Tensor, sentences: list[str], text: torch.Tensor, scale: torch.Tensor
                      ) -> torch.Tensor:
    """InfoNCE both ways between normalised image embeddings (N, D) and the embeddings of the
    batch's *distinct* sentences (U, D); ``sentences[i]`` is image ``i``'s sentence, and the
    rows of ``text`` follow the order of first appearance in ``sentences``.

    A sentence shared by several images (every real face) is one text with several positives:
    image->text is plain cross-entropy; text->image averages the log-likelihood over positives.
    """
    unique = list(dict.fromkeys(sentences))
    index = torch.tensor([unique.index(s) for s in sentences], device=image.device)
    logits = scale * image @ text.t()  # (N, U)
    i2t = F.cross_entropy(logits, index)
    positives = F.one_hot(index, len(unique)).t().float()  # (U, N)
    log_p = logits.t().log_softmax(dim=1)
    t2i = -((log_p * positives).sum(1) / positives.sum(1)).mean()
    return (i2t + t2i) / 2


LOSS_WEIGHTS = ("cls_weight", "itc_weight", "region_weight")


@register_method
class VlffdMethod(TrainingMethod):
    family = "vlffd"

    def __init__(self, recipe: dict[str, Any] | None = None) -> None:
        super().__init__(recipe)
        opts = dict(self.recipe.get("method") or {})
        self.cls_weight = float(opts.get("cls_weight", 1.0))
        self.itc_weight = float(opts.get("itc_weight", 1.0))
        self.region_weight = float(opts.get("region_weight", 0.0))
        names = opts.get("fine_kinds", ["real", "region"])
        self.fine_kinds = [kinds.KIND_CODES[n] for n in names]
        self.freeze_text = bool(opts.get("freeze_text", False))
        self.init_pretrained_clip = bool(opts.get("init_pretrained_clip", False))
        self.backbone_lr_scale = float(opts.get("backbone_lr_scale", 1.0))
        self.stage_names = [str(n) for n in opts.get("stages", ["c2f"])]
        self.stage_weights = {str(k): dict(v or {}) for k, v in (opts.get("stage_weights") or {}).items()}
        self._check_stage_options()
        self._initialised = False

    def _check_stage_options(self) -> None:
        if not self.stage_names or len(set(self.stage_names)) != len(self.stage_names):
            raise ValueError(f"vlffd: method.stages must name distinct stages, got {self.stage_names}")
        unknown_stages = sorted(set(self.stage_weights) - set(self.stage_names))
        if unknown_stages:
            raise ValueError(f"vlffd: method.stage_weights names stage(s) {unknown_stages} not in method.stages")
        for name, weights in self.stage_weights.items():
            unknown = sorted(set(weights) - set(LOSS_WEIGHTS))
            if unknown:
                raise ValueError(f"vlffd: method.stage_weights.{name} has unknown key(s) {unknown}; "
                                 f"choose from {list(LOSS_WEIGHTS)}")

    def stages(self) -> list[Stage]:
        return [Stage(name, "mixed", dict(self.stage_weights.get(name, {}))) for name in self.stage_names]

    def weights(self, stage: Stage) -> tuple[float, float, float]:
        """``(cls, itc, region)`` loss weights of one stage: its overrides, else the recipe's."""
        cls_weight, itc_weight, region_weight = (float(stage.options.get(key, getattr(self, key)))
                                                 for key in LOSS_WEIGHTS)
        return cls_weight, itc_weight, region_weight

    def trainable_parameters(self, model: nn.Module, stage: Stage) -> Iterable[dict[str, Any]]:
        """Two groups: the towers (at ``backbone_lr_scale``) and the heads + temperature."""
        self._maybe_init(model)
        towers = list(model.vision.parameters()) + ([] if self.freeze_text else list(model.text.parameters()))
        frozen = {id(p) for p in model.text.parameters()} if self.freeze_text else set()
        tower_ids = {id(p) for p in towers}
        heads = [p for p in model.parameters() if id(p) not in tower_ids and id(p) not in frozen]
        return [{"params": [p for p in towers if p.requires_grad], "lr_scale": self.backbone_lr_scale},
                {"params": [p for p in heads if p.requires_grad]}]

    def _maybe_init(self, model: nn.Module) -> None:
        if self.init_pretrained_clip and not self._initialised:
            model.load_pretrained_clip()
        self._initialised = True

    def fine_mask(self, batch: dict[str, Any]) -> torch.Tensor:
        """Which samples carry a sentence for the image-text task."""
        kind = batch["kind"]
        fine = torch.zeros_like(kind, dtype=torch.bool)
        for code in self.fine_kinds:
            fine |= kind == code
        has_text = torch.tensor([bool(s) for s in batch["sentence"]], device=kind.device)
        return fine & has_text

    def loss(self, model: nn.Module, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        cls_weight, itc_weight, region_weight = self.weights(stage)
        out = model(batch["image"], sentences=False)
        label = batch["label"].long()
        parts: dict[str, torch.Tensor] = {"cls": F.cross_entropy(out["logits"].float(), label)}
        fine = self.fine_mask(batch)
        zero = out["logits"].sum() * 0.0
        parts["itc"] = zero
        parts["region"] = zero
        n_fine = int(fine.sum())
        if itc_weight and n_fine >= 2:
            idx = fine.nonzero().flatten().tolist()
            sentences = [batch["sentence"][i] for i in idx]
            text = model.encode_text(list(dict.fromkeys(sentences)))
            parts["itc"] = symmetric_infonce(out["aux"]["image_embeds"][fine], sentences, text, model.temperature_scale)
        if region_weight and n_fine and "region_logits" in out["aux"]:
            target = batch["regions"].float()[fine]
            parts["region"] = F.binary_cross_entropy_with_logits(out["aux"]["region_logits"][fine].float(), target)
        total = cls_weight * parts["cls"] + itc_weight * parts["itc"] + region_weight * parts["region"]
        with torch.no_grad():
            parts["temperature"] = 1.0 / model.temperature_scale.detach()
            parts["acc"] = (out["logits"].argmax(-1) == label).float().mean()
        return {"loss": total, **parts}
