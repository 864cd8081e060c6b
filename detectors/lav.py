"""Locate-and-Verify: a two-stream network for improved deepfake detection.

Shuai, Zhong, Wu, Lin, Wang, Ba, Liu, Cavallaro, Ren. "Locate and Verify: A Two-Stream Network
for Improved Deepfake Detection", ACM Multimedia 2023 (authors' code: sccsok/Locate-and-Verify).

Two Xception streams run side by side: one on the RGB image (the *locate* stream), one on a
fixed SRM high-pass residual of it, truncated to [-3, 3] (the *verify* stream).

- Entry flow (stem, block1, block2): after each stage a cross-modality consistency
  enhancement (CMCE) lets the streams enhance each other by their per-pixel cosine similarity.
- Block 3 of both streams reads the sum of the two stage-2 maps.
- Middle flow (two halves, and block 3 before them): local-forgery-guided attention (LFGA) on
  the verify stream, with query and key from the RGB stream and value from the verify stream,
  scaled by a learnable gamma that starts at 0.
- Locate: multi-scale patch feature fusion (MPFF) turns the shallow and middle RGB features
  into a G x G patch grid (19 x 19 at 299 px). It multiplies each 1x1-projected stage with the
  last middle stage, applies tanh, sums over channels and unfolds each cell's window into
  channels. Together with the last middle RGB map this feeds a 2-class patch segmentation head.
- Verify: the verify stream's exit flow, fused with its max-pooled multi-level features by
  a Hadamard-product bilinear fusion, then BN-ReLU-GAP-dropout-linear gives the verdict.
- A projection head maps the last middle RGB map to patch embeddings, which the
  semi-supervised patch similarity learning (SSPSL) loss uses (``training/methods/lav.py``).

Choices where we deviate from the paper and code, or where they are silent:

- Streams are built from timm's ``legacy_xception`` blocks, with module names that match
  timm's, so ``timm/legacy_xception.tf_in1k`` ImageNet weights (the same Keras-ported weights
  the authors' cadene ``xception-b5690688.pth`` holds) load into each stream by name (see
  :func:`stream_state_from_timm`). The stem convs use padding 1, as in the authors'
  FaceForensics Xception. The ``demo`` variant's streams are ImageNet EfficientNet-Lite0
  (``stream="tf_efficientnet_lite0"``, :class:`LiteStream`: its stages cut into the same flows
  at the same strides; a full-width Xception pair trains at about 1 image/s on 2 CPU cores) at
  128 px input, which gives an 8 x 8 patch grid.
- The authors' code also runs the RGB stream's exit flow but never uses its output; the paper's
  figure has no such flow. We do not build it.
- CMCE holds two conv-BN-ReLU stages in the authors' code that its forward never calls; we leave
  them out. The output is the same and no parameter is lost that ever trained.
- The fusion's per-position linear maps are ``nn.Linear`` layers over channels, as in the code.
- The per-patch embeddings (``aux['patch_embeddings']``) and their similarity to the most-forged
  patch (``aux['patch_similarity']``) are exposed for the explanation; the paper computes them
  only inside the training loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.xception import Block, SeparableConv2d
from torch import nn

from .base import Detector
from .config import DetectorConfig
from .patch_grid import patch_similarity
from .registry import register_detector

# SRM kernels of the authors' SRMConv2d_simple (KB/4, KV/12, horizontal 2nd order/2). These are
# textbook steganalysis residual filters (Fridrich & Kodovsky 2012), written out here.
_SRM_KB = [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
_SRM_KV = [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]
_SRM_H2 = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


@dataclass
class LavConfig(DetectorConfig):
    """Locate-and-Verify sizes; defaults are the paper's (Xception at 299 px, 19 x 19 grid)."""

    name: str = "lav_full"
    input_size: int = 299
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    crop_size: int = 299
    crop_margin: float = 1.3
    pretrained_weights: str = "timm/legacy_xception.tf_in1k"
    #: the two streams: ``xception`` (the paper's; widths below) or a timm EfficientNet-Lite
    #: (``tf_efficientnet_lite0``: its stages cut into the same entry / middle / exit flows)
    stream: str = "xception"
    stem_channels: tuple[int, ...] = (32, 64)
    entry_channels: tuple[int, ...] = (128, 256, 728)  # block1..block3, stride 2 each
    middle_blocks: int = 4  # blocks in each middle-flow half (LFGA after each half)
    middle_reps: int = 3  # separable convs per middle block
    exit_channels: tuple[int, ...] = (1024, 1536, 2048)  # exit block, conv3, conv4
    score_channels: int = 512  # MPFF 1x1 "score" projections
    fusion_hidden: int = 2048  # Hadamard bilinear fusion
    fusion_out: int = 4096
    proj_dim: int = 256  # SSPSL projection head
    lfga_ratio: int = 4
    dropout: float = 0.5


