"""Locate-and-Verify training: verdict CE + patch-location CE, mixup, and SSPSL.

From the authors' ``train.py`` / ``train_semi.py`` (sccsok/Locate-and-Verify), in our words:

- ``L = CE(cls) + CE(seg, mask max-pooled to the G x G grid and binarised)``, weight 1:1.
- Mixup of images and masks: with probability 0.5, lambda ~ Beta(1, 1) (else 1); both losses
  are mixed with the same lambda between each sample and a shuffled partner.
- Semi-supervised patch similarity learning (SSPSL) for forgeries without masks: patch
  embeddings from the projection head; a fake patch's pseudo-label is 1 when its cosine
  similarity to the mean fake embedding (the mean weighted by a region prior) beats its
  similarity to the mean real embedding; real patches are 0; the seg head learns these labels
  with CE.

What we add or choose where the code is silent or does not fit our data:

- The batch says which samples have masks: reals always (their mask is all-zero by
  definition), fakes when ``mask.sum() > 0``. Seg CE uses those; SSPSL pseudo-labels only the
  fakes without masks (DeepfakeBench JSON data). Batches with such fakes are not mixed,
  as ``train_semi.py`` does not mix.
- The region prior of the pseudo-labels is a fixed central box of the aligned crop
  (``prior_box``, fractions of the side), not a dlib-68 box around one organ. Our batches carry
  no landmarks, and aligned crops put the inner face in the centre.
- Our masks are soft (feathered blends), so pooled masks are binarised at ``mask_threshold``
  (default 0.1) rather than at > 0.
- In the authors' code the projection head gets no gradient: pseudo-labels are a comparison.
  That contradicts the paper's "patch similarity" learning and leaves the similarity
  explanation on random projections. So a prototype-contrastive term (``sim_weight``) pulls each
  patch embedding towards the mean embedding of its (true or pseudo) class and away from the
  other, with temperature ``sim_temperature``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from detectors.patch_grid import patch_similarity

from .base import MethodOptions, MethodOptionsError, Stage, TrainingMethod, register_method


@dataclass
class LavOptions(MethodOptions):
    mixup_prob: float = 0.5  # the authors flip a fair coin per batch
    mixup_alpha: float = 1.0
    seg_weight: float = 1.0
    sspsl_weight: float = 1.0
    sim_weight: float = 0.1
    sim_temperature: float = 0.1
    mask_threshold: float = 0.1
    prior_box: tuple[float, ...] = (0.2, 0.8)

    def check(self, where: str) -> None:
        if len(self.prior_box) != 2:
            raise MethodOptionsError(f"{where}.prior_box must be two numbers (low, high), got {list(self.prior_box)}")


def has_mask(batch: dict[str, Any]) -> torch.Tensor:
    """(B,) bool: the sample's patch labels are known (reals, and fakes whose mask is non-empty)."""
    label = batch["label"]
    mask = batch.get("mask")
    if mask is None:
        return label == 0
    return (label == 0) | (mask.flatten(1).sum(1) > 0)


def prior_grid(grid: int, box: tuple[float, float], device: torch.device) -> torch.Tensor:
    """(G, G) float: 1 inside the central prior box, 0 outside."""
    centres = (torch.arange(grid, device=device, dtype=torch.float32) + 0.5) / grid
    inside = (centres >= box[0]) & (centres <= box[1])
    return (inside[:, None] & inside[None, :]).float()


