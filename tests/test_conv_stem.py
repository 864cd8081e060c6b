"""The convolutional patch stem: a drop-in for a ViT's patchify conv, wired into the demo towers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from detectors import build_detector
from detectors.conv_stem import ConvStem, make_patch_stem

TINY_VLFFD = dict(vision_tower="clip", text_tower="clip", tokenizer="word", text_context=16, input_size=32,
                  patch_size=8, crop_size=48, vision_width=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                  text_width=32, text_layers=1, text_heads=2, text_mlp=64, embed_dim=16)


@pytest.mark.parametrize("patch,size", [(2, 16), (8, 32), (16, 64)])
def test_stem_gives_the_patchify_grid(patch, size):
    x = torch.randn(2, 3, size, size)
    patchify = nn.Conv2d(3, 20, patch, stride=patch)
    stem = ConvStem(3, 20, patch, width=4)
    assert stem(x).shape == patchify(x).shape == (2, 20, size // patch, size // patch)
    assert stem.weight is stem.proj.weight


def test_stem_rejects_what_it_cannot_build():
    with pytest.raises(ValueError, match="power-of-two"):
        ConvStem(3, 16, 12)
    with pytest.raises(ValueError, match="linear, conv"):
        make_patch_stem("resnet", 3, 16, 8)
    assert make_patch_stem("linear", 3, 16, 8) is None


def test_vlffd_clip_towers_take_the_conv_stem_and_full_the_patchify():
    assert build_detector("vlffd_full").config.patch_stem == "linear"
    conv = build_detector("vlffd_demo", patch_stem="conv", **TINY_VLFFD)
    linear = build_detector("vlffd_demo", patch_stem="linear", **TINY_VLFFD)
    assert isinstance(conv.vision.vision_model.embeddings.patch_embedding, ConvStem)
    assert type(linear.vision.vision_model.embeddings.patch_embedding) is nn.Conv2d
    with pytest.raises(ValueError, match="linear patch stem"):
        conv.load_pretrained_clip("openai/clip-vit-base-patch16")


def test_stem_is_trained_through_the_tower():
    torch.manual_seed(0)
    model = build_detector("vlffd_demo", patch_stem="conv", **TINY_VLFFD).train()
    out = model(torch.randn(4, 3, 32, 32), sentences=False)
    out["logits"][:, 1].sum().backward()
    stem = model.vision.vision_model.embeddings.patch_embedding
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())


def test_rffr_conv_stem_feeds_the_token_vits_and_blocks_the_mae_start():
    tiny = dict(input_size=56, patch_size=4, mae_dim=16, mae_depth=1, mae_heads=2, decoder_dim=16, decoder_depth=1,
                decoder_heads=2, vit_dim=16, vit_depth=1, vit_heads=2, crop_size=64, vit_layer_scale=0.0,
                feature_norm=False)
    conv = build_detector("rffr_demo", patch_stem="conv", stem_width=4, **tiny).eval()
    assert isinstance(conv.image_vit.patch_embed.proj, ConvStem)
    assert isinstance(conv.residual_vit.patch_embed.proj, ConvStem)
    assert isinstance(conv.mim.patch_embed.proj, nn.Conv2d)  # stage 1 keeps the MAE's patchify
    out = conv(torch.randn(2, 3, 56, 56))
    assert out["logits"].shape == (2, 2)
    assert not conv.init_vits_from_mim()
    assert build_detector("rffr_demo", **tiny).init_vits_from_mim()


def test_antifake_prompt_conv_stem_is_frozen_with_its_statistics_in_the_prompt_stage():
    from training.methods import get_method

    tiny = dict(input_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                num_query_tokens=4, qformer_hidden=32, qformer_layers=1, qformer_heads=2, qformer_mlp=64,
                lm_hidden=32, lm_layers=1, lm_heads=2, lm_mlp=64, patch_stem="conv", stem_width=4)
    torch.manual_seed(0)
    model = build_detector("antifake_prompt_demo", **tiny).train()
    stem = model.vlm.vision_model.embeddings.patch_embedding
    assert isinstance(stem, ConvStem)
    method = get_method("antifake_prompt", {"method": {"init_word": "real"}})
    _pretrain, prompt = method.stages()
    batch = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([0, 1])}
    stats = [b.clone() for b in stem.buffers()]
    assert torch.isfinite(method.loss(model, batch, prompt)["loss"])
    assert all(torch.equal(a, b) for a, b in zip(stats, stem.buffers()))  # frozen means eval-mode BN too
    with pytest.raises(ValueError, match="linear patch stem"):
        type(model)(model.config, vlm=model.vlm)
