"""ProDet: output contract, the progressive regularizer's loss, anchors/path, save/load, explanations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors import build_detector, create_detector
from detectors.faces.align import AlignedFace, CropPolicy
from detectors.prodet import ProDetConfig
from training.data import kinds as K
from training.methods import get_method
from training.methods.prodet import _bridge_targets, attribute_targets, fit_anchors, soft_cross_entropy

TINY = dict(input_size=64, crop_size=64, feature_dim=16, head_dim=8)
KINDS = [K.DEEPFAKE, K.REAL, K.SBI, K.DONOR, K.REAL, K.DONOR, K.SBI, K.DEEPFAKE]


def tiny(**kw):
    torch.manual_seed(0)
    return build_detector("prodet_demo", **{**TINY, **kw})


def fake_batch(kinds=KINDS, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    kind = torch.tensor(kinds)
    return {"image": torch.randn(len(kinds), 3, size, size, generator=g), "kind": kind, "label": (kind > 0).long()}


@pytest.fixture(scope="module")
def model():
    return tiny().eval()


def test_output_contract(model):
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out["logits"].shape == (2, 2) and out["features"].shape == (2, 16)
    assert torch.all((out["prob_fake"] >= 0) & (out["prob_fake"] <= 1))
    aux = out["aux"]
    assert aux["attributes"].shape == (2, 3) and torch.all((aux["attributes"] >= 0) & (aux["attributes"] <= 1))
    assert torch.allclose(aux["attributes"][:, 0], aux["blend_logits"].softmax(-1)[:, 1])
    assert aux["attention_map"].shape == (2, 2, 2)  # 64 px / 32
    assert torch.all((aux["attention_map"] > 0) & (aux["attention_map"] < 1))
    assert aux["path_xy"].shape == (2, 2)
    assert model.target_layers() == [model.backbone.bn2]


def test_input_size_must_fit_the_feature_grid():
    with pytest.raises(ValueError, match="divisible by 32"):
        build_detector("prodet_demo", input_size=100)
    with pytest.raises(ValueError, match="divisible by 16"):
        build_detector("prodet_demo", input_size=120, output_stride=16)


def test_stride_16_keeps_the_papers_8x8_map_at_half_the_input_size():
    model = tiny(input_size=128, crop_size=128, output_stride=16).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128))
    assert model.feature_map(torch.randn(1, 3, 128, 128)).shape == (1, 16, 8, 8)
    assert out["aux"]["attention_map"].shape == (1, 8, 8)  # the paper: 256 px / 32


def test_full_config_is_the_papers():
    cfg = ProDetConfig()
    assert (cfg.backbone, cfg.input_size, cfg.feature_dim, cfg.head_dim) == ("efficientnet_b4", 256, 512, 256)
    assert cfg.mean == cfg.std == (0.5, 0.5, 0.5) and "efficientnet_b4" in cfg.pretrained_weights
    from detectors.registry import get_entry

    assert get_entry("prodet_full").family == "prodet"


def test_attribute_and_bridge_targets():
    kind = torch.tensor([K.REAL, K.SBI, K.DONOR, K.DEEPFAKE, K.REGION])
    t = attribute_targets(kind, (kind > 0).long())
    assert t["blend"].tolist() == [0, 1, 1, 1, 1]
    assert t["identity"].tolist() == [0, 0, 1, 1, 0]
    assert t["deepfake"].tolist() == [0, 0, 0, 1, 0]
    lam = torch.tensor([0.3])
    assert {k: float(v) for k, v in _bridge_targets(K.REAL, "blend", lam).items()} == pytest.approx(
        {"blend": 0.3, "identity": 0.0, "deepfake": 0.0})
    assert {k: float(v) for k, v in _bridge_targets(K.DONOR, "deepfake", lam).items()} == pytest.approx(
        {"blend": 1.0, "identity": 1.0, "deepfake": 0.3})
    # soft CE equals the hard CE at 0/1 targets and is minimal where the prediction matches the target
    logits = torch.tensor([[0.2, -0.4], [1.0, 2.0]])
    assert soft_cross_entropy(logits, torch.tensor([0.0, 1.0])) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))), abs=1e-6)
    p = logits.softmax(-1)[:, 1]
    assert soft_cross_entropy(logits, p) < soft_cross_entropy(logits, 1 - p)


def test_loss_backpropagates_through_every_part():
    model = tiny().train()
    method = get_method("prodet", {})
    parts = method.loss(model, fake_batch(), method.stages()[0])
    assert {"loss", "loss_blend", "loss_identity", "loss_deepfake", "loss_final", "loss_transition"} <= set(parts)
    assert torch.isfinite(parts["loss"])
    parts["loss"].backward()
    for module in (model.backbone.conv_stem, model.adjust, model.blend_head, model.identity_head, model.deepfake_head,
                   model.feature_attention.lifts, model.final_head, model.transition["donor_to_deepfake"]):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    # the running anchor centres were recorded during the step
    assert float(model.anchors_fitted) == 1.0 and model.anchor_centres.abs().sum() > 0


def test_loss_does_not_depend_on_the_order_of_kinds_in_the_batch():
    """The method groups each batch by kind itself (quarters real|SBI|donor|deepfake): a batch in any
    order of kinds gives the same loss as the sorted batch."""
    method = get_method("prodet", {"method": {"anchor_momentum": 0}})
    batch = fake_batch()
    order = torch.argsort(batch["kind"], stable=True)
    sorted_batch = {k: v[order] for k, v in batch.items()}
    losses = []
    for b in (batch, sorted_batch):
        model = tiny().train()
        torch.manual_seed(1)
        losses.append(method.loss(model, b, method.stages()[0])["loss"].item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_missing_anchor_kind_skips_bridging_and_transitions():
    model = tiny().train()
    method = get_method("prodet", {})
    parts = method.loss(model, fake_batch([K.REAL, K.SBI, K.REAL, K.SBI]), method.stages()[0])
    assert "loss_transition" not in parts and torch.isfinite(parts["loss"])


def test_anchors_projection_and_fit():
    model = tiny().eval()
    # four centres in a 2-D subspace: the PCA plane keeps their distances exactly
    basis = torch.linalg.qr(torch.randn(16, 2))[0].T
    plane = torch.tensor([[0.0, 0.0], [1.0, 0.5], [2.0, 0.2], [3.0, 1.0]])
    centres = plane @ basis + 0.7
    model.set_anchors(centres)
    pts = model.anchor_points()
    assert torch.allclose(torch.cdist(pts, pts), torch.cdist(plane, plane), atol=1e-4)
    assert pts[3, 0] > pts[0, 0] and pts[0, 1] <= 0  # deterministic orientation
    from explain.prodet import path_position

    nearest, where = path_position(pts.numpy(), pts[2].numpy())
    assert nearest == 2 and where == pytest.approx(2.0, abs=1e-4)
    # fitting on data: the centres are the per-kind means of the pooled features (eval mode)
    batch = fake_batch()
    counts = fit_anchors(model, [batch])
    assert counts == {"real": 2, "sbi": 2, "donor": 2, "ae": 2} and float(model.anchors_fitted) == 2.0
    with torch.no_grad():
        feats = model(batch["image"])["features"]
    for i, k in enumerate((K.REAL, K.SBI, K.DONOR, K.DEEPFAKE)):
        assert torch.allclose(model.anchor_centres[i], feats[batch["kind"] == k].mean(0), atol=1e-5)
    with pytest.raises(ValueError, match="no samples"):
        fit_anchors(model, [fake_batch([K.REAL, K.SBI])])


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = tiny()
    fit_anchors(model, [fake_batch()])
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = create_detector("prodet_demo", str(tmp_path))
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)["logits"], loaded(x)["logits"])
    assert loaded.config.feature_dim == 16 and float(loaded.anchors_fitted) == 2.0


def test_inference_only_model_has_no_transition_blocks():
    model = tiny(transition_blocks=False)
    assert model.transition is None and not any(k.startswith("transition.") for k in model.state_dict())


def test_explanations(model):
    from explain.evidence import explain

    fit_anchors(model, [fake_batch()])
    rng = np.random.default_rng(0)
    aligned = AlignedFace(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), np.eye(2, 3),
                          np.zeros((478, 2), np.float32), CropPolicy(64))
    out, explanations = explain(model, aligned)
    by_kind = {e.kind: e for e in explanations}
    assert set(by_kind) == {"attributes", "attention", "gradcam", "path"}
    for kind in ("attention", "gradcam"):
        heat = by_kind[kind].heatmap
        assert heat.shape == (64, 64) and heat.min() >= 0 and heat.max() <= 1
    probs = out["aux"]["attributes"][0]
    assert by_kind["attributes"].data["blending"] == pytest.approx(float(probs[0]))
    assert by_kind["path"].data["fitted"] and by_kind["path"].data["nearest"] in by_kind["path"].caption
    bars = by_kind["attributes"].chart  # drawn by the browser: three bars, one per attribute head
    assert by_kind["attributes"].image is None and bars.values == pytest.approx(probs.tolist())
    assert bars.labels == ["blending", "identity", "generative"]
    for e in explanations:
        if e.kind != "attributes":
            assert e.image.dtype == np.uint8 and e.image.ndim == 3 and e.caption


# ---- the shipped demo checkpoint --------------------------------------------------------------
@pytest.mark.needs_data
def test_demo_checkpoint_loads_with_fitted_anchors():
    model = create_detector("prodet_demo")
    assert model.source == "demo" and model.config.input_size == 192
    assert float(model.anchors_fitted) == 2.0 and 0 < model.config.threshold < 1


@pytest.mark.needs_data
def test_anchor_items_hold_one_face_in_all_four_kinds():
    from training.methods.prodet import build_anchor_dataset

    cfg = build_detector("prodet_demo").config
    data = build_anchor_dataset({"pool": "../shared/data/ffhq128-real", "limit": 12, "augment": False}, cfg, "train")
    a, b = data[0], data[1]
    side = cfg.input_size  # the 128 px faces, up-sampled to what the tower takes
    assert a["image"].shape == (4, 3, side, side) and a["kind"].tolist() == [K.REAL, K.SBI, K.DONOR, K.DEEPFAKE]
    assert a["label"].tolist() == [0, 1, 1, 1]
    same = torch.corrcoef(a["image"].flatten(1))[0, 1:]
    other = torch.corrcoef(torch.stack([a["image"][0].flatten(), b["image"][0].flatten()]))[0, 1]
    assert bool((same > 0.8).all()) and float(other) < float(same.min())
