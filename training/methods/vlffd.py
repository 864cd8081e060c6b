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

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.data import kinds
from training.methods.base import MethodOptions, MethodOptionsError, Stage, TrainingMethod, register_method


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


@dataclass
class VlffdOptions(MethodOptions):
    cls_weight: float = 1.0
    itc_weight: float = 1.0
    region_weight: float = 0.0
    fine_kinds: list[str] = field(default_factory=lambda: ["real", "region"])  # kinds that get a sentence
    freeze_text: bool = False
    init_pretrained_clip: bool = False
    backbone_lr_scale: float = 1.0
    stages: list[str] = field(default_factory=lambda: ["c2f"])
    stage_weights: dict[str, dict[str, float]] = field(default_factory=dict)  # per-stage loss weights

    def check(self, where: str) -> None:
        unknown = sorted(set(self.fine_kinds) - set(kinds.KIND_CODES))
        if unknown:
            raise MethodOptionsError(f"{where}.fine_kinds has unknown kind(s) {unknown}; "
                                     f"choose from {sorted(kinds.KIND_CODES)}")


@register_method
class VlffdMethod(TrainingMethod):
    family = "vlffd"
    options_class = VlffdOptions

    def __init__(self, recipe: dict[str, Any] | None = None) -> None:
        super().__init__(recipe)
        opts = self.options
        self.cls_weight, self.itc_weight, self.region_weight = opts.cls_weight, opts.itc_weight, opts.region_weight
        self.fine_kinds = [kinds.KIND_CODES[n] for n in opts.fine_kinds]
        self.freeze_text = opts.freeze_text
        self.init_pretrained_clip = opts.init_pretrained_clip
        self.backbone_lr_scale = opts.backbone_lr_scale
        self.stage_names = list(opts.stages)
        self.stage_weights = {k: dict(v) for k, v in opts.stage_weights.items()}
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