def _down(size: int) -> int:
    """Spatial size after a stride-2 3x3 conv or max-pool with padding 1."""
    return (size - 1) // 2 + 1


def stage_sizes(input_size: int) -> list[int]:
    """Sizes of stages 0..3 (stem, block1, block2, block3) and of the exit flow."""
    sizes = [_down(input_size)]
    for _ in range(4):
        sizes.append(_down(sizes[-1]))
    return sizes


def _pad_to_multiple(x: torch.Tensor, cells: int) -> torch.Tensor:
    """Replication-pad a square map so its side is a multiple of ``cells`` (extra row low/right)."""
    pad = (cells - x.shape[-1] % cells) % cells
    if pad == 0:
        return x
    lo, hi = pad // 2, (pad + 1) // 2
    return F.pad(x, (lo, hi, lo, hi), mode="replicate")


def pool_to_grid(x: torch.Tensor, cells: int) -> torch.Tensor:
    """Max-pool a square map onto a ``cells x cells`` grid (padding by replication first)."""
    x = _pad_to_multiple(x, cells)
    k = x.shape[-1] // cells
    return F.max_pool2d(x, kernel_size=k, stride=k)


class SRMFilter(nn.Module):
    """Fixed 5x5 SRM high-pass filters over the summed colour channels, truncated to [-3, 3]."""

    weight: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        kernels = torch.tensor([_SRM_KB, _SRM_KV, _SRM_H2], dtype=torch.float32)
        kernels = kernels / torch.tensor([4.0, 12.0, 2.0]).view(3, 1, 1)
        weight = kernels[:, None].repeat(1, in_channels, 1, 1)  # (3 out, C in, 5, 5)
        self.register_buffer("weight", weight, persistent=False)  # fixed: not a checkpoint tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(F.conv2d(x, self.weight, padding=2), -3.0, 3.0)


class XceptionStream(nn.Module):
    """One Xception stream cut into the stages LAV taps, with timm ``legacy_xception`` names.

    ``with_exit=False`` drops the exit flow (the locate stream never uses it).
    """

    def __init__(self, cfg: LavConfig, with_exit: bool = True) -> None:
        super().__init__()
        s0, s1 = cfg.stem_channels
        e1, e2, e3 = cfg.entry_channels
        self.conv1 = nn.Conv2d(3, s0, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(s0)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(s0, s1, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(s1)
        self.act2 = nn.ReLU(inplace=True)
        self.block1 = Block(s1, e1, 2, 2, start_with_relu=False)
        self.block2 = Block(e1, e2, 2, 2)
        self.block3 = Block(e2, e3, 2, 2)
        #: channels of the maps LAV taps: stem, block1..3, the two middle halves; and the exit flow's
        self.stage_channels = (s1, e1, e2, e3, e3, e3)
        self.exit_out = cfg.exit_channels[-1]
        self.n_middle = cfg.middle_blocks
        for i in range(2 * cfg.middle_blocks):
            self.add_module(f"block{4 + i}", Block(e3, e3, cfg.middle_reps, 1))
        self.with_exit = with_exit
        if with_exit:
            x1, x2, x3 = cfg.exit_channels
            self.add_module(f"block{4 + 2 * cfg.middle_blocks}", Block(e3, x1, 2, 2, grow_first=False))
            self.conv3 = SeparableConv2d(x1, x2, 3, 1, 1)
            self.bn3 = nn.BatchNorm2d(x2)
            self.act3 = nn.ReLU(inplace=True)
            self.conv4 = SeparableConv2d(x2, x3, 3, 1, 1)
            self.bn4 = nn.BatchNorm2d(x3)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(x)))

    def middle(self, x: torch.Tensor, half: int) -> torch.Tensor:
        start = 4 + half * self.n_middle
        for i in range(start, start + self.n_middle):
            x = getattr(self, f"block{i}")(x)
        return x

    def exit_flow(self, x: torch.Tensor) -> torch.Tensor:
        """Exit block, two separable convs; ends at BN (no final ReLU), as in the authors' code."""
        x = getattr(self, f"block{4 + 2 * self.n_middle}")(x)
        x = self.act3(self.bn3(self.conv3(x)))
        return self.bn4(self.conv4(x))


