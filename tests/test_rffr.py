"""RFFR: MAE residual geometry, the two-ViT detector contract, its training stages, explanations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors import build_detector, create_detector
from detectors.rffr import RFFRConfig, block_layout
from training.methods import get_method

# the demo's structure at toy widths, with plain ViT blocks (no LayerScale, no feature norm: what a
# from-scratch or MAE-started run uses)
TINY = dict(mae_dim=32, mae_depth=1, mae_heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2,
            vit_dim=32, vit_depth=1, vit_heads=2, vit_layer_scale=0.0, feature_norm=False)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_detector("rffr_demo", **TINY).eval()


def test_blocks_and_ring_partition_the_patch_grid():
    blocks, ring = block_layout(14, 3)
    assert blocks.shape == (16, 9) and ring.shape == (4, 13)
    every = torch.cat([blocks.reshape(-1), ring.reshape(-1)]).sort().values
    assert torch.equal(every, torch.arange(196))  # complementary masks: each patch exactly once
    rows, cols = blocks // 14, blocks % 14
    assert rows.min() == 1 and rows.max() == 12 and cols.min() == 1 and cols.max() == 12
    assert set((ring // 14).reshape(-1).tolist()) | set((ring % 14).reshape(-1).tolist()) >= {0, 13}
    with pytest.raises(ValueError):
        block_layout(12, 3)


def test_forward_contract_and_determinism(tiny):
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        out, again = tiny(x), tiny(x)
    assert out["logits"].shape == (2, 2) and out["features"].shape == (2, 64)
    assert ((out["prob_fake"] >= 0) & (out["prob_fake"] <= 1)).all()
    aux = out["aux"]
    assert aux["reconstruction"].shape == aux["residual"].shape == (2, 3, 112, 112)
    assert aux["discrepancy"].shape == (2, 1, 112, 112)
    assert aux["residual"].abs().max() <= 1 and aux["block_energy"].shape == (2, 16)
    assert torch.isfinite(aux["block_energy"]).all() and aux["residual_energy"].shape == (2,)
    assert torch.equal(out["logits"], again["logits"]) and torch.equal(aux["residual"], again["aux"]["residual"])
    # the dense map covers the border ring too
    assert (aux["discrepancy"][:, :, :8].abs().sum() > 0) and (aux["discrepancy"][:, :, :, :8].abs().sum() > 0)


def test_block_reconstruction_ignores_the_hidden_block(tiny):
    """Block 0 is rebuilt from its context only: changing its own pixels leaves its prediction alone."""
    x = torch.rand(1, 3, 112, 112)
    y = x.clone()
    y[:, :, 8:32, 8:32] = torch.rand(1, 3, 24, 24)  # block 0 = patch rows/cols 1..3 at patch 8
    norm = lambda t: (t - tiny.mean) / tiny.std
    a = tiny.residual(norm(x), torch.tensor([0]))
    b = tiny.residual(norm(y), torch.tensor([0]))
    assert torch.allclose(a["reconstruction"][..., 8:32, 8:32], b["reconstruction"][..., 8:32, 8:32], atol=1e-5)
    assert not torch.allclose(a["residual"][..., 8:32, 8:32], b["residual"][..., 8:32, 8:32])
    # outside the reconstructed block the residual is exactly 0 (the input is kept)
    assert a["residual"][..., 32:, :].abs().max() == 0 and a["residual"][..., :8, :].abs().max() == 0


def test_training_uses_sampled_blocks_and_both_stages_backpropagate(tiny):
    method = get_method("rffr")
    assert [(s.name, s.data) for s in method.stages()] == [("mim", "real_only"), ("detector", "mixed")]
    batch = {"image": torch.randn(4, 3, 112, 112), "label": torch.tensor([0, 1, 0, 1])}
    model = build_detector("rffr_demo", **TINY).train()
    torch.manual_seed(3)
    counts = {int(model(batch["image"])["aux"]["blocks"].numel()) for _ in range(12)}
    assert min(counts) < 16  # block sampling keeps a subset in training
    mixed = model.mim_loss(batch["image"], block_fraction=0.5)  # half the batch: inference-time block masks
    mixed.backward()
    assert torch.isfinite(mixed) and model.mim.blocks[0].attn.qkv.weight.grad is not None
    for stage in method.stages():
        groups = list(method.trainable_parameters(model, stage))
        trainable = {id(p) for group in groups for p in group["params"]}
        model.zero_grad(set_to_none=True)
        parts = method.loss(model, batch, stage)
        assert torch.isfinite(parts["loss"])
        parts["loss"].backward()
        mim_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mim.parameters())
        vit_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.residual_vit.parameters())
        if stage.name == "mim":
            assert mim_grad and not vit_grad
            assert id(model.mim.pos_embed) not in trainable and id(model.mim.blocks[0].attn.qkv.weight) in trainable
        else:
            assert vit_grad and not mim_grad  # the MIM model is frozen in stage 2
            assert not any(id(p) in trainable for p in model.mim.parameters())
            # the ViTs at the method's lr scale, the head at the recipe's
            vits = {id(p) for vit in (model.image_vit, model.residual_vit) for p in vit.parameters()}
            assert {id(p) for p in groups[0]["params"]} == vits and groups[0]["lr_scale"] == method.options.vit_lr_scale
            assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}


def test_detector_vits_can_start_from_the_mae_encoder(tmp_path):
    """Stage 2's offline start: both ViTs copy the MAE encoder; the image ViT folds in the
    ImageNet normalisation so it computes the MAE's features of the same face exactly."""
    torch.manual_seed(1)
    donor = build_detector("rffr_demo", **TINY)
    donor.save_pretrained(tmp_path)
    model = build_detector("rffr_demo", **TINY).eval()
    method = get_method("rffr", {"method": {"init_vits_from_mim": True, "mim_from": str(tmp_path)}})
    detector_stage = method.stages()[1]
    list(method.trainable_parameters(model, detector_stage))
    assert torch.equal(model.mim.blocks[0].attn.qkv.weight, donor.mim.blocks[0].attn.qkv.weight)
    assert float(model.vits_from_mim) == 1
    unit = torch.rand(2, 3, 112, 112)
    x = (unit - model.mean) / model.std
    with torch.no_grad():
        mae = model.mim.encode(unit, torch.arange(196).repeat(2, 1))
        vit = model.image_vit.tokens(x, torch.arange(196))
    assert torch.allclose(mae, vit, atol=1e-5)
    # a resumed stage 2 keeps its trained weights (the flag is part of the checkpoint)
    with torch.no_grad():
        model.residual_vit.blocks[0].attn.qkv.weight.add_(1.0)
    kept = model.residual_vit.blocks[0].attn.qkv.weight.clone()
    list(method.trainable_parameters(model, detector_stage))
    assert torch.equal(model.residual_vit.blocks[0].attn.qkv.weight, kept)


