"""VLFFD: output contract, sentence space, C2F losses, checkpoint round trip, explanations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from detectors import build_detector, create_detector
from detectors.vlffd import (
    REAL_SENTENCE,
    SENTENCE_REGIONS,
    TOKENIZER_FILE,
    WHOLE_FACE_SENTENCE,
    SentenceTokenizer,
    candidate_sentences,
    region_sentence,
)
from training.data import kinds
from training.methods import get_method
from training.methods.vlffd import symmetric_infonce

#: the paper's towers (CLIP's ViT and text transformer), tiny, on a conv stem with word-level tokens
TINY = dict(vision_tower="clip", text_tower="clip", tokenizer="word", patch_stem="conv", text_context=16,
            input_size=32, patch_size=8, crop_size=48, vision_width=32, vision_layers=1, vision_heads=2,
            vision_mlp=64, text_width=32, text_layers=1, text_heads=2, text_mlp=64, embed_dim=16)
#: the demo's towers (DINOv2-style ViT, BERT-style sentence encoder), tiny, the bottom block frozen
TINY_PRETRAINED_SHAPES = dict(input_size=28, patch_size=14, crop_size=48, vision_width=32, vision_layers=2,
                              vision_heads=2, vision_mlp=64, vision_trainable=1, text_width=32, text_layers=1,
                              text_heads=2, text_mlp=64, text_trainable=0, embed_dim=16)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_detector("vlffd_demo", **TINY).eval()


def fake_batch(size: int = 32, n: int = 6) -> dict:
    """reals, region forgeries with their sentences, and coarse SBI fakes without one."""
    g = torch.Generator().manual_seed(1)
    kind = torch.tensor([kinds.REAL, kinds.REGION, kinds.REGION, kinds.SBI, kinds.REAL, kinds.REGION])[:n]
    regions = torch.zeros(n, len(kinds.SENTENCE_REGIONS))
    regions[1, [0, 5]] = 1
    regions[2, 4] = 1
    regions[5, [0, 5]] = 1
    sentences = [region_sentence([r for r, on in zip(kinds.SENTENCE_REGIONS, row) if on]) if k != kinds.SBI else ""
                 for k, row in zip(kind.tolist(), regions)]
    return {"image": torch.randn(n, 3, size, size, generator=g), "label": (kind != kinds.REAL).long(), "kind": kind,
            "mask": torch.zeros(n, 1, size, size), "regions": regions, "sentence": sentences,
            "video_id": [str(i) for i in range(n)]}


def test_the_engine_writes_the_detectors_sentences():
    """One grammar: the forgery engine re-exports ``detectors.sentences`` instead of keeping a copy."""
    from detectors import sentences as grammar
    from training.data import sentences as engine

    assert kinds.SENTENCE_REGIONS is grammar.SENTENCE_REGIONS is SENTENCE_REGIONS
    assert engine.region_sentence is grammar.region_sentence is region_sentence
    assert engine.parse_sentence is grammar.parse_sentence
    assert engine.PART_NAMES is grammar.PART_NAMES
    assert engine.REAL_SENTENCE == REAL_SENTENCE and engine.WHOLE_FACE_SENTENCES[kinds.REGION] == WHOLE_FACE_SENTENCE
    coarse = tuple(engine.WHOLE_FACE_SENTENCES[k] for k in (kinds.SBI, kinds.DONOR, kinds.DEEPFAKE))
    assert coarse == grammar.COARSE_SENTENCES
    ours, named = candidate_sentences()
    for sentence, regions in zip(ours, named):
        assert engine.parse_sentence(sentence) == set(regions), sentence


def test_the_shipped_vocabulary_is_the_grammars():
    """The demo checkpoint's word vocabulary was built from these sentences: a reworded sentence
    would leave words the checkpoint never saw."""
    import json
    from pathlib import Path

    from detectors.vlffd import default_vocab

    config = json.loads((Path(__file__).resolve().parent.parent / "assets/checkpoints/vlffd/config.json").read_text())
    assert tuple(config["vocab"]) == default_vocab(tuple(config["regions"]), config["max_parts"])
    if config.get("text_tower") == "bert":  # its WordPiece pieces cover every word of that vocabulary
        from detectors.towers import PieceTokenizer

        tok = PieceTokenizer(config["text_pieces"], config["text_context"])
        words = [w for w in config["vocab"] if not w.startswith("[")]
        ids, _ = tok(words)
        assert not (ids == config["text_pieces"].index("[UNK]")).any()


def test_candidate_sentences():
    sentences, named = candidate_sentences(max_parts=3)
    parts = len(SENTENCE_REGIONS) - 1
    assert len(sentences) == 2 + parts + math.comb(parts, 2) + math.comb(parts, 3) == len(set(sentences))
    assert sentences[0] == REAL_SENTENCE and named[0] == ()
    assert WHOLE_FACE_SENTENCE in sentences
    assert "The left eye and the mouth of this face are forged." in sentences
    assert "Both eyes and the nose of this face are forged." in sentences
    assert region_sentence(["mouth", "nose", "left_eye"]) == "The left eye, the nose and the mouth of this face are forged."


def test_word_tokenizer(tiny):
    tok = tiny.tokenizer
    assert isinstance(tok, SentenceTokenizer)
    ids, mask = tok(["The left eye and the mouth of this face are forged.", "This face is real.", "zebra!"])
    assert ids.shape == mask.shape == (3, tiny.config.text_context)
    assert (ids[:, 0] == tok.bos_id).all()
    assert ((ids == tok.eos_id).sum(1) == 1).all()
    assert (ids[2] == 1).any(), "an unknown word maps to [UNK]"
    assert not torch.equal(ids[0], ids[1])
    assert int(ids.max()) < tiny.config.text_vocab_size
    from detectors.vlffd import COARSE_SENTENCES

    every, _ = tok(list(tiny.sentences) + list(COARSE_SENTENCES))
    assert not (every == 1).any(), "every sentence the engine writes is in the vocabulary"


def test_forward_contract(tiny):
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = tiny(x)
    n = len(tiny.sentences)
    assert out["logits"].shape == (3, 2) and out["features"].shape == (3, 16)
    assert ((out["prob_fake"] >= 0) & (out["prob_fake"] <= 1)).all()
    aux = out["aux"]
    assert aux["sentence_probs"].shape == (3, n)
    assert torch.allclose(aux["sentence_probs"].sum(-1), torch.ones(3), atol=1e-5)
    assert aux["region_scores"].shape == aux["region_probs"].shape == (3, len(SENTENCE_REGIONS))
    # region score = probability mass of the sentences that name the region
    p = aux["sentence_probs"][0]
    j = SENTENCE_REGIONS.index("nose")
    naming = [i for i, named in enumerate(tiny.sentence_regions) if "nose" in named]
    assert torch.isclose(aux["region_scores"][0, j], p[naming].sum(), atol=1e-6)
    assert torch.allclose(aux["text_prob_fake"], 1 - aux["sentence_probs"][:, 0])
    assert len(tiny.describe(out, 1, top_k=3)) == 3


def test_text_cache_follows_weights():
    model = build_detector("vlffd_demo", **TINY).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)["aux"]["sentence_logits"].clone()
        cached = model._text_cache
        model.eval()  # every decision calls eval(): the sentence embeddings stay cached
        assert cached is not None and model._text_cache is cached
        model.train()
        model.text.text_projection.weight.mul_(-1.0)  # the CLIP text tower (TINY)
        model.eval()
        after = model(x)["aux"]["sentence_logits"]
    assert not torch.allclose(before, after)


def test_infonce_treats_a_shared_sentence_as_one_text():
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    sentences = ["a", "a", "b", "c"]
    image = text[[0, 0, 1, 2]]
    aligned = symmetric_infonce(image, sentences, text, torch.tensor(100.0))
    assert aligned < 0.4  # two reals sharing "a" are not each other's negatives
    shuffled = symmetric_infonce(image[[2, 3, 0, 1]], sentences, text, torch.tensor(100.0))
    assert shuffled > aligned + 5


def test_c2f_loss_backpropagates():
    torch.manual_seed(0)
    model = build_detector("vlffd_demo", **TINY).train()
    method = get_method("vlffd", {"method": {"region_weight": 0.5}})
    groups = list(method.trainable_parameters(model, method.stages()[0]))
    params = [q for g in groups for q in g["params"]]
    batch = fake_batch()
    parts = method.loss(model, batch, method.stages()[0])
    assert parts["loss"].ndim == 0 and torch.isfinite(parts["loss"])
    assert parts["itc"] > 0 and parts["region"] > 0
    parts["loss"].backward()
    for name, module in [("vision", model.vision), ("text", model.text), ("head", model.head)]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0
    assert len(params) == len(list(model.parameters()))


def test_coarse_only_batch_skips_itc():
    model = build_detector("vlffd_demo", **TINY).train()
    method = get_method("vlffd")
    batch = fake_batch()
    batch["kind"] = torch.full_like(batch["kind"], kinds.SBI)
    parts = {k: v.detach() for k, v in method.loss(model, batch, method.stages()[0]).items()}
    assert float(parts["itc"]) == 0.0 and float(parts["loss"]) == pytest.approx(float(parts["cls"]))


def test_curriculum_stages_carry_their_loss_weights():
    torch.manual_seed(0)
    model = build_detector("vlffd_demo", **TINY).train()
    method = get_method("vlffd", {"method": {"region_weight": 0.5, "stages": ["warmup", "c2f"],
                                             "stage_weights": {"warmup": {"itc_weight": 0, "region_weight": 0}}}})
    warmup, c2f = method.stages()
    assert [warmup.name, c2f.name] == ["warmup", "c2f"]
    batch = fake_batch()
    coarse = {k: v.detach() for k, v in method.loss(model, batch, warmup).items()}
    assert float(coarse["itc"]) == 0.0 and float(coarse["loss"]) == pytest.approx(float(coarse["cls"]))
    full = {k: v.detach() for k, v in method.loss(model, batch, c2f).items()}
    assert full["itc"] > 0 and full["region"] > 0
    expected = full["cls"] + full["itc"] + 0.5 * full["region"]
    assert float(full["loss"]) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"stages": ["a", "a"]}, "distinct"),
    ({"stages": ["a"], "stage_weights": {"b": {"itc_weight": 0}}}, "not in method.stages"),
    ({"stages": ["a"], "stage_weights": {"a": {"itc": 0}}}, "unknown key"),
])
def test_bad_stage_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        get_method("vlffd", {"method": options})


def test_freeze_text_leaves_text_tower_out():
    from training.engine.optim import param_groups

    model = build_detector("vlffd_demo", **TINY)
    method = get_method("vlffd", {"method": {"freeze_text": True, "backbone_lr_scale": 0.1}})
    groups = param_groups(method.trainable_parameters(model, method.stages()[0]), 1e-4)
    assert [g["lr"] for g in groups] == pytest.approx([1e-5, 1e-4])
    assert any(id(q) == id(model.logit_scale) for q in groups[1]["params"])
    params = {id(q) for g in method.trainable_parameters(model, method.stages()[0]) for q in g["params"]}
    assert not any(id(p) in params for p in model.text.parameters())
    assert id(model.logit_scale) in params


def test_save_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    assert (tmp_path / TOKENIZER_FILE).is_file()
    loaded = create_detector("vlffd_demo", str(tmp_path))
    assert loaded.config == tiny.config
    state = load_file(str(tmp_path / "model.safetensors"))
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k]), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = tiny(x), loaded(x)
    assert torch.equal(a["logits"], b["logits"])
    assert torch.equal(a["aux"]["sentence_probs"], b["aux"]["sentence_probs"])
    from tokenizers import Tokenizer

    saved = Tokenizer.from_file(str(tmp_path / TOKENIZER_FILE))
    assert saved.encode(REAL_SENTENCE).ids == loaded.tokenizer([REAL_SENTENCE])[0][0].tolist()


def test_tokenizer_file_must_match_the_config(tiny, tmp_path):
    from detectors.errors import CheckpointCorrupted

    tiny.save_pretrained(tmp_path)
    other = SentenceTokenizer(tiny.config.vocab[:4] + tuple(reversed(tiny.config.vocab[4:])), 16)
    other.save(tmp_path / TOKENIZER_FILE)
    with pytest.raises(CheckpointCorrupted):
        create_detector("vlffd_demo", str(tmp_path))


def test_gradcam_and_region_map(tiny, astronaut):
    from detectors.faces import detect_faces
    from explain.evidence import explain
    from explain.gradcam import grad_cam

    x = torch.randn(1, 3, 32, 32)
    cam = grad_cam(tiny, x)
    assert cam.shape == (32, 32) and np.isfinite(cam).all()
    aligned = tiny.crop(astronaut, detect_faces(astronaut)[0])
    _out, explanations = explain(tiny, aligned)
    kinds_ = [e.kind for e in explanations]
    assert kinds_ == ["vlffd_regions", "vlffd_region_bars", "gradcam"]
    regions = explanations[0]
    bars = explanations[1].chart  # one bar per part, drawn by the browser, the same scores as the map's
    assert explanations[1].image is None and len(bars.colours) == len(bars.labels)
    assert bars.values == pytest.approx(sorted(regions.data["region_scores"].values(), reverse=True))
    assert regions.heatmap.shape == aligned.image.shape[:2]
    assert 0 <= regions.heatmap.min() and regions.heatmap.max() <= 1
    assert regions.data["sentence"] in tiny.sentences
    # the map paints each region with its score: only the mouth scored -> bright mouth, dark elsewhere
    from detectors.faces import region_mask
    from explain.vlffd import region_map

    size = aligned.image.shape[:2]
    scores = {r: 0.0 for r in SENTENCE_REGIONS} | {"mouth": 0.7}
    heat = region_map(aligned.landmarks, scores, size)
    mouth = region_mask(aligned.landmarks, "mouth", size) > 0.99
    forehead = region_mask(aligned.landmarks, "forehead", size) > 0.99
    assert 0.5 < heat[mouth].max() <= 0.7 + 1e-6
    assert heat[forehead].max() < 0.05
    assert explanations[2].heatmap.shape == aligned.image.shape[:2]


def test_full_config_is_clip_b16():
    with torch.device("meta"):
        full = build_detector("vlffd_full")
    cfg = full.config
    assert (cfg.input_size, cfg.patch_size, cfg.vision_width, cfg.vision_layers) == (224, 16, 768, 12)
    assert (cfg.text_width, cfg.text_layers, cfg.text_context, cfg.text_vocab_size) == (512, 12, 77, 49408)
    assert cfg.pretrained_weights == "openai/clip-vit-base-patch16"
    assert 85e6 < sum(p.numel() for p in full.vision.parameters()) < 88e6
    assert 62e6 < sum(p.numel() for p in full.text.parameters()) < 65e6
    demo = build_detector("vlffd_demo")
    cfg = demo.config
    assert (cfg.vision_tower, cfg.text_tower) == ("vit", "bert")
    assert (cfg.input_size, cfg.patch_size, cfg.vision_width, cfg.vision_layers) == (126, 14, 384, 6)  # DINOv2 ViT-S/14
    assert 10e6 < sum(p.numel() for p in demo.vision.parameters()) < 12e6  # its first six blocks
    assert cfg.text_vocab_size == len(cfg.text_pieces) < 400  # the pruned WordPiece table
    ids, mask = demo.tokenizer(list(demo.sentences))
    assert not (ids == cfg.text_pieces.index("[UNK]")).any(), "every candidate sentence tokenizes without [UNK]"
    assert int(mask.sum(1).max()) < cfg.text_context, "no candidate sentence is truncated"


def test_demo_towers_forward_train_and_round_trip(tmp_path):
    """The DINOv2/BERT-shaped towers: the output contract, gradients only into what is trained,
    and a checkpoint that reloads to the same outputs."""
    torch.manual_seed(0)
    model = build_detector("vlffd_demo", **TINY_PRETRAINED_SHAPES).train()
    method = get_method("vlffd", {"method": {"region_weight": 0.5}})
    batch = fake_batch(size=28)
    parts = method.loss(model, batch, method.stages()[0])
    parts["loss"].backward()
    assert parts["itc"] > 0
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("vision.vit.blocks.1.") for n in trained)
    assert not any(n.startswith(("vision.vit.blocks.0.", "vision.vit.patch_embed", "text.bert.")) for n in trained)
    assert {"vision_proj.weight", "text_proj.weight", "head.weight", "logit_scale"} <= trained
    model.eval().save_pretrained(tmp_path)
    loaded = create_detector("vlffd_demo", str(tmp_path))
    assert loaded.config == model.config
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert a["logits"].shape == (2, 2) and a["aux"]["sentence_probs"].shape == (2, len(model.sentences))
    assert torch.equal(a["logits"], b["logits"])
    assert torch.equal(a["aux"]["sentence_probs"], b["aux"]["sentence_probs"])


# ---- the shipped demo checkpoint (needs ../shared/data and assets/checkpoints/vlffd) -----------

@pytest.mark.needs_data
def test_demo_checkpoint_loads():
    model = create_detector("vlffd_demo")
    assert model.source == "demo" and model.config.name == "vlffd_demo"
    assert 0.0 < model.config.threshold < 1.0
    assert model.tokenizer([REAL_SENTENCE])[0].shape == (1, model.config.text_context)

