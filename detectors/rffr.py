"""RFFR: a real-face foundation representation learned by masked image modeling.

Paper: L. Shi, J. Zhang, Z. Ji, J. Bai, S. Shan, "Real Face Foundation Representation Learning
for Generalized Deepfake Detection", Pattern Recognition 2024/25, arXiv:2303.08439
(authors' code: github.com/shiliang26/RFFR). Summary in ``../shared/METHODS.md`` section 3.

Two parts, one module (and one checkpoint):

* **Stage 1, the MIM model** (:class:`MaskedAutoencoder`): an MAE ViT encoder/decoder trained
  on real faces only to reconstruct randomly masked patches (ratio 0.75, MSE on masked
  patches, input RGB in [0, 1] without normalisation, fixed 2-D sin-cos position embeddings).
* **Residual**: on a ``g x g`` patch grid (14 x 14 for both variants) a 4 x 4 set of blocks of
  3 x 3 patches covers patch rows/cols 1..12. Each block is reconstructed by one MAE pass that
  hides only that block (187 of 196 patches visible); the 16 block reconstructions are pasted
  together and ``residual = clamp(4 * (recon - input), -1, 1)``.
* **Stage 2, the detector**: two ViTs, one on the image normalised with ImageNet mean/std and
  one on the residual, see only the tokens of the blocks in use (plus their CLS token); the
  CLS tokens are concatenated and a ``Linear(2)`` decides. In training each block is kept with
  probability 0.25 (one draw per batch, all 16 if none is kept, as in the authors' code); at
  inference all 16 blocks (144 tokens) are used. The MIM model is frozen in stage 2.

Choices where the paper is silent or where we deviate:

* **One input, two views.** The detector's ``preprocess`` normalises with one mean/std; the
  config uses ImageNet mean/std (what the image ViT wants), and ``forward`` un-normalises
  (``x * std + mean``, clamped to [0, 1]) to get the MAE's [0, 1] input.
* **Dense discrepancy map.** The paper never reconstructs the one-patch border ring. At
  inference we add 4 more deterministic passes that each hide one side of the ring
  (pinwheel split: top row without its right corner, right column without its bottom corner,
  etc., ``g - 1`` patches each), so the 16 block masks and the 4 ring masks are complementary
  and every patch is reconstructed exactly once. The ring is context-poor (each hidden patch
  has visible neighbours only inwards), so its residual is noisier; it is used only for the
  explanation map (``aux["discrepancy"]``) and never reaches the detector, which sees exactly
  the paper's 144 block tokens. ``dense_map=False`` skips the 4 extra passes (the ring's
  residual is then 0, as in the paper). Training never computes them.
* **Only kept blocks are reconstructed in training** (the others' residual is never looked at),
  which saves ~4x MAE passes per step without changing what the detector sees.
* **CLS token.** The authors' code gathers only patch tokens and reads the first kept patch
  token as its "class" token; we keep the CLS token in front of the kept tokens as the paper
  describes.
* **Backbones** are timm ``PatchEmbed``/``Block``/``VisionTransformer`` built with random
  weights here. ``full``: MAE ViT-B/16 (768-d, depth 12, 12 heads) with a 512-d 8-block
  decoder at 224 px (the paper trains it from scratch on real faces), detector ViTs ViT-B/16
  which the paper starts from ImageNet-21k weights (``pretrained_weights``).
  ``demo``: the same structure at 112 px with patch 8 (the same 14 x 14 grid and block
  layout): a small MAE (128-d, depth 4) so 20 MAE passes per face stay fast on CPU, and
  detector ViTs shaped as DINOv2 ViT-S/14's first six blocks (384-d, LayerScale), which its
  recipe starts from DINOv2 (``model.init``; :meth:`adapt_init_state` resamples the 14-px patch
  filter to 8 px), with batch-normed CLS features before the head (``feature_norm``).
* **Offline starts of stage 2.** The paper starts both detector ViTs from ImageNet-21k weights,
  which cannot be fetched here. The demo recipe starts them from DINOv2 ViT-S/14 (converted
  offline, :mod:`detectors.pretrained`). Without a pretrained ViT, the recipe option
  ``method.init_vits_from_mim`` starts both from the stage-1 MAE encoder (same width/depth),
  the image ViT with the ImageNet normalisation folded into its patch embedding
  (:meth:`init_vits_from_mim`); the buffer ``vits_from_mim`` records that this happened, so a
  resumed run does not redo it.
* **Convolutional stem (option).** ``patch_stem="conv"`` gives both detector ViTs a
  convolutional stem in place of the patchify layer (:mod:`detectors.conv_stem`; the MAE keeps
  its patchify, which masking needs), for ViTs trained from scratch.
* ``aux["residual_energy"]`` (mean squared residual over the 16 blocks) is the stage-1-only
  score used to test the paper's central claim (``experiments/rffr_residual_devgan.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np
import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from .base import Detector
from .config import IMAGENET_MEAN, IMAGENET_STD, DetectorConfig
from .conv_stem import make_patch_stem
from .patch_grid import tokens_to_grid
from .registry import register_detector

_NORM = partial(nn.LayerNorm, eps=1e-6)


@dataclass
class RFFRConfig(DetectorConfig):
    """RFFR hyper-parameters; defaults are the paper's (``rffr_full``)."""

    input_size: int = 224
    patch_size: int = 16
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    # stage 1: the MAE
    mae_dim: int = 768
    mae_depth: int = 12
    mae_heads: int = 12
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    mask_ratio: float = 0.75
    # residual
    block_patches: int = 3
    residual_gain: float = 4.0
    dense_map: bool = True
    # stage 2: the two-ViT detector
    vit_dim: int = 768
    vit_depth: int = 12
    vit_heads: int = 12
    keep_prob: float = 0.25
    mlp_ratio: float = 4.0
    #: the detector ViTs' patch embedding: ``linear`` (ViT patchify, the paper's) or ``conv``
    #: (a convolutional stem, for ViTs trained from scratch; ``detectors.conv_stem``)
    patch_stem: str = "linear"
    stem_width: int = 24
    #: LayerScale in the detector ViTs' blocks (0: none, as ViT-B; 1e-5: DINOv2's layout, so the
    #: ViTs can start from DINOv2 weights through ``model.init``)
    vit_layer_scale: float = 0.0
    #: standardise the concatenated CLS features per channel (batch norm) before the linear head:
    #: DINOv2's final norm leaves a few channels offset near 30 that swamp a linear readout
    feature_norm: bool = False

    @property
    def grid(self) -> int:
        return self.input_size // self.patch_size


