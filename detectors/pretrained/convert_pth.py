"""Converter of lukemelas-style EfficientNet state dicts (.pth) onto timm EfficientNets."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import ConversionError
from .loading import build_model
from .sources import Backbone


def lukemelas_to_timm(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A lukemelas-style EfficientNet state dict (``_conv_stem``, ``_blocks.N._expand_conv``...) onto
    a timm EfficientNet's keys, by position: both list the same tensors in the same order (stem,
    blocks, head, classifier). Each pair must agree in shape, in tensor kind (weight / bias /
    running_mean...) and in layer role; anything else raises ``ConversionError``."""
    source_roles = {"_conv_stem": "stem", "_expand_conv": "expand", "_depthwise_conv": "dw", "_project_conv": "project",
                    "_conv_head": "head", "_fc": "fc", "_se_reduce": "se_reduce", "_se_expand": "se_expand"}
    target_roles = {"conv_stem": "stem", "conv_pw": "pw", "conv_dw": "dw", "conv_pwl": "project",
                    "conv_head": "head", "classifier": "fc", "conv_reduce": "se_reduce", "conv_expand": "se_expand"}
    # timm's first (depthwise-separable) block calls its projection conv_pw; later blocks call the expansion so
    same_role = {(r, r) for r in source_roles.values()} | {("expand", "pw"), ("project", "pw"), (None, None)}

    def role(key: str, table: dict[str, str]) -> str | None:
        parts = key.split(".")[:-1]
        return next((table[p] for p in reversed(parts) if p in table), None)

    src = [(k, v) for k, v in source.items()]
    dst = list(target.items())
    if len(src) != len(dst):
        raise ConversionError(f"source has {len(src)} tensors, target {len(dst)}")
    out = {}
    for (sk, sv), (tk, tv) in zip(src, dst):
        if sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1]:
            raise ConversionError(f"{sk} -> {tk}: different tensor kinds")
        if tuple(sv.shape) != tuple(tv.shape):
            raise ConversionError(f"{sk} {tuple(sv.shape)} -> {tk} {tuple(tv.shape)}: shapes differ")
        if (role(sk, source_roles), role(tk, target_roles)) not in same_role:
            raise ConversionError(f"{sk} -> {tk}: different layer roles")
        out[tk] = sv.detach().clone().to(tv.dtype) if sv.dtype != tv.dtype else sv.detach().clone()
    return out


def _torch_state_from_pth(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path.name} is not a plain state dict of tensors")
    return dict(state)


def convert_lukemelas_efficientnet(b: Backbone, member: Path, wheel_dir: Path, extras: dict[str, Path]):
    source = _torch_state_from_pth(member)
    target = build_model(b).state_dict()
    return lukemelas_to_timm(source, target), {}