def test_save_load_round_trip_is_bit_exact(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    loaded = create_detector("rffr_demo", str(tmp_path))
    a, b = tiny.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("mim.") for k in a)  # the MAE is in the one checkpoint
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(tiny(x)["logits"], loaded(x)["logits"])


def test_gradcam_and_explanations_have_the_crop_size(tiny, astronaut):
    import cv2

    from detectors.faces.align import AlignedFace
    from explain.evidence import explain
    from explain.gradcam import grad_cam

    cam = grad_cam(tiny, torch.randn(1, 3, 112, 112))
    assert cam.shape == (112, 112) and 0 <= cam.min() and cam.max() <= 1
    crop = np.ascontiguousarray(astronaut[30:230, 150:350])
    aligned = AlignedFace(cv2.resize(crop, (128, 128)), np.eye(2, 3), np.zeros((478, 2), np.float32),
                          tiny.config.crop_policy)
    _, explanations = explain(tiny, aligned)
    kinds = [e.kind for e in explanations]
    assert kinds == ["reconstruction", "discrepancy", "block_energy", "gradcam"]
    for e in explanations:
        assert e.image.dtype == np.uint8 and e.image.ndim == 3 and e.caption
        if e.heatmap is not None:
            assert e.heatmap.shape == (128, 128) and e.heatmap.min() >= 0 and e.heatmap.max() <= 1
    assert explanations[1].heatmap is not None and explanations[1].heatmap.max() > 0


def test_gradcam_reusing_the_verdicts_residual_equals_a_fresh_forward(tiny, monkeypatch):
    from explain.gradcam import grad_cam
    from explain.rffr import reusing_residual

    torch.manual_seed(1)
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        out = tiny(x)
    fresh = grad_cam(tiny, x)
    calls = []
    monkeypatch.setattr(tiny.mim, "reconstruct", lambda *a, **k: calls.append(1))
    reused = grad_cam(tiny, x, forward=reusing_residual(tiny, out))
    assert not calls, "the frozen MAE ran again"
    assert fresh.max() > 0
    np.testing.assert_allclose(reused, fresh, atol=1e-5)


def test_full_config_is_the_papers():
    with torch.device("meta"):
        full = build_detector("rffr_full")
    c = full.config
    assert isinstance(c, RFFRConfig) and (c.input_size, c.patch_size, c.grid) == (224, 16, 14)
    assert (c.mae_dim, c.mae_depth, c.mae_heads, c.decoder_dim, c.decoder_depth) == (768, 12, 12, 512, 8)
    assert (c.vit_dim, c.vit_depth, c.mask_ratio, c.keep_prob, c.residual_gain) == (768, 12, 0.75, 0.25, 4.0)
    assert c.pretrained_weights and c.mean == (0.485, 0.456, 0.406)
    n_vit = sum(p.numel() for p in full.image_vit.parameters())
    assert 85e6 < n_vit < 87e6  # ViT-B/16
    demo = build_detector("rffr_demo").config
    assert demo.grid == 14 and demo.input_size <= 128  # same patch grid and block layout as the paper


@pytest.mark.needs_data
def test_shipped_demo_loads():
    model = create_detector("rffr_demo")
    assert model.source == "demo" and 0 < model.config.threshold < 1
    # both detector ViTs started from DINOv2 (LayerScale, linear patch stem); the MAE from scratch
    assert (model.config.patch_stem, model.config.vit_layer_scale, model.config.feature_norm) == ("linear", 1e-5, True)
    starts = {(r["module"], r["backbone"]) for r in model.config.extra["training"]["init"]}
    assert starts == {("image_vit", "dinov2_vits14"), ("residual_vit", "dinov2_vits14")}


def test_score_skips_the_ring_passes_and_equals_forward(tiny, monkeypatch):
    """Scores without explanations (video frames): the detector's P(fake) exactly, from the 16
    block passes only (the ring's 4 passes feed the discrepancy map alone)."""
    x = torch.rand(2, 3, tiny.config.input_size, tiny.config.input_size)
    tiny.eval()
    passes: list[int] = []
    reconstruct = tiny.mim.reconstruct
    monkeypatch.setattr(tiny.mim, "reconstruct",
                        lambda imgs, hidden: passes.append(hidden.shape[0]) or reconstruct(imgs, hidden))
    with torch.no_grad():
        expected = tiny(x)["prob_fake"]
        assert sum(passes) == 20  # 16 blocks + 4 ring sides
        passes.clear()
        got = tiny.fake_probability(x)
    assert torch.equal(got, expected)
    assert sum(passes) == 16
