"""RFFR's two stages in one recipe (Shi et al., Pattern Recognition 2024, arXiv:2303.08439).

* ``mim`` (real faces only): the MAE objective — random masking at ``mask_ratio`` (0.75), MSE
  on the masked patches of the [0, 1] image; only the MAE (``model.mim``) is trained.
  Recipe option ``method.mim_block_fraction`` (default 0, the paper) trains that fraction of
  each batch with the inference-time masking instead (one random 3x3-patch block hidden, 187
  of 196 patches visible): a small MAE trained only at 75 % masking rebuilds worse when it sees
  *more* context (demo: masked MSE 0.033 at 75 %, 0.087 with one block hidden).
* ``detector`` (reals + forgeries): cross-entropy of the two-ViT detector, with the paper's
  training-time block sampling (inside ``RFFRDetector.forward`` in train mode); the MAE is
  frozen (not among the trainable parameters, and the residual is computed under no_grad).
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
class RFFROptions(MethodOptions):
    mim_from: str | None = None  # an earlier run's checkpoint folder to take the MAE from
    init_vits_from_mim: bool = False  # both detector ViTs start from the MAE encoder
    mim_block_fraction: float = 0.0  # share of each ``mim`` batch masked as at inference
    vit_lr_scale: float = 1.0  # the detector ViTs' lr relative to the recipe's (the head gets the recipe's)


@register_method
class RFFRMethod(TrainingMethod):
    family = "rffr"
    options_class = RFFROptions

    def stages(self) -> list[Stage]:
        return [Stage("mim", data="real_only"), Stage("detector", data="mixed")]

    def trainable_parameters(self, model: nn.Module, stage: Stage) -> Iterable[dict[str, Any]]:
        """``mim``: the MAE but its fixed sin-cos position tables. ``detector``: two groups, the
        ViTs at ``vit_lr_scale`` (pretrained towers are fine-tuned gently) and the head."""
        if stage.name == "mim":
            frozen = {id(model.mim.pos_embed), id(model.mim.decoder_pos_embed)}
            return [{"params": [p for p in model.mim.parameters() if id(p) not in frozen]}]
        self._prepare_detector_stage(model)
        vit_params = [p for vit in (model.image_vit, model.residual_vit) for p in vit.parameters()]
        ids = {id(p) for p in vit_params}
        vits = [p for p in vit_params if p.requires_grad]
        rest = [p for m in model.stage_modules(stage.name) for p in m.parameters() if id(p) not in ids]
        return [{"params": vits, "lr_scale": self.options.vit_lr_scale}, {"params": rest}]

    def _prepare_detector_stage(self, model: nn.Module) -> None:
        """Method options (recipe ``method:``), applied once at the start of stage 2:

        ``mim_from: FOLDER`` loads the MAE (``mim.*`` tensors) from an earlier run's checkpoint
        (e.g. ``runs/rffr/stages/mim``) so a recipe can skip stage 1 with ``stages.mim.epochs=0``;
        ``init_vits_from_mim: true`` starts both detector ViTs from the MAE encoder. A resumed
        run does neither again (the model's ``vits_from_mim`` flag and weights are restored).
        """
        if float(model.vits_from_mim) > 0:
            return
        source = self.options.mim_from
        if source:
            from pathlib import Path

            from detectors.weight_files import read_state

            state = read_state(Path(source))
            mim = {k[len("mim."):]: v for k, v in state.items() if k.startswith("mim.")}
            model.mim.load_state_dict(mim, strict=True)
        if self.options.init_vits_from_mim and not model.init_vits_from_mim():
            raise ValueError("init_vits_from_mim needs vit_dim/depth/heads equal to the MAE encoder's "
                             "and the linear patch stem (model.patch_stem=linear)")

    def loss(self, model: nn.Module, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        image = batch["image"]
        if stage.name == "mim":
            rec = model.mim_loss(image, self.options.mim_block_fraction)
            return {"loss": rec, "mim_mse": rec.detach()}
        model.mim.eval()  # frozen: no dropout / stochastic depth in the MAE (none by default)
        out = model(image)
        label = batch["label"].to(image.device).long()
        ce = F.cross_entropy(out["logits"].float(), label)
        acc = (out["logits"].argmax(1) == label).float().mean()
        return {"loss": ce, "ce": ce.detach(), "acc": acc.detach(),
                "blocks_kept": torch.tensor(float(out["aux"]["blocks"].numel()))}
