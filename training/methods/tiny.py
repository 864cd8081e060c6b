"""Plain cross-entropy for the hidden ``tiny_test`` detector (engine tests)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import TrainingMethod, register_method


@register_method
class TinyMethod(TrainingMethod):
    family = "tiny"

    def loss(self, model: nn.Module, batch: dict[str, Any], stage) -> dict[str, torch.Tensor]:
        out = model(batch["image"])
        loss = F.cross_entropy(out["logits"].float(), batch["label"])
        acc = (out["logits"].argmax(-1) == batch["label"]).float().mean()
        return {"loss": loss, "acc": acc.detach()}
