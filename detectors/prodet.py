"""ProDet: oriented progressive regularization from real through blendfake to deepfake.

Paper: Cheng, Lyu, Zhang, Fan, Liu, Feng, Zhou, Zhou, Wang, "Can We Leave Deepfake Data Behind
in Training Deepfake Detector?", NeurIPS 2024 (arXiv 2408.17052). Authors' code:
``beautyremain/ProDet`` (a DeepfakeBench detector, ``ProDet_detector.py``).

Architecture as the authors' code realizes it:

* an EfficientNet-B4 backbone's last feature map (1792 channels, 8x8 at 256 px), a 1x1 conv
  to 512 channels (``adjust``);
* three attribute heads, each GAP -> Linear(512, 256) -> LeakyReLU -> Linear(256, 2):
  *blending* (any forgery), *identity inconsistency* (donor blend and deepfake) and
  *generative artifact* (deepfake only);
* a feature attention block: each head's two logits are lifted by Linear -> LeakyReLU -> Linear
  -> ConvTranspose2d to a (512, 8, 8) map, the three maps are concatenated with the features
  (order: deepfake, blending, identity, features) and a 1x1 / 1x1 / 3x3 conv stack with
  BatchNorm and ReLU ends in a sigmoid attention that multiplies the features;
* the final classifier (same head shape) on the attended features decides; ``prob_fake`` is its
  softmax.
* three transition ("drift") blocks that map real -> SBI, SBI -> CBI and CBI -> deepfake
  features (noise branch of two 3x3 convs, concat with the features, 1x1 and 3x3 convs). They
  are used only by the training loss (``training/methods/prodet.py``).

Forgery Lens choices (the paper is silent or the setting differs):

* The transition blocks live in the detector (``transition``), so the training engine places,
  optimises and checkpoints them with the rest of the model, as the authors' training state
  dict does; inference never calls them (the authors' ``ProDet_infer`` loads without them).
  ``transition_blocks=False`` builds an inference-only model without them.
* The feature map side is ``input_size // 32`` (8 at 256 px) instead of a hard-wired 8, so
  the same architecture runs at the demo's 192 px (6x6). The lift's hidden width is
  ``head_dim`` (256 in the paper).
* Backbone from timm (``efficientnet_b4``, symmetric padding) instead of the authors'
  ``efficientnet_pytorch`` TF port; the full config names the timm ImageNet weights a user
  online would start from (the authors' ``efficientnet-b4-6ed6700e.pth`` corresponds to timm's
  ``tf_efficientnet_b4``, which uses TF "same" padding).
* Demo: the same structure with timm's ``tf_efficientnet_lite0`` (EfficientNet-Lite0: ReLU6, no
  squeeze-excitation, TF padding; the closest ImageNet EfficientNet reachable offline, see
  ``detectors/pretrained/``) at 192 px (the 128 px face crop up-sampled; 6x6 feature map), 96 feature channels
  and 64-wide heads. Its recipe starts the backbone from the ImageNet weights (``model.init``,
  ``training/pretrained_init.py``); the checkpoint holds the fine-tuned weights, so loading it
  needs no cache. It trains on 2 CPU cores in minutes and ships under 25 MB.
* For the explanation, the model keeps the centres of the four anchors' pooled features
  (real, SBI, donor blend = CBI, autoencoder deepfake) and a fixed 2-D PCA projection of those
  centres as buffers (saved in the checkpoint). They are not part of the paper; the training
  method keeps running averages of them while training and refits them after training on the
  training split in eval mode (``python -m training.methods.prodet fit-anchors CHECKPOINT``).
* The recipe draws the four kinds in equal proportion (``cycle_kinds``); the engine shuffles
  items, so a batch holds roughly, not exactly, equal quarters: the method groups each batch by
  kind and bridges/transitions the first ``min(count)`` items of each kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Detector
from .config import DetectorConfig
from .registry import register_detector

#: Attribute heads in the order of ``aux["attributes"]`` columns.
ATTRIBUTES = ("blending", "identity", "generative")
#: The four anchors of the progressive path, in order (kind codes REAL, SBI, DONOR, DEEPFAKE).
ANCHORS = ("real", "sbi", "donor", "deepfake")
#: Transition blocks: name -> (from anchor index, to anchor index).
TRANSITIONS = {"real_to_sbi": (0, 1), "sbi_to_donor": (1, 2), "donor_to_deepfake": (2, 3)}


@dataclass
class ProDetConfig(DetectorConfig):
    """ProDet settings; defaults are the paper's (EfficientNet-B4 at 256 px, mean/std 0.5)."""

    input_size: int = 256
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    crop_size: int = 256
    crop_margin: float = 1.3
    backbone: str = "efficientnet_b4"
    feature_dim: int = 512  # channels after the 1x1 ``adjust`` conv
    head_dim: int = 256  # hidden width of the heads and of the attention lifts
    transition_blocks: bool = True  # training-only drift blocks kept in the state dict
    #: The backbone's stride (timm ``output_stride``); 16 dilates the last stage so a 128 px demo
    #: keeps the paper's 8x8 feature map (256 px / 32).
    output_stride: int = 32
    pretrained_weights: str = "timm/efficientnet_b4.ra2_in1k"
    #: ``timm``: the backbone as timm builds it. ``efficientnet_pytorch``: the authors' padding
    #: (:func:`use_efficientnet_pytorch_padding`), for their released weights on a ``tf_efficientnet_*``
    backbone_padding: str = "timm"


