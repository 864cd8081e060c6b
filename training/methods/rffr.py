"""RFFR's two stages in one recipe (Shi et al., Pattern Recognition 2024, arXiv:2303.08439).

* ``mim`` (real faces only): the MAE objective — random masking at ``mask_ratio`` (0.75), MSE
  on the masked patches of the [0, 1] image; only the MAE (``model.mim``) is trained.
* ``detector`` (reals + forgeries): cross-entropy of the two-ViT detector, with the paper's
  training-time block sampling (inside ``RFFRDetector.forward`` in train mode); the MAE is
  frozen (not among the trainable parameters, and the residual is computed under no_grad).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .base import Stage, TrainingMethod, register_method


@register_method
class RFFRMethod(TrainingMethod):
    family = "rffr"

    def stages(self) -> list[Stage]:
        return [Stage("mim", data="real_only"), Stage("detector", data="mixed")]

    def trainable_parameters(self, model: nn.Module, stage: Stage) -> Iterable[nn.Parameter]:
        # The MAE's fixed sin-cos position embeddings stay frozen in every stage.
        frozen = {id(model.mim.pos_embed), id(model.mim.decoder_pos_embed)}
        for module in model.stage_modules(stage.name):
            for p in module.parameters():
                if id(p) not in frozen:
                    yield p

    def loss(self, model: nn.Module, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        image = batch["image"]
        if stage.name == "mim":
            rec = model.mim_loss(image)
            return {"loss": rec, "mim_mse": rec.detach()}
        model.mim.eval()  # frozen: no dropout / stochastic depth in the MAE (none by default)
        out = model(image)
        label = batch["label"].to(image.device).long()
        ce = F.cross_entropy(out["logits"].float(), label)
        acc = (out["logits"].argmax(1) == label).float().mean()
        return {"loss": ce, "ce": ce.detach(), "acc": acc.detach(),
                "blocks_kept": torch.tensor(float(out["aux"]["blocks"].numel()))}
