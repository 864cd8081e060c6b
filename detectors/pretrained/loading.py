"""Building a backbone's module and loading its converted weights into it (strict)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .cache import MODEL_FILE, cache_dir, read_provenance, sha256_file
from .errors import ConversionError, NotCached, PretrainedError
from .sources import Backbone, get_backbone


def build_model(backbone: Backbone | str, **overrides) -> nn.Module:
    """The target module with random weights (nothing is downloaded)."""
    b = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if b.library == "timm":
        import timm

        kwargs = {**b.arch_kwargs, **overrides}
        model = timm.create_model(b.arch, pretrained=False, **kwargs)
    elif b.library == "transformers":
        import transformers

        config = transformers.BertConfig(**{**b.arch_kwargs, **overrides})
        model = getattr(transformers, b.arch)(config, add_pooling_layer=False)
    else:  # pragma: no cover - registry is static
        raise PretrainedError(f"unknown library {b.library}")
    if b.bn_eps is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eps = b.bn_eps
    return model.eval()


def resample_grid_pos_embed(pos_embed: torch.Tensor, grid: int, prefix_tokens: int = 1) -> torch.Tensor:
    """ViT position table to a ``grid``x``grid`` patch grid: bicubic, align_corners=False, no
    antialias (what the DINOv2 ONNX graph and transformers' Dinov2 do at a smaller input)."""
    prefix, table = pos_embed[:, :prefix_tokens], pos_embed[:, prefix_tokens:]
    old = int(round(table.shape[1] ** 0.5))
    if old * old != table.shape[1]:
        raise ConversionError(f"position table of {table.shape[1]} tokens is not a square grid")
    if old == grid:
        return pos_embed
    dim = table.shape[-1]
    table = table.reshape(1, old, old, dim).permute(0, 3, 1, 2).float()
    table = torch.nn.functional.interpolate(table, size=(grid, grid), mode="bicubic", align_corners=False)
    table = table.permute(0, 2, 3, 1).reshape(1, grid * grid, dim).to(pos_embed.dtype)
    return torch.cat([prefix, table], dim=1)


def model_from_state_dict(backbone: Backbone | str, state: dict[str, torch.Tensor], *,
                          img_size: int | None = None, **overrides) -> nn.Module:
    b = get_backbone(backbone) if isinstance(backbone, str) else backbone
    state = dict(state)
    if img_size is not None:
        if b.library != "timm":
            raise PretrainedError(f"{b.name}: img_size applies to image backbones only")
        overrides["img_size"] = img_size
        if "pos_embed" in state:
            patch = state["patch_embed.proj.weight"].shape[-1]
            state["pos_embed"] = resample_grid_pos_embed(state["pos_embed"], img_size // patch)
    model = build_model(b, **overrides)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConversionError(f"{b.name}: converted tensors do not fit {b.arch}: {exc}") from exc
    return model.eval()


def load_state(name: str, root: str | Path | None = None, *, check_hash: bool = True) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    provenance = read_provenance(name, root)
    path = cache_dir(name, root) / MODEL_FILE
    if not path.is_file():
        raise NotCached(f"{path} is missing: run `python -m training pretrained download {name}`")
    if check_hash:
        expected = provenance.get("files", {}).get(MODEL_FILE, {}).get("sha256")
        if expected and sha256_file(path) != expected:
            raise PretrainedError(f"{path} does not match the sha256 in its provenance.json (changed after "
                                  f"conversion): run `python -m training pretrained download {name} --force`")
    return load_file(str(path))


def load_backbone(name: str, root: str | Path | None = None, *, num_classes: int | None = None,
                  img_size: int | None = None, check_hash: bool = True, **create_kwargs) -> nn.Module:
    """The backbone with its converted weights loaded ``strict=True``, in eval mode.

    ``img_size`` builds a ViT for another input size (its position grid resampled as the source
    does); ``num_classes`` then replaces a timm classifier (0: features only); other keyword
    arguments go to ``timm.create_model`` / the transformers config and must not change tensor
    shapes.
    """
    state = load_state(name, root, check_hash=check_hash)
    model = model_from_state_dict(name, state, img_size=img_size, **create_kwargs)
    if num_classes is not None:
        reset_classifier = getattr(model, "reset_classifier", None)
        if reset_classifier is None:
            raise PretrainedError(f"{name}: num_classes applies to timm classifiers only")
        reset_classifier(num_classes)
    return model


def load_tokenizer(name: str = "minilm_l3", root: str | Path | None = None):
    """The BERT tokenizer kept beside a text backbone (``from_pretrained(folder)``: in
    transformers 5.23 ``BertTokenizer(vocab_file=...)`` ignores the file)."""
    from transformers import BertTokenizer

    folder = cache_dir(name, root)
    if not (folder / "vocab.txt").is_file():
        raise NotCached(f"{folder}/vocab.txt is missing: run `python -m training pretrained download {name}`")
    return BertTokenizer.from_pretrained(str(folder), do_lower_case=True)
