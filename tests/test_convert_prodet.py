"""The authors' ProDet checkpoint converter: their key layout in, a prodet_full checkpoint out that
computes what their model computes (backbone checked against efficientnet_pytorch itself)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectors import create_detector
from detectors.pretrained import lukemelas_to_timm
from training.convert_prodet import ConversionError, convert, convert_state, read_checkpoint

efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")

FEATURE, HIDDEN, SIDE = 24, 12, 8  # small heads; the backbone is the real B4 (1792 channels, 8x8 at 256 px)


def authors_backbone(seed: int = 0) -> nn.Module:
    """DeepfakeBench's EfficientNet-B4: efficientnet_pytorch's, stem replaced by an unpadded conv.
    Weights drawn so activations keep their scale through 32 blocks (the library's own init
    shrinks them to ~1e-12 by the last stage, where any padding would pass)."""
    torch.manual_seed(seed)
    net = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b4")
    net._conv_stem = nn.Conv2d(3, 48, kernel_size=3, stride=2, bias=False)
    net._fc = nn.Identity()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def authors_state(seed: int = 0, drift: bool = True, prefix: str = "") -> dict[str, torch.Tensor]:
    """A state dict with the authors' key layout (ProDet_detector.py) and random tensors."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.5) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state = {f"backbone.efficientnet.{k}": v for k, v in authors_backbone(seed).state_dict().items()}
    state |= {"backbone.last_layer.weight": r(2, 1792), "backbone.last_layer.bias": r(2),
              "adjust_feature.weight": r(FEATURE, 1792, 1, 1, scale=0.1), "adjust_feature.bias": r(FEATURE)}
    for head in ("blend_classifier", "ID_inconsistency_classifier", "deepfake_classifier", "final_classifier"):
        state |= {f"{head}.2.weight": r(HIDDEN, FEATURE), f"{head}.2.bias": r(HIDDEN),
                  f"{head}.4.weight": r(2, HIDDEN), f"{head}.4.bias": r(2)}
    for i in (1, 2, 3):
        p = f"fea_att.inverse_conv{i}"
        state |= {f"{p}.0.weight": r(HIDDEN, 2), f"{p}.0.bias": r(HIDDEN), f"{p}.2.weight": r(FEATURE, HIDDEN),
                  f"{p}.2.bias": r(FEATURE), f"{p}.4.weight": r(FEATURE, FEATURE, SIDE, SIDE), f"{p}.4.bias": r(FEATURE)}
    state |= {"fea_att.attention.0.weight": r(FEATURE, 4 * FEATURE, 1, 1), "fea_att.attention.0.bias": r(FEATURE),
              "fea_att.attention.3.weight": r(FEATURE, FEATURE, 1, 1), "fea_att.attention.3.bias": r(FEATURE),
              "fea_att.attention.6.weight": r(FEATURE, FEATURE, 3, 3), "fea_att.attention.6.bias": r(FEATURE)}
    for bn in (1, 4):
        state |= {f"fea_att.attention.{bn}.weight": 1 + r(FEATURE), f"fea_att.attention.{bn}.bias": r(FEATURE),
                  f"fea_att.attention.{bn}.running_mean": r(FEATURE),
                  f"fea_att.attention.{bn}.running_var": 1 + r(FEATURE).abs(),
                  f"fea_att.attention.{bn}.num_batches_tracked": torch.tensor(7)}
    if drift:
        for block in ("real2sbi", "sbi2bi", "bi2fake"):
            for part, shapes in (("noise_process", [(FEATURE, FEATURE, 3, 3)] * 2),
                                 ("concat_process", [(FEATURE, 2 * FEATURE, 1, 1), (FEATURE, FEATURE, 3, 3)])):
                for index, shape in zip((0, 2), shapes):
                    state |= {f"{block}.{part}.{index}.weight": r(*shape), f"{block}.{part}.{index}.bias": r(shape[0])}
    return {prefix + k: v for k, v in state.items()}