#: efficientnet_pytorch's default image size per architecture: its "same" paddings are fixed for it
EFFICIENTNET_PYTORCH_SIZES = {"tf_efficientnet_b0": 224, "tf_efficientnet_b4": 380}


class StaticPadConv2d(nn.Conv2d):
    """A convolution after a fixed zero padding ``(left, right, top, bottom)``, whatever the input size."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]) -> None:
        # torch types Conv2d's kernel_size, stride and dilation as tuple[int, ...], its constructor's as tuple[int, int]
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                         padding=0, dilation=conv.dilation,  # type: ignore[arg-type]
                         groups=conv.groups, bias=conv.bias is not None)
        self.static_pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.static_pad))


def use_efficientnet_pytorch_padding(backbone: nn.Module, image_size: int) -> None:
    """Make a timm ``tf_efficientnet_*`` pad as the authors' backbone does.

    DeepfakeBench's EfficientNet-B4 is efficientnet_pytorch's with its stem replaced by a plain
    ``Conv2d(3, 48, 3, stride=2)`` (no padding), and efficientnet_pytorch fixes every other
    stride-2 convolution's "same" padding for its default image size (380 for B4), not for the
    input it gets. At DeepfakeBench's 256 px this gives 127 -> 63 -> 32 -> 16 -> 8 where timm's
    dynamic padding gives 128 -> 64 -> 32 -> 16 -> 8, so the weights only compute what they were
    trained to with the same paddings. Stride-1 convolutions pad symmetrically in both.
    """
    net: Any = backbone  # timm's EfficientNet: its stem, stages and blocks are reached by name
    stem = net.conv_stem
    net.conv_stem = nn.Conv2d(stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride,
                                   padding=0, bias=stem.bias is not None)
    size = math.ceil(image_size / stem.stride[0])  # efficientnet_pytorch's size after its own stem
    for stage in net.blocks:
        for block in stage:
            conv = block.conv_dw
            stride, kernel = conv.stride[0], conv.kernel_size[0]
            if stride > 1:
                total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
                before = total // 2
                block.conv_dw = StaticPadConv2d(conv, (before, total - before, before, total - before))
            size = math.ceil(size / stride)


def _head(dim: int, hidden: int) -> nn.Sequential:
    """GAP -> Linear -> LeakyReLU -> Linear(2): the shape of every ProDet classifier."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, hidden),
                         nn.LeakyReLU(inplace=True), nn.Linear(hidden, 2))


class _Unflatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, 1, 1)