class LiteStream(nn.Module):
    """One timm EfficientNet-Lite cut into the flows LAV taps, at the same strides as
    :class:`XceptionStream`: stem + stage 1 (1/2), stage 2 (1/4), stage 3 (1/8), the first
    block of stage 4 (1/16) as "block 3", the rest of stage 4 and stage 5 as the two middle
    halves (1/16), stages 6-7 + the 1x1 head conv as the exit flow (1/32). The timm module is
    ``net``, so ImageNet weights load into it by name; the locate stream drops the exit flow."""

    net: Any  # timm's EfficientNet, whose stages and blocks are reached by name (nn.Module's typing cannot follow)

    def __init__(self, arch: str, with_exit: bool = True) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(arch, pretrained=False, num_classes=0)
        blocks = self.net.blocks
        widths = [stage[-1].conv_pwl.out_channels if hasattr(stage[-1], "conv_pwl") else stage[-1].conv_pw.out_channels
                  for stage in blocks]
        self.stage_channels = (widths[0], widths[1], widths[2], widths[3], widths[3], widths[4])
        self.exit_out = self.net.num_features
        self.with_exit = with_exit
        if not with_exit:
            del self.net.blocks[5:]
            self.net.conv_head = nn.Identity()
            self.net.bn2 = nn.Identity()

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.blocks[0](self.net.bn1(self.net.conv_stem(x)))

    def block1(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.blocks[1](x)

    def block2(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.blocks[2](x)

    def block3(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.blocks[3][0](x)

    def middle(self, x: torch.Tensor, half: int) -> torch.Tensor:
        layers = self.net.blocks[3][1:] if half == 0 else self.net.blocks[4]
        for layer in layers:
            x = layer(x)
        return x

    def exit_flow(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.net.blocks[5:]:
            x = stage(x)
        return self.net.bn2(self.net.conv_head(x))


#: An EfficientNet-Lite's exit flow in timm names (stages 6-7 and the head conv).
LITE_EXIT_KEYS = ("blocks.5.", "blocks.6.", "conv_head.", "bn2.")


def make_stream(cfg: LavConfig, with_exit: bool) -> XceptionStream | LiteStream:
    if cfg.stream == "xception":
        return XceptionStream(cfg, with_exit)
    if cfg.stream.startswith("tf_efficientnet_lite"):
        return LiteStream(cfg.stream, with_exit)
    raise ValueError(f"LAV stream {cfg.stream!r}: choose xception or tf_efficientnet_lite0..4")


class CMCE(nn.Module):
    """Cross-modality consistency enhancement: each stream adds the other, weighted by their
    per-pixel cosine similarity (the second update already sees the enhanced first stream)."""

    def forward(self, fa: torch.Tensor, fb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = F.cosine_similarity(fa, fb, dim=1).unsqueeze(1)
        fa = fa + fb * cos
        fb = fb + fa * cos
        return F.relu(fa), F.relu(fb)


class LFGA(nn.Module):
    """Local-forgery-guided attention: a non-local block whose query/key come from the guide
    (RGB) map and whose value comes from the verify stream, added back with a learnable gamma."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // ratio, 1)
        self.key_conv = nn.Conv2d(channels, channels // ratio, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, value_map: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        b, c, h, w = value_map.shape
        q = self.query_conv(guide).flatten(2).transpose(1, 2)  # (B, HW, C')
        k = self.key_conv(guide).flatten(2)  # (B, C', HW)
        attention = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, HW, HW)
        v = self.value_conv(value_map).flatten(2)  # (B, C, HW)
        out = torch.bmm(v, attention.transpose(1, 2)).view(b, c, h, w)
        return F.relu(self.gamma * out + value_map)


def mpff(fa: torch.Tensor, fb: torch.Tensor, grid: int) -> torch.Tensor:
    """Multi-scale patch feature fusion of a shallow map ``fa`` with the grid-sized ``fb``.

    ``fa`` is padded to ``grid * w``; each grid cell's w x w window of sum_c tanh(fa * up(fb))
    becomes w*w channels of a (B, w*w, grid, grid) map.
    """
    assert fb.shape[-1] == grid and fa.shape[1] == fb.shape[1]
    fa = _pad_to_multiple(fa, grid)
    w = fa.shape[-1] // grid
    up = fb.repeat_interleave(w, dim=2).repeat_interleave(w, dim=3)
    ff = torch.tanh(fa * up).sum(1)  # (B, grid*w, grid*w)
    b = ff.shape[0]
    return ff.view(b, grid, w, grid, w).permute(0, 2, 4, 1, 3).reshape(b, w * w, grid, grid)


class ConvBNReLU(nn.Sequential):
    """1x1 conv, BN, ReLU (the authors' BasicConv2d for the MPFF score maps)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HadamardBilinearFusion(nn.Module):
    """Per position: tanh(W1 a * W2 b), dropout, then a linear map to ``out_dim`` channels."""

    def __init__(self, dim1: int, dim2: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.trans1 = nn.Linear(dim1, hidden)
        self.trans2 = nn.Linear(dim2, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert a.shape[-2:] == b.shape[-2:]
        h, w = a.shape[-2:]
        a = a.flatten(2).transpose(1, 2)  # (B, HW, C1)
        b = b.flatten(2).transpose(1, 2)
        prod = torch.tanh(self.trans1(a) * self.trans2(b))
        out = self.out(self.dropout(prod))  # (B, HW, out)
        return out.transpose(1, 2).reshape(out.shape[0], -1, h, w)


class LocateAndVerify(Detector):
    family = "lav"
    display_name = "Locate-and-Verify"
    paper = "Shuai et al., Locate and Verify: A Two-Stream Network for Improved Deepfake Detection, ACM MM 2023"
    config_class = LavConfig

    def __init__(self, config: LavConfig) -> None:
        super().__init__(config)
        c = config
        sizes = stage_sizes(c.input_size)
        self.grid_size, self.cls_size = sizes[3], sizes[4]
        self.srm = SRMFilter(3)
        self.rgb = make_stream(c, with_exit=False)  # locate stream
        self.hf = make_stream(c, with_exit=True)  # verify stream (SRM residual input)
        stage_channels = self.rgb.stage_channels
        s1, e1, e2, e3, e4, e5 = stage_channels
        self.cmce = nn.ModuleList([CMCE() for _ in range(3)])
        self.lfga = nn.ModuleList([LFGA(ch, c.lfga_ratio) for ch in (e3, e4, e5)])
        self.score = nn.ModuleList([ConvBNReLU(ch, c.score_channels) for ch in stage_channels])
        # MPFF turns stage i (side sizes[i], padded up to a multiple of G) into (side/G)^2 channels.
        windows = [math.ceil(sizes[i] / self.grid_size) for i in range(4)] + [1]
        seg_channels = sum(w * w for w in windows) + e5
        self.seg_head = nn.Sequential(nn.BatchNorm2d(seg_channels), nn.ReLU(inplace=True),
                                      nn.Conv2d(seg_channels, 2, 1, bias=False))
        self.proj_head = nn.Sequential(nn.BatchNorm2d(e5), nn.ReLU(inplace=True), nn.Conv2d(e5, c.proj_dim, 1, bias=False))
        multi_level = s1 + e1 + e2 + e3 + e5  # verify-stream stages 0, 1, 2, 3 and 5 (as the code)
        self.fusion = HadamardBilinearFusion(multi_level, self.hf.exit_out, c.fusion_hidden, c.fusion_out, c.dropout)
        self.cls_pool = nn.Sequential(nn.BatchNorm2d(c.fusion_out), nn.ReLU(inplace=True),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cls_drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.fusion_out, 2)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        g = self.grid_size
        r = self.srm(x)
        x0, y0 = self.cmce[0](self.rgb.stem(x), self.hf.stem(r))
        x1, y1 = self.cmce[1](self.rgb.block1(x0), self.hf.block1(y0))
        x2, y2 = self.cmce[2](self.rgb.block2(x1), self.hf.block2(y1))
        fused = x2 + y2
        x3 = self.rgb.block3(fused)
        y3 = self.lfga[0](self.hf.block3(fused), x3)
        x4 = self.rgb.middle(x3, 0)
        y4 = self.lfga[1](self.hf.middle(y3, 0), x4)
        x5 = self.rgb.middle(x4, 1)
        y5 = self.lfga[2](self.hf.middle(y4, 1), x5)
        y6 = self.hf.exit_flow(y5)

        # Locate: multi-scale patch fusion of the RGB stream onto the G x G grid.
        scores = [head(f) for head, f in zip(self.score, (x0, x1, x2, x3, x4, x5))]
        seg_feats = torch.cat([mpff(s, scores[5], g) for s in scores[:5]] + [x5], dim=1)
        seg_logits = self.seg_head(seg_feats)  # (B, 2, G, G)
        embeddings = self.proj_head(x5)  # (B, D, G, G)

        # Verify: multi-level high-frequency features x deep verify-stream features.
        levels = torch.cat([pool_to_grid(f, self.cls_size) for f in (y0, y1, y2, y3, y5)], dim=1)
        features = self.cls_pool(self.fusion(levels, y6))
        logits = self.classifier(self.cls_drop(features))

        location = seg_logits.float().softmax(1)[:, 1]
        return self.outputs(logits, features, seg_logits=seg_logits, location=location,
                            patch_embeddings=embeddings, patch_similarity=similarity_to_peak(embeddings, location))

    def target_layers(self) -> list[nn.Module]:
        """The verify stream's last middle-flow stage (its LFGA, where the RGB stream guides it).

        The verdict is computed from the verify stream; this is its last map at patch-grid
        resolution (the exit flow is only G/2 wide).
        """
        return [self.lfga[-1]]

    def adapt_init_state(self, module: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """ImageNet weights into a stream (``training.pretrained_init``): the locate stream has no
        exit flow, so the source's exit-flow tensors are left out for it."""
        if module == "rgb.net" and isinstance(self.rgb, LiteStream):
            return {k: v for k, v in state.items() if not k.startswith(LITE_EXIT_KEYS)}
        return state

    def mask_to_grid(self, mask: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
        """(B, 1, S, S) mask in [0, 1] -> (B, G, G) long patch labels (max-pool, then > threshold)."""
        return (pool_to_grid(mask.float(), self.grid_size)[:, 0] > threshold).long()


def similarity_to_peak(embeddings: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch embedding to that of the most-forged patch: (B, G, G)."""
    peak = location.flatten(1).argmax(1)
    ref = embeddings.flatten(2)[torch.arange(embeddings.shape[0], device=embeddings.device), :, peak]  # (B, D)
    return patch_similarity(embeddings, ref)


def stream_state_from_timm(timm_state: dict[str, torch.Tensor], with_exit: bool = True) -> dict[str, torch.Tensor]:
    """Map a timm ``legacy_xception`` state dict onto one :class:`XceptionStream` (full widths).

    Drops the classifier and, for the locate stream, the exit flow. Use as
    ``model.hf.load_state_dict(stream_state_from_timm(sd))`` after downloading
    ``timm/legacy_xception.tf_in1k`` (what a user online would start from).
    """
    exit_keys = ("block12.", "conv3.", "bn3.", "conv4.", "bn4.")
    out = {}
    for key, value in timm_state.items():
        if key.startswith("fc.") or (not with_exit and key.startswith(exit_keys)):
            continue
        out[key] = value
    return out


# ---- registry entries ----------------------------------------------------------------------------
def _create(variant: str, **model_args: Any) -> LocateAndVerify:
    """Build ``variant`` from its config fields (LAV derives nothing from them)."""
    return LocateAndVerify(LavConfig(name=variant).updated(**model_args))


@register_detector
def lav_full(**overrides: Any) -> LocateAndVerify:
    """The paper's network: two full Xception streams at 299 px, 19 x 19 patch grid."""
    model_args: dict[str, Any] = dict()
    return _create("lav_full", **{**model_args, **overrides})


@register_detector
def lav_demo(**overrides: Any) -> LocateAndVerify:
    """The same network for 2 CPU cores: EfficientNet-Lite0 streams at 128 px, 8 x 8 patch grid."""
    # What ships: both streams are ImageNet EfficientNet-Lite0 (the recipe's ``model.init``), narrow heads.
    model_args = dict(input_size=128, crop_size=128, crop_margin=1.3, pretrained_weights="",
                      stream="tf_efficientnet_lite0", score_channels=32, fusion_hidden=256, fusion_out=256,
                      proj_dim=64)
    return _create("lav_demo", **{**model_args, **overrides})
