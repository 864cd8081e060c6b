"""Converters of ONNX graphs (DINOv2 encoder, BERT) onto timm / transformers, and the ONNX helpers."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import ConversionError, _need
from .pictures import chelsea_input
from .sources import Backbone


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