class FeatureAttention(nn.Module):
    """Attribute logits -> spatial maps, concatenated with the features -> sigmoid attention."""

    def __init__(self, dim: int, hidden: int, side: int) -> None:
        super().__init__()
        self.lifts = nn.ModuleList([
            nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(inplace=True), nn.Linear(hidden, dim), _Unflatten(),
                          nn.ConvTranspose2d(dim, dim, kernel_size=side))
            for _ in range(3)])
        self.attention = nn.Sequential(
            nn.Conv2d(4 * dim, dim, 1), nn.BatchNorm2d(dim), nn.ReLU(),
            nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim), nn.ReLU(),
            nn.Conv2d(dim, dim, 3, padding=1), nn.Sigmoid())

    def forward(self, logits: list[torch.Tensor], fmap: torch.Tensor) -> torch.Tensor:
        """``logits`` in the authors' order (deepfake, blending, identity); returns the attention."""
        maps = [lift(z) for lift, z in zip(self.lifts, logits)]
        return self.attention(torch.cat([*maps, fmap], dim=1))


class TransitionBlock(nn.Module):
    """Maps one anchor's feature map towards the next anchor's (the authors' ``DriftBlock``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.noise = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(inplace=True),
                                   nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(inplace=True))
        self.merge = nn.Sequential(nn.Conv2d(2 * dim, dim, 1), nn.LeakyReLU(inplace=True),
                                   nn.Conv2d(dim, dim, 3, padding=1), nn.LeakyReLU(inplace=True))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        noise = self.noise(torch.randn_like(fmap))
        return self.merge(torch.cat([fmap, noise], dim=1))


class ProDetDetector(Detector):
    family = "prodet"
    display_name = "ProDet"
    paper = "Cheng et al., Can We Leave Deepfake Data Behind in Training Deepfake Detector? (NeurIPS 2024)"
    config_class = ProDetConfig
    backbone: Any  # the timm model config.backbone names; its parts are reached by name
    # buffers (register_buffer)
    anchor_centres: torch.Tensor
    anchor_origin: torch.Tensor
    anchor_axes: torch.Tensor
    anchor_spread: torch.Tensor
    anchors_fitted: torch.Tensor

    def __init__(self, config: ProDetConfig) -> None:
        super().__init__(config)
        stride = config.output_stride
        if config.input_size % stride:
            raise ValueError(f"ProDet needs an input size divisible by {stride} (the backbone's stride), "
                             f"got {config.input_size}")
        import timm

        self.backbone = timm.create_model(config.backbone, pretrained=False, num_classes=0, global_pool="",
                                          output_stride=stride)
        if config.backbone_padding == "efficientnet_pytorch":
            if config.backbone not in EFFICIENTNET_PYTORCH_SIZES or stride != 32:
                raise ValueError(f"backbone_padding efficientnet_pytorch needs one of "
                                 f"{sorted(EFFICIENTNET_PYTORCH_SIZES)} at output stride 32, got {config.backbone}")
            use_efficientnet_pytorch_padding(self.backbone, EFFICIENTNET_PYTORCH_SIZES[config.backbone])
        elif config.backbone_padding != "timm":
            raise ValueError(f"backbone_padding must be 'timm' or 'efficientnet_pytorch', got {config.backbone_padding!r}")
        dim, hidden = config.feature_dim, config.head_dim
        self.side = config.input_size // stride
        self.adjust = nn.Conv2d(self.backbone.num_features, dim, 1)
        self.blend_head = _head(dim, hidden)
        self.identity_head = _head(dim, hidden)
        self.deepfake_head = _head(dim, hidden)
        self.feature_attention = FeatureAttention(dim, hidden, self.side)
        self.final_head = _head(dim, hidden)
        self.transition = nn.ModuleDict({name: TransitionBlock(dim) for name in TRANSITIONS}) \
            if config.transition_blocks else None
        # The progressive path for the explanation: running averages while training, refitted after
        # training by `python -m training.methods.prodet fit-anchors` (zeros until then).
        self.register_buffer("anchor_centres", torch.zeros(len(ANCHORS), dim))
        self.register_buffer("anchor_origin", torch.zeros(dim))
        self.register_buffer("anchor_axes", torch.zeros(2, dim))
        self.register_buffer("anchor_spread", torch.zeros(len(ANCHORS)))
        self.register_buffer("anchors_fitted", torch.zeros(()))  # 0 none, 1 training EMA, 2 fitted

    # ---- pieces the training method reuses ---------------------------------------------------
    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim, S/stride, S/stride): backbone features after the 1x1 ``adjust`` conv."""
        return self.adjust(self.backbone.forward_features(x))

    def decide(self, fmap: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attribute heads -> feature attention -> final classifier, on feature maps."""
        blend, identity, deepfake = self.blend_head(fmap), self.identity_head(fmap), self.deepfake_head(fmap)
        attention = self.feature_attention([deepfake, blend, identity], fmap)
        logits = self.final_head(fmap * attention)
        return {"logits": logits, "blend_logits": blend, "identity_logits": identity,
                "deepfake_logits": deepfake, "attention": attention}

    # ---- the detector contract ---------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        fmap = self.feature_map(x)
        out = self.decide(fmap)
        features = fmap.mean((2, 3))
        attributes = torch.stack([out[f"{k}_logits"].float().softmax(-1)[:, 1]
                                  for k in ("blend", "identity", "deepfake")], dim=1)
        return self.outputs(out["logits"], features, attributes=attributes,
                            blend_logits=out["blend_logits"], identity_logits=out["identity_logits"],
                            deepfake_logits=out["deepfake_logits"],
                            attention_map=out["attention"].mean(1), path_xy=self.project(features))

    def target_layers(self) -> list[nn.Module]:
        """The backbone's last feature block (conv head + BN + activation), as in ``CAM_forward``."""
        return [self.backbone.bn2]

    # ---- the real -> blendfake -> deepfake path ----------------------------------------------
    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled features -> (B, 2) coordinates on the anchors' fixed PCA plane."""
        return (features.float() - self.anchor_origin) @ self.anchor_axes.T

    @torch.no_grad()
    def set_anchors(self, centres: torch.Tensor, spread_features: list[torch.Tensor] | None = None,
                    fitted: float = 2.0) -> None:
        """Store the four anchors' feature centres and the 2-D PCA axes of those centres.

        ``spread_features`` (optional, one (N_k, D) tensor per anchor) sets each anchor's RMS
        distance to its centre on the plane, drawn as a circle in the explanation. ``fitted``
        records how: 1 = running average during training, 2 = fitted after training (eval mode).
        """
        centres = centres.detach().float().to(self.anchor_centres.device)
        origin = centres.mean(0)
        _, _, vt = torch.linalg.svd(centres - origin, full_matrices=False)
        axes = vt[:2]
        # Fix the signs so the path reads left to right and real sits low: deterministic plots.
        proj = (centres - origin) @ axes.T
        if proj[3, 0] < proj[0, 0]:
            axes[0] = -axes[0]
        if proj[0, 1] > 0:
            axes[1] = -axes[1]
        self.anchor_centres.copy_(centres)
        self.anchor_origin.copy_(origin)
        self.anchor_axes.copy_(axes)
        if spread_features is not None:
            for k, feats in enumerate(spread_features):
                if len(feats):
                    d = (feats.float().to(origin.device) - centres[k]) @ axes.T
                    self.anchor_spread[k] = d.pow(2).sum(1).mean().sqrt()
        self.anchors_fitted.fill_(fitted)

    def anchor_points(self) -> torch.Tensor:
        """(4, 2): the anchors' centres on the plane (real, SBI, donor blend, deepfake)."""
        return self.project(self.anchor_centres)


def _create(variant: str, **model_args: Any) -> ProDetDetector:
    """Build ``variant`` from its config fields (ProDet derives nothing from them)."""
    return ProDetDetector(ProDetConfig(name=variant).updated(**model_args))


@register_detector
def prodet_full(**overrides: Any) -> ProDetDetector:
    """The paper's setting: EfficientNet-B4 at 256 px, 512-channel features, 256-wide heads."""
    model_args: dict[str, Any] = dict()
    return _create("prodet_full", **{**model_args, **overrides})


@register_detector
def prodet_demo(**overrides: Any) -> ProDetDetector:
    """The same architecture on a CPU budget: EfficientNet-Lite0 (ImageNet start in the recipe) at
    192 px (the 128 px crop up-sampled), 96 feature channels, 64-wide heads; about 5 M parameters
    (with the training-only transition blocks)."""
    model_args = dict(input_size=192, crop_size=128, backbone="tf_efficientnet_lite0", feature_dim=96, head_dim=64,
                      pretrained_weights="timm/tf_efficientnet_lite0.in1k")
    return _create("prodet_demo", **{**model_args, **overrides})
