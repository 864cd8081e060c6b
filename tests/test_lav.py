"""Locate-and-Verify: output contract, MPFF/SRM behaviour, losses, save/load, explanations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detectors import build_detector, create_detector
from detectors.faces.align import AlignedFace, CropPolicy
from detectors.lav import LavConfig, SRMFilter, mpff, stage_sizes
from detectors.weight_files import has_weights

TINY = dict(stream="xception", input_size=64, crop_size=64, stem_channels=(8, 8), entry_channels=(8, 16, 24), middle_blocks=1,
            middle_reps=1, exit_channels=(16, 16, 16), score_channels=8, fusion_hidden=16, fusion_out=16,
            proj_dim=8)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_detector("lav_demo", **TINY).eval()


def _batch(b: int = 4, size: int = 64, masked_fakes: bool = True) -> dict:
    g = torch.Generator().manual_seed(1)
    image = torch.randn(b, 3, size, size, generator=g)
    label = torch.tensor([0, 1] * (b // 2))
    mask = torch.zeros(b, 1, size, size)
    if masked_fakes:
        mask[label == 1, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1.0
    return {"image": image, "label": label, "mask": mask, "kind": label.clone()}


def test_output_contract(tiny):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = tiny(x)
    g = tiny.grid_size
    assert g == 4 and out["logits"].shape == (2, 2) and out["features"].shape == (2, 16)
    assert ((out["prob_fake"] >= 0) & (out["prob_fake"] <= 1)).all()
    aux = out["aux"]
    assert aux["seg_logits"].shape == (2, 2, g, g) and aux["patch_embeddings"].shape == (2, 8, g, g)
    assert torch.allclose(aux["location"], aux["seg_logits"].softmax(1)[:, 1])
    sim = aux["patch_similarity"]
    assert sim.shape == (2, g, g) and sim.max() <= 1 + 1e-5
    peak = aux["location"].flatten(1).argmax(1)
    assert torch.allclose(sim.flatten(1)[torch.arange(2), peak], torch.ones(2), atol=1e-5)


def test_paper_geometry():
    # 299 px: stages 150, 75, 38, 19 (the patch grid) and a 10 x 10 exit flow.
    assert stage_sizes(299) == [150, 75, 38, 19, 10]
    assert stage_sizes(128)[3] == 8


def test_mpff_matches_unfold_reference():
    fa, fb = torch.randn(2, 5, 30, 30), torch.randn(2, 5, 8, 8)
    out = mpff(fa, fb, 8)  # 30 -> padded to 32 -> 4 x 4 windows -> 16 channels
    padded = F.pad(fa, (1, 1, 1, 1), mode="replicate")
    up = F.interpolate(fb, scale_factor=4, mode="nearest")
    ref = F.unfold(torch.tanh(padded * up).sum(1, keepdim=True), kernel_size=4, stride=4).view(2, 16, 8, 8)
    assert out.shape == (2, 16, 8, 8)
    assert torch.allclose(out, ref, atol=1e-5)


def test_srm_is_a_bounded_high_pass():
    srm = SRMFilter()
    flat = srm(torch.full((1, 3, 16, 16), 0.7))[..., 2:-2, 2:-2]
    assert flat.abs().max() < 1e-5
    noisy = srm(torch.randn(1, 3, 16, 16) * 10)
    assert noisy.abs().max() <= 3.0 and noisy.abs().max() > 1.0
    assert "weight" not in srm.state_dict()  # fixed filters are not checkpoint tensors


@pytest.mark.parametrize("masked_fakes", [True, False])
def test_loss_backpropagates(masked_fakes):
    from training.methods import get_method

    torch.manual_seed(0)
    model = build_detector("lav_demo", **TINY).train()
    method = get_method("lav", {"method": {"mixup_prob": 0.0}})
    stage = method.stages()[0]
    parts = method.loss(model, _batch(masked_fakes=masked_fakes), stage)
    assert set(parts) >= {"loss", "cls", "seg", "sspsl", "sim"} and torch.isfinite(parts["loss"])
    assert (parts["sspsl"] > 0) == (not masked_fakes)
    parts["loss"].backward()
    for module in (model.classifier, model.seg_head[-1], model.proj_head[-1], model.hf.conv1, model.rgb.conv1):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_mixup_runs():
    from training.methods import get_method

    method = get_method("lav", {"method": {"mixup_prob": 1.0}})
    model = build_detector("lav_demo", **TINY).train()
    parts = method.loss(model, _batch(), method.stages()[0])
    assert torch.isfinite(parts["loss"])


def test_pseudo_labels_follow_similarity():
    from training.methods.lav import prior_grid, sspsl_pseudo_labels

    g = 4
    real_dir, fake_dir = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    emb = real_dir.view(1, 2, 1, 1).repeat(3, 1, g, g)
    emb[1, :, :2, :] = fake_dir.view(2, 1, 1)  # sample 1 (fake): top half forged
    emb[2, :, :, :] = fake_dir.view(2, 1, 1)  # sample 2 (fake): all forged
    labels = torch.tensor([0, 1, 1])
    pseudo = sspsl_pseudo_labels(emb, labels, prior_grid(g, (0.0, 1.0), emb.device))
    assert pseudo[0].sum() == 0
    assert pseudo[1, :2].all() and pseudo[1, 2:].sum() == 0
    assert pseudo[2].all()


def test_mask_to_grid(tiny):
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 0:8, 0:8] = 1.0
    mask[..., 40:48, 40:48] = 0.05  # below the threshold
    grid = tiny.mask_to_grid(mask, threshold=0.1)
    assert grid.shape == (1, 4, 4) and grid[0, 0, 0] == 1 and grid.sum() == 1


def test_save_load_roundtrip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    loaded = create_detector("lav_demo", str(tmp_path)).eval()
    assert loaded.config == tiny.config
    a, b = tiny.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tiny(x)["logits"], loaded(x)["logits"])


def test_explanations_have_the_crop_size(tiny, astronaut):
    import cv2

    from explain.lav import explain, patch_similarity_row

    crop = cv2.resize(astronaut[0:260, 140:400], (64, 64), interpolation=cv2.INTER_AREA)
    aligned = AlignedFace(crop, np.eye(2, 3), np.zeros((478, 2), np.float32), CropPolicy(64))
    x = tiny.preprocess(aligned)
    with torch.no_grad():
        out = tiny(x)
    items = {e.kind: e for e in explain(tiny, aligned, x, out)}
    assert set(items) == {"lav_location", "lav_similarity", "lav_srm", "gradcam"}
    for kind in ("lav_location", "gradcam"):
        heat = items[kind].heatmap
        assert heat.shape == (64, 64) and 0 <= heat.min() and heat.max() <= 1
    assert np.isfinite(items["gradcam"].heatmap).all()
    for e in items.values():
        assert e.image.dtype == np.uint8 and e.image.ndim == 3 and e.caption
    sim = items["lav_similarity"].data
    row = patch_similarity_row(sim["patch_embeddings"], 5)
    assert row.shape == (4, 4) and abs(row.flat[5] - 1) < 1e-5


def test_full_config_is_the_paper_network():
    import timm

    from detectors.lav import stream_state_from_timm

    cfg = LavConfig()
    assert (cfg.input_size, cfg.mean, cfg.std) == (299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert cfg.pretrained_weights.startswith("timm/legacy_xception")
    model = build_detector("lav_full")
    assert model.grid_size == 19 and model.cls_size == 10
    assert model.seg_head[-1].in_channels == 728 + 64 + 16 + 4 + 1 + 1
    assert model.fusion.trans1.in_features == 64 + 128 + 256 + 728 + 728
    # Each stream takes timm legacy_xception ImageNet weights by name (RGB stream: no exit flow).
    timm_state = timm.create_model("legacy_xception", pretrained=False).state_dict()
    model.hf.load_state_dict(stream_state_from_timm(timm_state), strict=True)
    model.rgb.load_state_dict(stream_state_from_timm(timm_state, with_exit=False), strict=True)


def test_no_weight_decay_on_biases_and_norms():
    from training.methods import get_method

    model = build_detector("lav_demo", **TINY)
    decay, no_decay = get_method("lav").trainable_parameters(model, None)
    assert no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert any(p is model.lfga[0].gamma for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "checkpoints" / "lav"
needs_demo = pytest.mark.skipif(not has_weights(DEMO_DIR), reason="no shipped lav checkpoint")


@needs_demo
def test_demo_checkpoint_loads():
    model = create_detector("lav_demo")  # source "demo": assets/checkpoints/lav
    assert model.source == "demo" and model.config.name == "lav_demo" and model.grid_size == 8
    assert 0.0 < model.config.threshold < 1.0  # calibrated on the validation split

