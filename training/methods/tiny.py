"""Plain cross-entropy for the hidden ``tiny_test`` detector (engine tests).

``method: {stages: [{name: warmup, data: real_only}, {name: main}]}`` in a recipe gives it
several stages, so the engine's multi-stage path can be tested without a big model; a
``real_only`` stage trains only the convolutional body.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import MethodOptions, Stage, TrainingMethod, register_method


@dataclass
class TinyOptions(MethodOptions):
    stages: list[dict[str, str]] | None = None  # [{name, data}] in order; one ``main`` stage when unset


@register_method
class TinyMethod(TrainingMethod):
    family = "tiny"
    options_class = TinyOptions

    def stages(self) -> list[Stage]:
        spec = self.options.stages
        if not spec:
            return [Stage()]
        return [Stage(s["name"], s.get("data", "mixed")) for s in spec]

    def trainable_parameters(self, model: nn.Module, stage: Stage) -> Iterable[nn.Parameter]:
        return model.body.parameters() if stage.data == "real_only" else model.parameters()

    def loss(self, model: nn.Module, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        out = model(batch["image"])
        loss = F.cross_entropy(out["logits"].float(), batch["label"])
        acc = (out["logits"].argmax(-1) == batch["label"]).float().mean()
        return {"loss": loss, "acc": acc.detach()}
