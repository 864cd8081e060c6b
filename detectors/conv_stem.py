"""A convolutional stem that stands in for a ViT's patchify layer in the from-scratch demos.

A ViT embeds each ``p x p`` patch with one linear map (a ``Conv2d`` with kernel = stride = p).
Started from random weights on the project's ~1500 training faces, such ViTs stay at chance: the
demo ViTs of RFFR, AntifakePrompt and VLFFD never left it (VLFFD's did not fit even its training
forgeries in 1500 steps), and on reals against autoencoder faces alone VLFFD's tower stayed at
0.45-0.55 where a 4-block CNN reached AUC 1.00 by step 250. With this stem the same tower
reached 0.96 at step 200 (``experiments/vit_stem_probe.py``), and RFFR's detector ViTs left chance
after ~550 steps on their full forgery mix (held-out AUC 0.74 at step 1000). This is the convolutional stem of Xiao et al., "Early
Convolutions Help Transformers See Better" (NeurIPS 2021): stacked 3x3 convolutions with batch
norm in place of the patchify layer, the transformer unchanged. The papers start their ViTs
from large pre-trained weights instead, so the ``full`` configs keep the linear patchify.
"""
from __future__ import annotations

import math

import torch
from torch import nn

STEMS = ("linear", "conv")


class ConvStem(nn.Module):
    """``log2(patch)`` blocks (3x3 conv, 3x3 stride-2 conv, each with BN + ReLU), then a 1x1
    projection: maps ``(B, C, H, W)`` to ``(B, dim, H/patch, W/patch)`` like a patchify conv."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, width: int = 24) -> None:
        super().__init__()
        n = int(math.log2(patch_size))
        if patch_size < 2 or 2 ** n != patch_size:
            raise ValueError(f"a convolutional stem needs a power-of-two patch size, not {patch_size}")
        layers: list[nn.Module] = []
        cin = in_chans
        for i in range(n):
            cout = width * 2 ** i
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.Conv2d(cout, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            cin = cout
        self.blocks = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, dim, 1)

    @property
    def weight(self) -> torch.Tensor:
        """The projection's weight: transformers' ViT embeddings read the input dtype from it."""
        return self.proj.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.blocks(x))


def make_patch_stem(kind: str, in_chans: int, dim: int, patch_size: int, width: int = 24) -> nn.Module | None:
    """The module to put where a ViT's patchify conv sits; ``None`` keeps the linear patchify."""
    if kind not in STEMS:
        raise ValueError(f"patch stem must be one of {', '.join(STEMS)}, not {kind!r}")
    return ConvStem(in_chans, dim, patch_size, width) if kind == "conv" else None