def authors_forward(state: dict[str, torch.Tensor], backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """P(fake) as the authors' ProDetDetector.forward(inference=True) computes it, from their tensors."""
    def head(name: str, f: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(F.linear(f.mean((2, 3)), state[f"{name}.2.weight"], state[f"{name}.2.bias"]))
        return F.linear(h, state[f"{name}.4.weight"], state[f"{name}.4.bias"])

    def lift(i: int, z: torch.Tensor) -> torch.Tensor:
        p = f"fea_att.inverse_conv{i}"
        h = F.linear(F.leaky_relu(F.linear(z, state[f"{p}.0.weight"], state[f"{p}.0.bias"])),
                     state[f"{p}.2.weight"], state[f"{p}.2.bias"])
        return F.conv_transpose2d(h.view(-1, FEATURE, 1, 1), state[f"{p}.4.weight"], state[f"{p}.4.bias"])

    def bn(i: int, h: torch.Tensor) -> torch.Tensor:
        p = f"fea_att.attention.{i}"
        return F.batch_norm(h, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], training=False, eps=1e-5)

    a = "fea_att.attention"
    with torch.no_grad():
        f = F.conv2d(backbone.extract_features(x), state["adjust_feature.weight"], state["adjust_feature.bias"])
        df, bld, bi = head("deepfake_classifier", f), head("blend_classifier", f), head("ID_inconsistency_classifier", f)
        h = torch.cat([lift(1, df), lift(2, bld), lift(3, bi), f], dim=1)
        h = F.relu(bn(1, F.conv2d(h, state[f"{a}.0.weight"], state[f"{a}.0.bias"])))
        h = F.relu(bn(4, F.conv2d(h, state[f"{a}.3.weight"], state[f"{a}.3.bias"])))
        attention = torch.sigmoid(F.conv2d(h, state[f"{a}.6.weight"], state[f"{a}.6.bias"], padding=1))
        return head("final_classifier", f * attention).softmax(1)[:, 1]


def test_authors_padding_reproduces_efficientnet_pytorch_and_timms_does_not():
    reference = authors_backbone()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference.extract_features(x)
    errors = {}
    for padding in ("efficientnet_pytorch", "timm"):
        model = create_detector("prodet_full", source="random", backbone="tf_efficientnet_b4",
                                backbone_padding=padding).eval()
        model.backbone.load_state_dict(lukemelas_to_timm(reference.state_dict(), model.backbone.state_dict()))
        with torch.no_grad():
            got = model.backbone.forward_features(x)
        assert got.shape == want.shape == (1, 1792, 8, 8)
        errors[padding] = ((got - want).abs().max() / want.abs().max()).item()
    assert errors["efficientnet_pytorch"] < 1e-4
    assert errors["timm"] > 1e-2  # 128 -> 64 -> ... instead of 127 -> 63 -> ...: other numbers


def test_converted_checkpoint_computes_the_authors_probabilities(tmp_path):
    state = authors_state(prefix="module.")  # a DataParallel save
    torch.save({"state_dict": state}, tmp_path / "ProDet_best.pth")
    folder = convert(tmp_path / "ProDet_best.pth", tmp_path / "prodet_authors")
    model = create_detector("prodet_full", str(folder))
    assert (model.config.backbone, model.config.backbone_padding) == ("tf_efficientnet_b4", "efficientnet_pytorch")
    assert (model.config.feature_dim, model.config.head_dim, model.config.input_size) == (FEATURE, HIDDEN, 256)
    assert model.transition is not None and float(model.anchors_fitted) == 0
    assert model.config.extra["converted_from"]["file"] == "ProDet_best.pth"
    unwrapped = {k[len("module."):]: v for k, v in state.items()}
    torch.testing.assert_close(model.transition["sbi_to_donor"].merge[0].weight, unwrapped["sbi2bi.concat_process.0.weight"])
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = model(x)["prob_fake"]
    want = authors_forward(unwrapped, authors_backbone(), x)
    assert want.std() > 1e-3  # the two inputs get different answers: the comparison means something
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_inference_only_file_converts_without_transition_blocks():
    model = convert_state(authors_state(drift=False))
    assert model.transition is None and not model.config.transition_blocks


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("final_classifier.4.bias"), "missing"),
    (lambda s: s.update({"fea_att.extra.weight": torch.zeros(1)}), "does not know"),
    (lambda s: s.update({"adjust_feature.bias": torch.zeros(FEATURE + 1)}), "does not fit"),
    (lambda s: s.pop("backbone.efficientnet._blocks.31._project_conv.weight"), "EfficientNet-B4"),
    (lambda s: s.pop("adjust_feature.weight"), "not a ProDet state dict"),
])
def test_files_that_do_not_fit_are_refused_with_the_reason(change, message):
    state = authors_state(drift=False)
    change(state)
    with pytest.raises(ConversionError, match=message):
        convert_state(state)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "ProDet_best.pth"
    torch.save({"epoch": 3, "note": "no tensors"}, path)
    with pytest.raises(ConversionError, match="not a state dict of tensors"):
        read_checkpoint(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ConversionError, match="tensors-only checkpoint"):
        read_checkpoint(path)