# ---- geometry ------------------------------------------------------------------------------
def block_layout(grid: int, block: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch ids of the paper's blocks and of the border ring's four complementary groups.

    Returns ``blocks`` (n*n, block*block), block ``r*n + c`` covering patch rows
    ``1 + r*block ...`` (row-major inside), and ``ring`` (4, grid - 1): top, right, bottom,
    left sides of the one-patch border, split pinwheel-wise so each patch appears once.
    """
    n = (grid - 2) // block
    if n < 1 or n * block + 2 != grid:
        raise ValueError(f"a {grid}x{grid} patch grid does not fit {block}x{block} blocks inside a one-patch border")
    offsets = torch.tensor([r * grid + c for r in range(block) for c in range(block)])
    corners = torch.tensor([(1 + r * block) * grid + 1 + c * block for r in range(n) for c in range(n)])
    blocks = corners[:, None] + offsets[None]
    g = grid
    top = [c for c in range(g - 1)]
    right = [r * g + g - 1 for r in range(g - 1)]
    bottom = [(g - 1) * g + c for c in range(1, g)]
    left = [r * g for r in range(1, g)]
    ring = torch.tensor([top, right, bottom, left])
    return blocks, ring


def sincos_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings (1, [1+] grid*grid, dim), as MAE uses."""
    if dim % 4:
        raise ValueError("sin-cos embeddings need a dimension divisible by 4")

    def one_axis(pos: np.ndarray, d: int) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    emb = np.concatenate([one_axis(gw, dim // 2), one_axis(gh, dim // 2)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return torch.from_numpy(emb).float()[None]


# ---- stage 1: the masked autoencoder --------------------------------------------------------
class MaskedAutoencoder(nn.Module):
    """MAE ViT over [0, 1] RGB: encoder on visible patches, light decoder predicting pixels."""

    def __init__(self, cfg: RFFRConfig) -> None:
        super().__init__()
        p, dim, ddim = cfg.patch_size, cfg.mae_dim, cfg.decoder_dim
        self.patch_size = p
        self.patch_embed = PatchEmbed(cfg.input_size, p, 3, dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(sincos_2d(dim, cfg.grid), requires_grad=False)
        # timm types norm_layer as a class; any callable that returns the norm works (a partial here)
        self.blocks = nn.ModuleList([Block(dim, cfg.mae_heads, cfg.mlp_ratio, qkv_bias=True,
                                           norm_layer=_NORM)  # type: ignore[arg-type]
                                     for _ in range(cfg.mae_depth)])
        self.norm = _NORM(dim)
        self.decoder_embed = nn.Linear(dim, ddim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, ddim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(ddim, cfg.grid), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(ddim, cfg.decoder_heads, cfg.mlp_ratio, qkv_bias=True,
                                                   norm_layer=_NORM)  # type: ignore[arg-type]
                                             for _ in range(cfg.decoder_depth)])
        self.decoder_norm = _NORM(ddim)
        self.decoder_pred = nn.Linear(ddim, p * p * 3)
        self.num_patches = n
        self._init_weights()

    def _init_weights(self) -> None:
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, L, p*p*3), patches row-major, pixels (row, col, channel)."""
        p = self.patch_size
        n, c, h, w = imgs.shape
        x = imgs.reshape(n, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        g = int(round(x.shape[1] ** 0.5))
        x = x.reshape(x.shape[0], g, g, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], 3, g * p, g * p)

    def encode(self, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Encode only the patches ``ids_keep`` (N, K) of each image (N, 3, H, W) -> (N, 1+K, D)."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def decode(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Pixel predictions (N, L, p*p*3) for every patch from the visible patches' latents."""
        y = self.decoder_embed(latent)
        n, d = y.shape[0], y.shape[-1]
        full = self.mask_token.expand(n, self.num_patches, d)
        full = full.scatter(1, ids_keep[..., None].expand(-1, -1, d), y[:, 1:])
        x = torch.cat([y[:, :1], full], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def loss(self, imgs: torch.Tensor, mask_ratio: float = 0.75, block_fraction: float = 0.0,
             block: int = 3) -> torch.Tensor:
        """MAE objective: random masking, MSE on the masked patches only (no pixel norm).

        ``block_fraction`` of the images instead hide one random ``block x block`` square inside
        the one-patch border (the inference-time masking; the authors' code has this mode too).
        """
        n, length = imgs.shape[0], self.num_patches
        n_block = int(round(n * block_fraction))
        order = torch.rand(n, length, device=imgs.device).argsort(dim=1)
        keep = max(1, int(length * (1 - mask_ratio)))
        parts = [(imgs[n_block:], order[n_block:, :keep])] if n_block < n else []
        if n_block:
            g = int(round(length ** 0.5))
            r = torch.randint(1, g - block, (n_block, 1), device=imgs.device)
            c = torch.randint(1, g - block, (n_block, 1), device=imgs.device)
            offsets = torch.tensor([i * g + j for i in range(block) for j in range(block)], device=imgs.device)
            hidden = r * g + c + offsets
            noise = torch.rand(n_block, length, device=imgs.device).scatter(1, hidden, 2.0)
            parts.append((imgs[:n_block], noise.argsort(dim=1)[:, : length - block * block]))
        total = imgs.new_zeros(())
        for sub, ids_keep in parts:
            pred = self.decode(self.encode(sub, ids_keep), ids_keep)
            mask = torch.ones(sub.shape[0], length, device=imgs.device).scatter(1, ids_keep, 0.0)
            err = ((pred - self.patchify(sub)) ** 2).mean(-1)
            total = total + ((err * mask).sum(1) / mask.sum(1)).sum()
        return total / n

    def reconstruct(self, imgs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Paste per-mask reconstructions: ``hidden`` (K, m) patch ids, one MAE pass per row.

        Each pass hides only its row's patches; all ``N*K`` passes run as one batch. Returns
        patches (N, L, p*p*3) with hidden patches replaced by their reconstructions (others
        keep the input, so their residual is 0).
        """
        n, k = imgs.shape[0], hidden.shape[0]
        length = self.num_patches
        visible = torch.ones(k, length, dtype=torch.bool, device=imgs.device)
        visible[torch.arange(k, device=imgs.device)[:, None], hidden] = False
        ids_keep = visible.nonzero()[:, 1].view(k, -1)  # sorted visible ids per mask
        rep = imgs.repeat_interleave(k, dim=0)
        ids = ids_keep.repeat(n, 1)
        pred = self.decode(self.encode(rep, ids), ids).view(n, k, length, -1)
        patches = self.patchify(imgs)
        m = hidden.shape[1]
        take = hidden[None, :, :, None].expand(n, k, m, pred.shape[-1])
        rec = torch.gather(pred, 2, take).reshape(n, k * m, -1)
        return patches.scatter(1, hidden.reshape(1, -1, 1).expand(n, -1, pred.shape[-1]), rec)


# ---- stage 2: a ViT that sees only some tokens ------------------------------------------------
class TokenViT(VisionTransformer):
    """timm ViT whose blocks see only the CLS token and the patch tokens ``patch_ids``."""

    def tokens(self, x: torch.Tensor, patch_ids: torch.Tensor) -> torch.Tensor:
        x = self._pos_embed(self.patch_embed(x))
        x = self.norm_pre(x)
        keep = torch.cat([torch.zeros(1, dtype=torch.long, device=x.device), patch_ids + 1])
        x = x[:, keep]
        x = self.blocks(x)
        return self.norm(x)


def _token_vit(cfg: RFFRConfig) -> TokenViT:
    vit = TokenViT(img_size=cfg.input_size, patch_size=cfg.patch_size, num_classes=0, embed_dim=cfg.vit_dim,
                   depth=cfg.vit_depth, num_heads=cfg.vit_heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True,
                   norm_layer=_NORM, init_values=cfg.vit_layer_scale or None)
    stem = make_patch_stem(cfg.patch_stem, 3, cfg.vit_dim, cfg.patch_size, cfg.stem_width)
    if stem is not None:
        vit.patch_embed.proj = stem
    return vit


class RFFRDetector(Detector):
    family = "rffr"
    display_name = "RFFR (real-face masked image modeling)"
    paper = "Shi et al., Real Face Foundation Representation Learning for Generalized Deepfake Detection, PR 2024"
    config_class = RFFRConfig
    config: RFFRConfig
    # buffers (register_buffer)
    block_ids: torch.Tensor
    ring_ids: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    vits_from_mim: torch.Tensor

    def __init__(self, config: RFFRConfig) -> None:
        super().__init__(config)
        if config.input_size % config.patch_size:
            raise ValueError("input_size must be a multiple of patch_size")
        self.mim = MaskedAutoencoder(config)
        self.image_vit = _token_vit(config)
        self.residual_vit = _token_vit(config)
        self.feature_norm = nn.BatchNorm1d(2 * config.vit_dim) if config.feature_norm else nn.Identity()
        self.head = nn.Linear(2 * config.vit_dim, 2)
        blocks, ring = block_layout(config.grid, config.block_patches)
        self.register_buffer("block_ids", blocks, persistent=False)
        self.register_buffer("ring_ids", ring, persistent=False)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
        # 1 once the stage-2 ViTs were initialised from the MAE encoder (survives save/resume).
        self.register_buffer("vits_from_mim", torch.zeros(()))
        self._last_patch_ids: torch.Tensor | None = None

    @property
    def num_blocks(self) -> int:
        return self.block_ids.shape[0]

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """The MAE's input: undo the ImageNet normalisation, back to RGB in [0, 1]."""
        return (x * self.std + self.mean).clamp(0, 1)

    def sample_blocks(self) -> torch.Tensor:
        """Training-time block sampling: each block kept with ``keep_prob`` (one draw per batch)."""
        keep = torch.rand(self.num_blocks) < self.config.keep_prob
        if not keep.any():
            keep[:] = True
        return keep.nonzero()[:, 0].to(self.block_ids.device)

    @torch.no_grad()
    def residual(self, x: torch.Tensor, blocks: torch.Tensor | None = None, ring: bool = False) -> dict[str, torch.Tensor]:
        """Frozen-MAE reconstruction and residual of normalised images ``x`` (no gradients).

        ``blocks`` (default all) are reconstructed one pass each; ``ring`` adds the 4 border
        passes. Returns ``unit`` (input in [0,1]), ``reconstruction``, ``residual`` (both
        (B, 3, S, S)) and ``block_energy`` (B, n_blocks; NaN for blocks not reconstructed).
        """
        unit = self.to_unit(x)
        blocks = torch.arange(self.num_blocks, device=x.device) if blocks is None else blocks
        patches = self.mim.reconstruct(unit, self.block_ids[blocks])
        if ring:
            ring_patches = self.mim.reconstruct(unit, self.ring_ids)
            ids = self.ring_ids.reshape(1, -1, 1).expand(x.shape[0], -1, patches.shape[-1])
            patches = patches.scatter(1, ids, torch.gather(ring_patches, 1, ids))
        recon = self.mim.unpatchify(patches)
        res = ((recon - unit) * self.config.residual_gain).clamp(-1, 1)
        energy = self.mim.patchify(res).pow(2).mean(-1)  # (B, L) per patch
        per_block = torch.full((x.shape[0], self.num_blocks), float("nan"), device=x.device)
        per_block[:, blocks] = energy[:, self.block_ids[blocks]].mean(-1)
        return {"unit": unit, "reconstruction": recon, "residual": res, "block_energy": per_block}

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        blocks = self.sample_blocks() if self.training else torch.arange(self.num_blocks, device=x.device)
        return self.decide(x, self.residual(x, blocks, ring=self.config.dense_map and not self.training), blocks)

    def fake_probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(fake) without the ring's reconstruction passes, which only the discrepancy map uses
        (the detector sees the 16 blocks alone): 16 MAE passes per face instead of 20."""
        if self.training:
            return self(x)["prob_fake"]
        blocks = torch.arange(self.num_blocks, device=x.device)
        return self.decide(x, self.residual(x, blocks, ring=False), blocks)["prob_fake"]

    def decide(self, x: torch.Tensor, r: dict[str, torch.Tensor], blocks: torch.Tensor) -> dict[str, Any]:
        """Stage 2 on images ``x`` and their :meth:`residual` ``r`` over ``blocks``.

        Separate from :meth:`forward` so an explanation can differentiate the detector again
        without paying for the 16 (+4) frozen-MAE passes a second time.
        """
        patch_ids = self.block_ids[blocks].reshape(-1).sort().values
        self._last_patch_ids = patch_ids
        f_img = self.image_vit.tokens(x, patch_ids)[:, 0]
        f_res = self.residual_vit.tokens(r["residual"], patch_ids)[:, 0]
        features = self.feature_norm(torch.cat([f_img, f_res], dim=1))
        used = r["block_energy"][:, blocks]
        return self.outputs(self.head(features), features, reconstruction=r["reconstruction"], residual=r["residual"],
                            discrepancy=r["residual"].abs().mean(1, keepdim=True), block_energy=r["block_energy"],
                            residual_energy=used.mean(1), blocks=blocks)

    def mim_loss(self, x: torch.Tensor, block_fraction: float = 0.0) -> torch.Tensor:
        """Stage-1 loss on normalised images ``x`` (the MAE sees them in [0, 1])."""
        return self.mim.loss(self.to_unit(x), self.config.mask_ratio, block_fraction, self.config.block_patches)

    @torch.no_grad()
    def init_vits_from_mim(self) -> bool:
        """Start both detector ViTs from the stage-1 MAE encoder (same sizes, linear patch stem).

        The offline stand-in for the paper's ImageNet-21k start: a ViT pre-trained by masked
        image modeling on real faces. The image ViT sees ImageNet-normalised input while the MAE
        saw [0, 1]; the per-channel affine difference is folded into its patch embedding, so at
        the start it computes exactly the MAE encoder's features of the face.
        """
        c = self.config
        if (c.mae_dim, c.mae_depth, c.mae_heads) != (c.vit_dim, c.vit_depth, c.vit_heads) or c.patch_stem != "linear":
            return False
        mim = self.mim
        for vit in (self.image_vit, self.residual_vit):
            assert vit.cls_token is not None and vit.pos_embed is not None  # built with both (timm: optional)
            vit.cls_token.copy_(mim.cls_token)
            vit.pos_embed.copy_(mim.pos_embed)
            vit.blocks.load_state_dict(mim.blocks.state_dict())
            vit.norm.load_state_dict(mim.norm.state_dict())
            vit.patch_embed.proj.weight.copy_(mim.patch_embed.proj.weight)
            vit.patch_embed.proj.bias.copy_(mim.patch_embed.proj.bias)
        w, b = mim.patch_embed.proj.weight, mim.patch_embed.proj.bias  # (D, 3, p, p), (D,); x01 = x * std + mean
        assert b is not None
        std, mean = self.std.view(1, 3, 1, 1), self.mean.view(1, 3, 1, 1)
        self.image_vit.patch_embed.proj.weight.copy_(w * std)
        self.image_vit.patch_embed.proj.bias.copy_(b + (w * mean).sum((1, 2, 3)))
        self.vits_from_mim.fill_(1)
        return True

    def stage_modules(self, stage: str) -> list[nn.Module]:
        """Modules trained in ``stage`` (``mim``: the MAE; ``detector``: the two ViTs and head)."""
        return [self.mim] if stage == "mim" else [self.image_vit, self.residual_vit, self.feature_norm, self.head]

    def adapt_init_state(self, module: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A pretrained ViT (``training.pretrained_init``) cut to a detector ViT: its first
        ``vit_depth`` blocks, and its patch embedding resampled to ``patch_size`` (FlexiViT's
        pseudo-inverse resize: a 14-px DINOv2 filter on a face at 196 px gives the same token as
        the resampled 8-px filter on the face at 112 px, the demo's 14 x 14 grid)."""
        if module not in ("image_vit", "residual_vit"):
            return state
        from timm.layers import resample_patch_embed

        from .towers import keep_first_blocks

        if self.config.patch_stem != "linear":
            raise ValueError("a pretrained ViT start needs the linear patch stem (model.patch_stem: linear)")
        state = keep_first_blocks(state, self.config.vit_depth)
        key = "patch_embed.proj.weight"
        p = self.config.patch_size
        if key in state and tuple(state[key].shape[-2:]) != (p, p):
            state = {**state, key: resample_patch_embed(state[key].float(), [p, p])}
        return state

    def target_layers(self) -> list[nn.Module]:
        return [cast(Block, vit.blocks[-1]).norm1 for vit in (self.image_vit, self.residual_vit)]  # timm's Blocks

    def reshape_transform(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1+K, D) tokens of the last forward -> (B, D, g, g), unseen patches zero."""
        ids = self._last_patch_ids
        if ids is None or tokens.shape[1] - 1 != ids.numel():
            raise RuntimeError("reshape_transform needs the patch ids of the forward pass that made these tokens")
        return tokens_to_grid(tokens, self.config.grid, patch_ids=ids)


def _create(variant: str, **model_args: Any) -> RFFRDetector:
    """Build ``variant`` from its config fields (RFFR derives nothing from them)."""
    return RFFRDetector(RFFRConfig(name=variant).updated(**model_args))


@register_detector
def rffr_full(**overrides: Any) -> RFFRDetector:
    """The paper's sizes: MAE ViT-B/16 (decoder 512-d x 8) and two ViT-B/16 at 224 px."""
    model_args = dict(pretrained_weights="timm/vit_base_patch16_224.orig_in21k_ft_in1k", crop_size=256, crop_margin=1.3)
    return _create("rffr_full", **{**model_args, **overrides})


@register_detector
def rffr_demo(**overrides: Any) -> RFFRDetector:
    """The same structure on CPU: 112 px, patch 8 (still a 14x14 grid), a small MAE, and detector ViTs
    shaped as DINOv2 ViT-S/14's first six blocks (its recipe starts them from DINOv2), stored in
    float16."""
    model_args = dict(input_size=112, patch_size=8, crop_size=128, crop_margin=1.3,
                      mae_dim=128, mae_depth=4, mae_heads=4, decoder_dim=96, decoder_depth=2, decoder_heads=3,
                      vit_dim=384, vit_depth=6, vit_heads=6, vit_layer_scale=1e-5, feature_norm=True,
                      storage_dtype="float16")
    return _create("rffr_demo", **{**model_args, **overrides})