def sspsl_pseudo_labels(embeddings: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Pseudo patch labels (B, G, G) from the authors' similarity rule, without gradient.

    Real patches: 0. Fake patch: 1 if cos(e, mean fake, prior-weighted) > cos(e, mean real).
    With no reals (or no fakes) in the batch every fake patch inside the prior gets 1.
    """
    with torch.no_grad():
        unit = F.normalize(embeddings.float(), dim=1)  # (B, D, G, G)
        e = unit.permute(0, 2, 3, 1)  # (B, G, G, D)
        out = torch.zeros(e.shape[:3], dtype=torch.long, device=e.device)
        fake, real = labels > 0, labels == 0
        if not fake.any():
            return out
        if not real.any():
            out[fake] = (prior > 0).long().expand(int(fake.sum()), -1, -1)
            return out
        fe = e[fake]  # (F, G, G, D)
        fake_mean = (fe * prior[None, :, :, None]).sum((0, 1, 2)) / fe.shape[0] / prior.numel()
        real_mean = e[real].reshape(-1, e.shape[-1]).mean(0)
        n = fe.shape[0]
        to_fake = patch_similarity(unit[fake], fake_mean.expand(n, -1))
        to_real = patch_similarity(unit[fake], real_mean.expand(n, -1))
        out[fake] = (to_fake > to_real).long()
        return out


def prototype_similarity_loss(embeddings: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                              temperature: float) -> torch.Tensor:
    """Patch embeddings pulled towards their class's mean embedding and away from the other's.

    ``targets`` (B, G, G) in {0, 1}; ``weight`` (B,) per-sample weight (0 drops a sample).
    Needs both classes among the weighted patches, else 0.
    """
    e = F.normalize(embeddings.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1])
    t = targets.reshape(-1)
    w = weight[:, None, None].expand_as(targets).reshape(-1)
    keep = w > 0
    if not (keep & (t == 1)).any() or not (keep & (t == 0)).any():
        return embeddings.sum() * 0.0
    protos = torch.stack([F.normalize(e[keep & (t == c)].mean(0), dim=0) for c in (0, 1)])  # (2, D)
    logits = e @ protos.T / temperature
    per_patch = F.cross_entropy(logits, t, reduction="none")
    return (per_patch * w).sum() / w.sum()


def _masked_ce(seg_logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Patch CE averaged over the samples with weight > 0 (weight scales each sample)."""
    per = F.cross_entropy(seg_logits.float(), targets, reduction="none").mean((1, 2))  # (B,)
    if not (weight > 0).any():
        return seg_logits.sum() * 0.0
    return (per * weight).sum() / (weight > 0).sum()


@register_method
class LavMethod(TrainingMethod):
    family = "lav"
    options_class = LavOptions

    def stages(self) -> list[Stage]:
        return [Stage("main", "mixed")]

    def trainable_parameters(self, model, stage: Stage):
        """Two groups as timm's ``add_weight_decay`` (the authors' optimiser): no decay on biases,
        BN and other 1-D parameters (LFGA's gamma)."""
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def loss(self, model, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        opt = self.options
        image, label = batch["image"], batch["label"].long()
        b = image.shape[0]
        mask = batch.get("mask")
        if mask is None:
            mask = torch.zeros(b, 1, *image.shape[-2:], device=image.device)
        known = has_mask(batch)
        grid_labels = model.mask_to_grid(mask, opt.mask_threshold)  # (B, G, G)

        lam, perm = 1.0, torch.arange(b, device=image.device)
        if bool(known.all()) and np.random.rand() < opt.mixup_prob:
            lam = float(np.random.beta(opt.mixup_alpha, opt.mixup_alpha))
            perm = torch.randperm(b, device=image.device)
            image = lam * image + (1 - lam) * image[perm]

        out = model(image)
        aux = out["aux"]
        logits, seg, emb = out["logits"], aux["seg_logits"], aux["patch_embeddings"]
        ones = torch.ones(b, device=image.device)

        loss_cls = lam * F.cross_entropy(logits.float(), label) + (1 - lam) * F.cross_entropy(logits.float(), label[perm])
        kw = known.float()
        loss_seg = lam * _masked_ce(seg, grid_labels, kw) + (1 - lam) * _masked_ce(seg, grid_labels[perm], kw[perm])

        unlabelled = (~known) & (label > 0)
        prior = prior_grid(model.grid_size, tuple(opt.prior_box), image.device)
        if unlabelled.any():
            pseudo = sspsl_pseudo_labels(emb, label, prior)
            loss_sspsl = _masked_ce(seg, pseudo, unlabelled.float())
            targets = torch.where(unlabelled[:, None, None], pseudo, grid_labels)
        else:
            loss_sspsl = seg.sum() * 0.0
            targets = grid_labels
        # The similarity term needs unmixed patch labels: with mixup, each sample keeps its own
        # label only when lambda dominates, so only lambda >= 0.5 batches contribute.
        sim_on = ones if lam >= 0.5 else ones * 0.0
        loss_sim = prototype_similarity_loss(emb, targets, sim_on, opt.sim_temperature)

        loss = (loss_cls + opt.seg_weight * loss_seg + opt.sspsl_weight * loss_sspsl + opt.sim_weight * loss_sim)
        return {"loss": loss, "cls": loss_cls.detach(), "seg": loss_seg.detach(), "sspsl": loss_sspsl.detach(),
                "sim": loss_sim.detach()}
