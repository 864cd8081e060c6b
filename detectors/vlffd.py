"""VLFFD: visual-linguistic face forgery detection with fine-grained sentence prompts.

Paper: Ke Sun, Shen Chen, Taiping Yao, Xiaoshuai Sun, Shouhong Ding, Rongrong Ji,
"Towards General Visual-Linguistic Face Forgery Detection", arXiv:2307.16545 (v1, 2023).
The paper (1) makes *mixed* forgeries with a Prompt Forgery Image Generator (PFIG): chosen
facial parts of a forged face are blended into a real one and a sentence saying which parts
were forged is written automatically; (2) trains a Coarse-and-Fine co-training framework
(C2F): one visual backbone learns the coarse real/fake task on ordinary data together with an
image-text alignment on the fine-grained (image, sentence) data.

This is a *reconstruction*: no official code exists for v1 (the code released as
``skJack/VLFFD`` belongs to the different CVPR 2025 paper of the same title), and the paper
text could not be read from this machine. Every open choice, as implemented here:

- Towers: CLIP's ViT image tower and CLIP's causal text transformer, each with its linear
  projection into a shared embedding (transformers' ``CLIP{Vision,Text}ModelWithProjection``).
  ``full`` = the ViT-B/16 @ 224 px + 12-layer/512-wide text shapes of
  ``openai/clip-vit-base-patch16`` (built from a config, no download; a user online starts
  from those weights with :meth:`VlffdDetector.load_pretrained_clip`). ``demo`` = the same
  two towers, scaled down (ViT patch 8 @ 96 px, 2-layer text tower) and trained from scratch.
- Coarse head: a linear layer on the (un-normalised) projected image embedding -> 2 logits;
  ``prob_fake`` comes from this head only (the paper's binary verdict).
- Fine task: symmetric InfoNCE between L2-normalised image and sentence embeddings with a
  learnable temperature initialised at 0.07 (CLIP's, clamped at 1/100). Identical sentences
  in a batch ("This face is real." for every real) are *one* text with several positive
  images (multi-positive text-to-image term) rather than false negatives.
- Optional multi-label region head (linear, sigmoid per region of ``regions``); trained with
  BCE only when the recipe gives it a weight (the paper does not describe one).
- Sentences: the forgery engine's templates over ``training.data.kinds.SENTENCE_REGIONS``
  ("The left eye and the mouth of this face are forged.", "This face is real."); regions are
  named in the person's left/right and listed in that tuple's order. The paper's sentences
  also name the manipulation method (Deepfakes/Face2Face/...); ours do not, as our region
  forgeries all come from one engine.
- Text tokenizer: ``demo`` uses an offline word-level tokenizer (``tokenizers`` library) over
  the fixed sentence vocabulary. The vocabulary is a config field, so ``config.json`` alone
  rebuilds it exactly (Hub loading needs no extra file); ``tokenizer.json`` is also written
  beside it for other tools. ``full`` names CLIP's BPE tokenizer and falls back to the
  word-level one (ids inside CLIP's vocabulary) when it cannot be loaded offline.
- Inference: all candidate sentences (every combination of 1..``max_parts`` parts among the
  regions other than ``face``, the whole-face sentence and the real sentence) are embedded
  once and cached while the model is in eval mode. ``aux`` gets the softmax over candidates
  at the learned temperature, the most likely sentence, and a per-region score = the
  probability mass of the candidates that name that region (marginalisation); the region
  head's probabilities are added when present.
- Grad-CAM hooks ``layer_norm1`` of the last ViT block (tokens -> grid, CLS dropped).
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Detector
from .config import DetectorConfig
from .registry import register_detector

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_NAME = "openai/clip-vit-base-patch16"
TOKENIZER_FILE = "tokenizer.json"

#: Same tuple as ``training.data.kinds.SENTENCE_REGIONS`` (detectors never import training).
SENTENCE_REGIONS = ("left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth",
                    "left_cheek", "right_cheek", "forehead", "face")
WHOLE_FACE = "face"
REAL_SENTENCE = "This face is real."
WHOLE_FACE_SENTENCE = "The whole face is forged."
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
#: Words the tokenizer knows beyond the templates' own (paraphrases a user may type).
EXTRA_WORDS = ("eyebrow", "eyebrows", "eyes", "brows", "cheeks", "fake", "manipulated", "synthesized", "entire",
               "image", "photo", "a", "is", "are", "and", "not", "forgery", "region", "part", "parts")


def region_phrase(region: str) -> str:
    """``left_eye`` -> ``left eye``."""
    return region.replace("_", " ")


def region_sentence(regions: Sequence[str]) -> str:
    """The sentence for a set of forged regions (empty = real face)."""
    parts = [r for r in regions]
    if not parts:
        return REAL_SENTENCE
    if WHOLE_FACE in parts:
        return WHOLE_FACE_SENTENCE
    named = [f"the {region_phrase(r)}" for r in parts]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    verb = "is" if len(named) == 1 else "are"
    return f"{listed[0].upper()}{listed[1:]} of this face {verb} forged."


def candidate_sentences(regions: Sequence[str] = SENTENCE_REGIONS, max_parts: int = 3
                        ) -> tuple[list[str], list[tuple[str, ...]]]:
    """Every sentence the detector may answer, with the regions each one names.

    Order: the real sentence, the whole-face sentence, then part combinations by size in the
    order of ``regions``.
    """
    parts = [r for r in regions if r != WHOLE_FACE]
    sentences, named = [REAL_SENTENCE], [()]
    if WHOLE_FACE in regions:
        sentences.append(WHOLE_FACE_SENTENCE)
        named.append((WHOLE_FACE,))
    for k in range(1, max_parts + 1):
        for combo in itertools.combinations(parts, k):
            sentences.append(region_sentence(combo))
            named.append(combo)
    return sentences, named


def default_vocab(regions: Sequence[str] = SENTENCE_REGIONS, max_parts: int = 3) -> tuple[str, ...]:
    """Special tokens, then every word of the candidate sentences and :data:`EXTRA_WORDS`, sorted."""
    words: set[str] = set(EXTRA_WORDS)
    for sentence in candidate_sentences(regions, max_parts)[0]:
        words.update(_split_words(sentence))
    return SPECIAL_TOKENS + tuple(sorted(words))


def _split_words(sentence: str) -> list[str]:
    from tokenizers.pre_tokenizers import Whitespace

    return [w.lower() for w, _ in Whitespace().pre_tokenize_str(sentence)]


class SentenceTokenizer:
    """Sentences -> (ids, attention mask) of a fixed length, for the CLIP text tower."""

    def __init__(self, vocab: Sequence[str], context: int) -> None:
        from tokenizers import Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordLevel
        from tokenizers.processors import TemplateProcessing

        if tuple(vocab[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a word vocabulary starts with {SPECIAL_TOKENS}")
        table = {w: i for i, w in enumerate(vocab)}
        tok = Tokenizer(WordLevel(table, unk_token="[UNK]"))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.post_processor = TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[
            ("[BOS]", table["[BOS]"]), ("[EOS]", table["[EOS]"])])
        tok.enable_truncation(max_length=context)
        tok.enable_padding(pad_id=table["[PAD]"], pad_token="[PAD]", length=context)
        self.backend = tok
        self.pad_id, self.bos_id, self.eos_id = table["[PAD]"], table["[BOS]"], table["[EOS]"]

    def __call__(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.backend.encode_batch(list(sentences))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        return ids, mask

    def save(self, path: Path) -> None:
        self.backend.save(str(path))


class ClipBpeTokenizer:
    """CLIP's own BPE tokenizer (needs the Hub or a local cache), padded to ``context``."""

    def __init__(self, name: str, context: int) -> None:
        from transformers import CLIPTokenizerFast

        self.backend = CLIPTokenizerFast.from_pretrained(name)
        self.context = context

    def __call__(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.backend(list(sentences), padding="max_length", truncation=True, max_length=self.context,
                           return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def save(self, path: Path) -> None:
        self.backend.backend_tokenizer.save(str(path))


@dataclass
class VlffdConfig(DetectorConfig):
    """VLFFD's towers, sentence space and temperature. Defaults = ``vlffd_full``."""

    input_size: int = 224
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    pretrained_weights: str = CLIP_NAME
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp: int = 3072
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    text_mlp: int = 2048
    text_context: int = 77
    text_vocab_size: int = 49408
    embed_dim: int = 512
    #: ``word`` (offline word-level over ``vocab``) or a Hub tokenizer name (CLIP's BPE)
    tokenizer: str = CLIP_NAME
    vocab: tuple[str, ...] = ()  # word-level vocabulary in id order; empty = default_vocab()
    regions: tuple[str, ...] = SENTENCE_REGIONS
    max_parts: int = 3
    region_head: bool = True
    init_temperature: float = 0.07
    hidden_act: str = "quick_gelu"


class VlffdDetector(Detector):
    family = "vlffd"
    display_name = "VLFFD (sentence prompts)"
    paper = "Sun et al., Towards General Visual-Linguistic Face Forgery Detection, arXiv:2307.16545 (2023)"
    config_class = VlffdConfig

    def __init__(self, config: VlffdConfig) -> None:
        super().__init__(config)
        from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                                  CLIPVisionModelWithProjection)

        if config.input_size % config.patch_size:
            raise ValueError(f"input_size {config.input_size} is not a multiple of patch_size {config.patch_size}")
        if not config.vocab:
            config.vocab = default_vocab(config.regions, config.max_parts)
        vision_cfg = CLIPVisionConfig(
            hidden_size=config.vision_width, intermediate_size=config.vision_mlp, num_hidden_layers=config.vision_layers,
            num_attention_heads=config.vision_heads, image_size=config.input_size, patch_size=config.patch_size,
            projection_dim=config.embed_dim, hidden_act=config.hidden_act)
        text_cfg = CLIPTextConfig(
            vocab_size=config.text_vocab_size, hidden_size=config.text_width, intermediate_size=config.text_mlp,
            num_hidden_layers=config.text_layers, num_attention_heads=config.text_heads,
            max_position_embeddings=config.text_context, projection_dim=config.embed_dim,
            hidden_act=config.hidden_act, **self._special_ids(config))
        for cfg in (vision_cfg, text_cfg):
            cfg._attn_implementation = "sdpa"
        self.vision = CLIPVisionModelWithProjection(vision_cfg)
        self.text = CLIPTextModelWithProjection(text_cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
        self.head = nn.Linear(config.embed_dim, 2)
        self.region_head = nn.Linear(config.embed_dim, len(config.regions)) if config.region_head else None
        self.sentences, self.sentence_regions = candidate_sentences(config.regions, config.max_parts)
        membership = torch.zeros(len(self.sentences), len(config.regions))
        for i, named in enumerate(self.sentence_regions):
            for r in named:
                membership[i, config.regions.index(r)] = 1.0
        self.register_buffer("membership", membership, persistent=False)
        self._tokenizer: Any = None
        self._text_cache: torch.Tensor | None = None

    # ---- text side -------------------------------------------------------------------------
    @staticmethod
    def _special_ids(config: VlffdConfig) -> dict[str, int]:
        if config.tokenizer == "word":
            return {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
        return {"pad_token_id": 1, "bos_token_id": 49406, "eos_token_id": 49407}

    @property
    def tokenizer(self):
        """The sentence tokenizer (built on first use)."""
        if self._tokenizer is None:
            cfg = self.config
            if cfg.tokenizer == "word":
                self._tokenizer = SentenceTokenizer(cfg.vocab, cfg.text_context)
            else:
                try:
                    self._tokenizer = ClipBpeTokenizer(cfg.tokenizer, cfg.text_context)
                except (OSError, ValueError) as exc:  # offline: word-level ids fit inside CLIP's vocabulary
                    log.warning("VLFFD: tokenizer %s unavailable (%s); using the word-level one", cfg.tokenizer, exc)
                    self._tokenizer = _OffsetWordTokenizer(cfg.vocab, cfg.text_context)
        return self._tokenizer

    def encode_text(self, sentences: Sequence[str]) -> torch.Tensor:
        """L2-normalised sentence embeddings (N, D)."""
        ids, mask = self.tokenizer(sentences)
        device = self._device()
        out = self.text(input_ids=ids.to(device), attention_mask=mask.to(device))
        return F.normalize(out.text_embeds.float(), dim=-1)

    def candidate_embeddings(self) -> torch.Tensor:
        """Embeddings of all candidate sentences; cached in eval mode, fresh in training."""
        if self.training:
            return self.encode_text(self.sentences)
        cache = self._text_cache
        if cache is None or cache.device != self._device():
            with torch.no_grad():
                cache = self.encode_text(self.sentences)
            self._text_cache = cache
        return cache

    def train(self, mode: bool = True) -> "VlffdDetector":
        self._text_cache = None  # weights may change while training
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._text_cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def temperature_scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at 100 as CLIP does."""
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    # ---- image side ------------------------------------------------------------------------
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Projected image embedding (B, D), not normalised."""
        return self.vision(pixel_values=x).image_embeds

    def forward(self, x: torch.Tensor, sentences: bool | None = None) -> dict[str, Any]:
        """Coarse verdict from the head; the sentence space too unless training (``sentences``)."""
        embeds = self.encode_image(x)
        logits = self.head(embeds)
        image = F.normalize(embeds.float(), dim=-1)
        aux: dict[str, Any] = {"image_embeds": image}
        if self.region_head is not None:
            region_logits = self.region_head(embeds)
            aux["region_logits"] = region_logits
            aux["region_probs"] = region_logits.float().sigmoid()
        if sentences if sentences is not None else not self.training:
            sims = self.temperature_scale * image @ self.candidate_embeddings().t()
            probs = sims.softmax(-1)
            aux.update(sentence_logits=sims, sentence_probs=probs, sentence_index=probs.argmax(-1),
                       region_scores=probs @ self.membership, text_prob_fake=1.0 - probs[:, 0])
        return self.outputs(logits, embeds, **aux)

    def describe(self, out: dict[str, Any], index: int = 0, top_k: int = 3) -> list[tuple[str, float]]:
        """The ``top_k`` candidate sentences of sample ``index`` with their probabilities."""
        probs = out["aux"]["sentence_probs"][index].detach().float().cpu()
        values, order = probs.topk(min(top_k, len(self.sentences)))
        return [(self.sentences[i], float(v)) for v, i in zip(values.tolist(), order.tolist())]

    # ---- explainers' contract --------------------------------------------------------------
    def target_layers(self) -> list[nn.Module]:
        return [self.vision.vision_model.encoder.layers[-1].layer_norm1]

    def reshape_transform(self, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(B, 1 + g*g, C) ViT tokens -> (B, C, g, g), CLS dropped."""
        grid = self.config.input_size // self.config.patch_size
        return tokens[:, 1:, :].reshape(tokens.shape[0], grid, grid, tokens.shape[-1]).permute(0, 3, 1, 2)

    # ---- checkpoints -----------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        if self.config.tokenizer == "word":
            self.tokenizer.save(Path(save_directory) / TOKENIZER_FILE)

    def load_pretrained_clip(self, name: str | None = None) -> None:
        """Fill both towers from CLIP weights on the Hub (for a user online; full shapes only)."""
        from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

        name = name or self.config.pretrained_weights
        self.vision.load_state_dict(CLIPVisionModelWithProjection.from_pretrained(name).state_dict())
        self.text.load_state_dict(CLIPTextModelWithProjection.from_pretrained(name).state_dict())
        self._text_cache = None


class _OffsetWordTokenizer(SentenceTokenizer):
    """Word-level ids with CLIP's pad/BOS/EOS ids, for a CLIP-shaped text tower offline."""

    def __call__(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = super().__call__(sentences)
        out = ids + 100  # clear of CLIP's special ids
        out[ids == self.pad_id] = 1
        out[ids == self.bos_id] = 49406
        out[ids == self.eos_id] = 49407
        return out, mask


DEMO = dict(input_size=96, patch_size=8, crop_size=128, crop_margin=1.3, vision_width=128, vision_layers=4,
            vision_heads=4, vision_mlp=512, text_width=64, text_layers=2, text_heads=2, text_mlp=256,
            text_context=16, embed_dim=128, tokenizer="word", pretrained_weights="")


@register_detector
def vlffd_full(**overrides: Any) -> VlffdDetector:
    """CLIP ViT-B/16 @ 224 + CLIP text transformer (openai/clip-vit-base-patch16 shapes)."""
    return VlffdDetector(VlffdConfig(name="vlffd_full").updated(**overrides))


@register_detector
def vlffd_demo(**overrides: Any) -> VlffdDetector:
    """The same towers scaled down for 2 CPU cores: ViT patch 8 @ 96 px, word-level text tower."""
    cfg = VlffdConfig(name="vlffd_demo").updated(**DEMO)
    cfg = cfg.updated(**overrides)
    if cfg.tokenizer == "word" and "text_vocab_size" not in overrides:
        vocab = cfg.vocab or default_vocab(cfg.regions, cfg.max_parts)
        cfg = cfg.updated(vocab=vocab, text_vocab_size=len(vocab))
    return VlffdDetector(cfg)
