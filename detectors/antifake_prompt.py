"""AntifakePrompt: forgery detection as visual question answering with a tuned soft prompt.

Paper: Y.-M. Chang, C. Yeh, W.-C. Chiu, N. Yu, "AntifakePrompt: Prompt-Tuned Vision-Language
Models are Fake Image Detectors" (arXiv 2310.17419); code: nctu-eva-lab/AntifakePrompt (a LAVIS
fork, ``blip2_vicuna_instruct_textinv``).

The detector is an InstructBLIP (vision encoder -> Q-Former with the instruction as text input
-> language model) asked "Is this photo real [*]?", where ``[*]`` is one pseudo-word whose
embedding is learned by textual inversion in *both* the Q-Former's and the language model's
token tables (two small trainable tables beside the frozen vocabularies, as the authors do:
``Qformer.bert.embeddings.train_word_embeddings`` and ``llm_model.model.train_embed_tokens``).
The verdict reads the first answer token: ``logits = [logit("yes"), logit("no")]`` so
``prob_fake = softmax[:, 1] = P("no") / (P("yes") + P("no"))`` ("yes" = real).

Built on transformers' native ``InstructBlipForConditionalGeneration`` (LAVIS cannot be
installed beside this stack). Variants:

- ``antifake_prompt_full``: InstructBLIP Vicuna-7B (EVA ViT-g/14 at 224 px, 32 queries,
  12-layer Q-Former, Vicuna-7B), ``pretrained_weights="Salesforce/instructblip-vicuna-7b"``
  in bf16 (about 7.9 B parameters: ~16 GB of weights in bf16, ~17-18 GB of GPU memory for
  inference at batch 1; see :func:`load_instructblip` for starting from those weights online).
  Trainable: 768 + 4096 = 4864 parameters.
- ``antifake_prompt_demo``: the same architecture scaled down: the vision encoder is the first
  six blocks of DINOv2 ViT-S/14 at 126 px (the pretrained ViT reachable offline, converted
  exactly by :func:`dinov2_to_blip_vision`), then a 2-layer Q-Former with 8 queries and a
  3-layer LLaMA-style LM, with a word-level tokenizer trained offline with ``tokenizers`` on
  :data:`DEMO_CORPUS` and saved beside the weights (``tokenizer.json``).

Deviations and choices where the paper is silent:

- No pretrained VLM can be downloaded here, so the demo's VLM is built the way InstructBLIP's
  parts were (``training/methods/antifake_prompt.py``): the vision encoder alone first (stages
  ``vision*``, through a forgery-kind head on its mean patch token, ``vision_head``, standardised
  per channel when ``vision_head_norm``; the stand-in for EVA-CLIP's pre-training), then, with it frozen as
  InstructBLIP keeps it, the Q-Former and language model on visual questions about faces that
  the forgery engine can answer (stage ``pretrain``), then the paper's method proper (stage
  ``prompt``: everything frozen, only the ``[*]`` embeddings tuned with the LM loss on
  "yes"/"no"). Trained jointly from random weights, the encoder never learned and the answer
  stayed at chance.
- The demo carries BLIP-2's image-text matching head on the Q-Former (``itm_head``) and the
  vision head (``vision_head_classes``), both for its pre-training only; the full model has
  neither.
- From random weights a patchify ViT did not start learning the project's forgeries, so a
  from-scratch encoder can take a convolutional stem (``patch_stem="conv"``,
  :mod:`detectors.conv_stem`); the shipped demo, started from DINOv2, keeps the paper's patchify
  stem. The prompt stage keeps the whole VLM in eval mode, so batch-norm statistics stay frozen.
- One word-level vocabulary serves both the Q-Former and the language model in the demo (the
  full model uses BERT's and LLaMA's tokenizers); ``[*]`` is appended after the base vocabulary
  in both, so its id is the base vocabulary size, as in the authors' code.
- Input normalisation keeps the authors' COCO+SD2 statistics; the face crop (margin 1.3 around
  the aligned face) replaces their whole-image resize + centre crop.
- The score uses the first answer token's logits restricted to "yes"/"no" (the authors rank
  the two candidates by LM loss; for one-token answers these agree up to the end token).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Detector
from .config import DetectorConfig
from .conv_stem import make_patch_stem
from .patch_grid import tokens_to_grid
from .registry import register_detector
from .towers import keep_first_blocks

PSEUDO_WORD = "[*]"
PROMPT = "Is this photo real [*]?"
ANSWERS = ("yes", "no")  # index 0 = real, 1 = fake
#: The authors' normalisation (COCO + SD2 + SD2 inpainting, 90k), kept for both variants.
AFP_MEAN = (0.4730, 0.4499, 0.4129)
AFP_STD = (0.2780, 0.2713, 0.2872)
#: The demo's vision encoder is DINOv2 ViT-S/14, which expects ImageNet statistics.
DINOV2_MEAN = (0.485, 0.456, 0.406)
DINOV2_STD = (0.229, 0.224, 0.225)
LM_TOKENIZER_FILE = "tokenizer.json"
QFORMER_TOKENIZER_FILE = "qformer_tokenizer.json"

#: Demo special tokens, in id order (``[*]`` is appended after the trained vocabulary).
DEMO_SPECIALS = ("[PAD]", "[UNK]", "<s>", "</s>", "<image>")
#: Text the demo's word-level tokenizer is trained on: every question, answer and sentence the
#: training method and the forgery engine's VLFFD-style sentences use (words outside it map to
#: ``[UNK]``). Kept here because ``detectors`` never imports ``training``.
DEMO_CORPUS = (
    "Is this photo real? Is this photo fake? Is this face real? Is this image real or fake?",
    "yes no none unknown real fake forged manipulated edited generated blended altered",
    "Is the left eye forged? Is the right eye forged? Is the left eyebrow forged?",
    "Is the right eyebrow forged? Is the nose forged? Is the mouth forged?",
    "Is the left cheek forged? Is the right cheek forged? Is the forehead forged?",
    "Is the whole face forged? Which parts of this face are forged? Which parts are forged?",
    "What kind of forgery is this? How was this face made? Describe this face.",
    "a camera photo, a self-blend, a face swap, a deepfake, a region edit",
    "This face is real. The whole face is forged.",
    "The whole face is forged: it was blended with an altered copy of itself.",
    "The whole face is forged: another person's face was blended into it.",
    "The whole face is forged: it was generated by a neural network.",
    "The left eye, the right eye, both eyes, the left eyebrow, the right eyebrow, both eyebrows,",
    "the nose, the mouth, the left cheek, the right cheek, both cheeks, the forehead and the",
    "whole face of this face is forged. The mouth and the nose of this face are forged.",
)


@dataclass
class AntifakePromptConfig(DetectorConfig):
    """InstructBLIP sizes plus the soft prompt. ``vocab_size``/``qformer_vocab_size`` exclude
    ``[*]``; ``tokenizer`` is ``"word-level"`` (built from :data:`DEMO_CORPUS`, saved with the
    checkpoint) or ``"pretrained"`` (the tokenizers of ``pretrained_weights``)."""

    input_size: int = 224
    mean: tuple[float, ...] = AFP_MEAN
    std: tuple[float, ...] = AFP_STD
    # vision encoder (EVA ViT-g/14 at full size)
    vision_hidden: int = 1408
    vision_layers: int = 39
    vision_heads: int = 16
    vision_mlp: int = 6144
    patch_size: int = 14
    #: ``linear`` (ViT patchify, the paper's) or ``conv`` (a convolutional stem for a vision
    #: encoder trained from scratch; ``detectors.conv_stem``)
    patch_stem: str = "linear"
    stem_width: int = 24
    # Q-Former (BERT-base with cross-attention every other layer)
    num_query_tokens: int = 32
    qformer_hidden: int = 768
    qformer_layers: int = 12
    qformer_heads: int = 12
    qformer_mlp: int = 3072
    qformer_cross_every: int = 2
    qformer_vocab_size: int = 30523  # bert-base-uncased + the [DEC] token LAVIS adds
    qformer_max_positions: int = 512
    # language model (LLaMA family; Vicuna-7B v1.3 at full size)
    lm_hidden: int = 4096
    lm_layers: int = 32
    lm_heads: int = 32
    lm_mlp: int = 11008
    lm_max_positions: int = 2048
    vocab_size: int = 32002  # LLaMA 32000 + [PAD] + <image> as in the hub's processor
    image_token_id: int = 32001
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 32000
    # the soft prompt
    prompt: str = PROMPT
    pseudo_word: str = PSEUDO_WORD
    answers: tuple[str, ...] = ANSWERS
    tokenizer: str = "pretrained"
    dtype: str = "float32"  # the frozen VLM's dtype; the soft-prompt tables stay float32
    dropout: float = 0.0
    #: BLIP-2's image-text matching head on the Q-Former (demo pre-training from scratch only)
    itm_head: bool = False
    #: forgery kinds a linear head on the vision encoder's mean token classifies (0: no head):
    #: the demo's stand-in for the pretrained EVA-CLIP encoder is trained with it first
    vision_head_classes: int = 0
    #: standardise the mean token per channel before the vision head (a pretrained encoder's final
    #: norm can leave channels with large offsets that swamp a linear head; DINOv2's do)
    vision_head_norm: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def instructblip_config(cfg: AntifakePromptConfig):
    """The transformers ``InstructBlipConfig`` a detector config describes."""
    from transformers import InstructBlipConfig, InstructBlipQFormerConfig, InstructBlipVisionConfig, LlamaConfig

    vision = InstructBlipVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_mlp, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, image_size=cfg.input_size, patch_size=cfg.patch_size,
        attention_dropout=cfg.dropout, initializer_range=0.02)  # transformers' 1e-10 default only suits loading
    qformer = InstructBlipQFormerConfig(
        vocab_size=cfg.qformer_vocab_size, hidden_size=cfg.qformer_hidden, num_hidden_layers=cfg.qformer_layers,
        num_attention_heads=cfg.qformer_heads, intermediate_size=cfg.qformer_mlp,
        cross_attention_frequency=cfg.qformer_cross_every, max_position_embeddings=cfg.qformer_max_positions,
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout, pad_token_id=0,
        encoder_hidden_size=cfg.vision_hidden)
    text = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.lm_hidden, intermediate_size=cfg.lm_mlp,
        num_hidden_layers=cfg.lm_layers, num_attention_heads=cfg.lm_heads, num_key_value_heads=cfg.lm_heads,
        max_position_embeddings=cfg.lm_max_positions, tie_word_embeddings=False, bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id, attention_dropout=cfg.dropout)
    return InstructBlipConfig(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(),
                              text_config=text.to_dict(), num_query_tokens=cfg.num_query_tokens,
                              image_token_index=cfg.image_token_id)


class PseudoWordEmbedding(nn.Module):
    """A frozen token table plus a small trainable table for pseudo-words appended after it.

    Ids ``>= base.num_embeddings`` read ``train_embed`` (the textual-inversion vectors); the
    rest read the frozen base table, as the authors' modified BERT/LLaMA embeddings do.
    """

    def __init__(self, base: nn.Embedding, n_new: int = 1, std: float = 0.02) -> None:
        super().__init__()
        self.base = base
        self.train_embed = nn.Embedding(n_new, base.embedding_dim)
        nn.init.normal_(self.train_embed.weight, std=std)

    @property
    def weight(self) -> torch.Tensor:  # what transformers reads for dtype/device/size
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings + self.train_embed.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.base.embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = self.base.num_embeddings
        new = ids >= n
        out = self.base(ids.masked_fill(new, 0))
        extra = self.train_embed((ids - n).clamp(min=0)).to(out.dtype)
        return torch.where(new.unsqueeze(-1), extra, out)


def build_word_tokenizer(corpus: tuple[str, ...] | list[str] = DEMO_CORPUS, pseudo_word: str = PSEUDO_WORD):
    """A word-level tokenizer trained offline on ``corpus``; ``[*]`` gets the last id."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(corpus), trainers.WordLevelTrainer(special_tokens=list(DEMO_SPECIALS)))
    tok.add_special_tokens([pseudo_word])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return wrap_word_tokenizer(tok, pseudo_word)


def wrap_word_tokenizer(tok, pseudo_word: str = PSEUDO_WORD):
    """``tokenizers.Tokenizer`` -> ``PreTrainedTokenizerFast`` with the demo's special tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens={"image_token": "<image>"},
                                   additional_special_tokens=[pseudo_word])


def load_word_tokenizer(path: Path, pseudo_word: str = PSEUDO_WORD):
    from tokenizers import Tokenizer

    return wrap_word_tokenizer(Tokenizer.from_file(str(path)), pseudo_word)


class AntifakePromptDetector(Detector):
    family = "antifake_prompt"
    display_name = "AntifakePrompt (InstructBLIP + soft prompt)"
    paper = "Chang et al., AntifakePrompt: Prompt-Tuned Vision-Language Models are Fake Image Detectors, 2023"
    serial = True  # a vision-language model: the app runs it one request at a time
    config_class = AntifakePromptConfig
    #: Files saved beside the weights and read back by ``detectors.hub`` (the tokenizers).
    side_files = (LM_TOKENIZER_FILE, QFORMER_TOKENIZER_FILE)
    config: AntifakePromptConfig
    vlm: Any  # transformers' InstructBLIP: its towers are reached (and patched) by name

    def __init__(self, config: AntifakePromptConfig, vlm: nn.Module | None = None) -> None:
        """``vlm``: an already built (e.g. pretrained) ``InstructBlipForConditionalGeneration``."""
        super().__init__(config)
        from transformers import InstructBlipForConditionalGeneration

        if vlm is None:
            vlm = InstructBlipForConditionalGeneration(instructblip_config(config))
            with torch.no_grad():  # BLIP-2's query init (transformers zeroes them, fine only for loading)
                vlm.query_tokens.normal_(0.0, 0.02)
            stem = make_patch_stem(config.patch_stem, 3, config.vision_hidden, config.patch_size, config.stem_width)
            if stem is not None:
                vlm.vision_model.embeddings.patch_embedding = stem
        elif config.patch_stem != "linear":
            raise ValueError("a pretrained InstructBLIP has the linear patch stem (patch_stem='linear')")
        blip: Any = vlm
        blip.qformer.embeddings.word_embeddings = PseudoWordEmbedding(blip.qformer.embeddings.word_embeddings)
        blip.language_model.set_input_embeddings(PseudoWordEmbedding(blip.language_model.get_input_embeddings()))
        dtype = getattr(torch, config.dtype)
        if dtype != torch.float32:
            vlm.to(dtype)
            for table in self.soft_prompt_tables(vlm):
                table.float()
        self.vlm = vlm
        self.itm_head = nn.Linear(config.qformer_hidden, 2) if config.itm_head else None
        self.vision_head: nn.Module | None = None
        if config.vision_head_classes:
            head = nn.Linear(config.vision_hidden, config.vision_head_classes)
            self.vision_head = nn.Sequential(nn.BatchNorm1d(config.vision_hidden), head) if config.vision_head_norm else head
        self.lm_tokenizer: Any = None  # transformers tokenizers (set_tokenizers)
        self.qformer_tokenizer: Any = None
        self._ids: dict[str, list[int]] = {}
        if config.tokenizer == "word-level":
            tok = build_word_tokenizer(pseudo_word=config.pseudo_word)
            if len(tok) == config.vocab_size + 1:  # else a saved tokenizer.json must be loaded
                self.set_tokenizers(tok, tok)

    # ---- tokenizers and the fixed question ----------------------------------------------------
    @staticmethod
    def soft_prompt_tables(vlm: nn.Module) -> list[nn.Embedding]:
        """The two trainable ``[*]`` tables: Q-Former's, then the language model's."""
        blip: Any = vlm
        return [blip.qformer.embeddings.word_embeddings.train_embed, blip.language_model.get_input_embeddings().train_embed]

    def soft_prompt_parameters(self) -> list[torch.Tensor]:
        return [t.weight for t in self.soft_prompt_tables(self.vlm)]

    def set_tokenizers(self, lm_tokenizer, qformer_tokenizer) -> None:
        """Attach tokenizers; ``[*]`` must be the first id after each base vocabulary."""
        cfg = self.config
        for name, tok, base in (("language model", lm_tokenizer, cfg.vocab_size),
                                ("Q-Former", qformer_tokenizer, cfg.qformer_vocab_size)):
            pid = tok.convert_tokens_to_ids(cfg.pseudo_word)
            if pid != base:
                raise ValueError(f"{name} tokenizer gives {cfg.pseudo_word} id {pid}, expected {base} (base vocabulary size)")
        self.lm_tokenizer, self.qformer_tokenizer = lm_tokenizer, qformer_tokenizer
        image = [cfg.image_token_id] * cfg.num_query_tokens
        self._ids = {
            "lm_prompt": image + lm_tokenizer(cfg.prompt).input_ids,
            "qformer_prompt": qformer_tokenizer(cfg.prompt).input_ids,
            "answers": [lm_tokenizer(a, add_special_tokens=False).input_ids[0] for a in cfg.answers],
        }

    def _require_tokenizers(self) -> None:
        if self.lm_tokenizer is None:
            if self.config.tokenizer == "pretrained" and self.config.pretrained_weights:
                lm, qf = pretrained_tokenizers(self.config.pretrained_weights, self.config.pseudo_word)
                self.set_tokenizers(lm, qf)
            else:
                raise RuntimeError(f"{self.config.name}: no tokenizer attached (load a checkpoint with its {LM_TOKENIZER_FILE})")

    def question_ids(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-Former and language-model ids of the fixed question, repeated ``batch`` times."""
        self._require_tokenizers()
        q = torch.tensor(self._ids["qformer_prompt"], device=device).expand(batch, -1)
        t = torch.tensor(self._ids["lm_prompt"], device=device).expand(batch, -1)
        return q, t

    @property
    def answer_ids(self) -> list[int]:
        self._require_tokenizers()
        return self._ids["answers"]

    # ---- the model -----------------------------------------------------------------------------
    def _vlm_dtype(self) -> torch.dtype:
        return self.vlm.vision_model.embeddings.patch_embedding.weight.dtype

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """Ask the fixed question; logits are the first answer token's [yes, no] logits."""
        b = x.shape[0]
        q_ids, lm_ids = self.question_ids(b, x.device)
        image = self.vlm.get_image_features(x.to(self._vlm_dtype()), qformer_input_ids=q_ids, return_dict=True)
        embeds = self.vlm.get_input_embeddings()(lm_ids)
        mask = self.vlm.get_placeholder_mask(lm_ids, inputs_embeds=embeds)
        embeds = embeds.masked_scatter(mask, image.pooler_output.to(embeds.dtype))
        hidden = self.vlm.language_model.model(inputs_embeds=embeds).last_hidden_state[:, -1]
        logits = self.vlm.language_model.get_output_embeddings()(hidden)[:, self.answer_ids].float()
        probs = logits.softmax(-1)
        return self.outputs(logits, hidden.float(), p_yes=probs[:, 0], p_no=probs[:, 1],
                            query_embeds=image.pooler_output.float())

    def query_outputs(self, image_embeds: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """The Q-Former's query outputs (B, Q, Dq) for vision tokens and its text input ``texts``."""
        vlm, device = self.vlm, image_embeds.device
        enc = self.qformer_tokenizer(list(texts), padding="longest", return_tensors="pt")
        query = vlm.query_tokens.expand(image_embeds.shape[0], -1, -1)
        q_att = torch.ones(query.shape[:2], dtype=torch.long, device=device)
        out = vlm.qformer(input_ids=enc.input_ids.to(device), query_embeds=query,
                          attention_mask=torch.cat([q_att, enc.attention_mask.to(device)], 1),
                          encoder_hidden_states=image_embeds,
                          encoder_attention_mask=torch.ones(image_embeds.shape[:2], dtype=torch.long, device=device),
                          return_dict=True)
        return out.last_hidden_state[:, : query.shape[1]]

    def vision_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.vlm.vision_model(pixel_values=x.to(self._vlm_dtype())).last_hidden_state

    def answer_loss(self, x: torch.Tensor, questions: list[str], answers: list[str],
                    image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """InstructBLIP's LM loss on ``answers`` (+ end token) given the image and ``questions``.

        The language model sees ``[image tokens] <s> question answer </s>`` right-padded; only
        the answer and end token are targets (the authors' ``concat_text_input_output``).
        ``image_embeds``: the vision encoder's tokens if already computed.
        """
        self._require_tokenizers()
        lm, cfg = self.lm_tokenizer, self.config
        device = x.device
        image = [cfg.image_token_id] * cfg.num_query_tokens
        rows, targets = [], []
        for q, a in zip(questions, answers):
            prompt = image + lm(q).input_ids
            answer = lm(a, add_special_tokens=False).input_ids + [lm.eos_token_id]
            rows.append(prompt + answer)
            targets.append([-100] * len(prompt) + answer)
        width = max(len(r) for r in rows)
        pad = lm.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        att = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        labels = torch.tensor([t + [-100] * (width - len(t)) for t in targets], device=device)
        if image_embeds is None:
            image_embeds = self.vision_tokens(x)
        features = self.vlm.language_projection(self.query_outputs(image_embeds, questions))
        embeds = self.vlm.get_input_embeddings()(ids)
        mask = self.vlm.get_placeholder_mask(ids, inputs_embeds=embeds)
        embeds = embeds.masked_scatter(mask, features.to(embeds.dtype))
        return self.vlm.language_model(inputs_embeds=embeds, attention_mask=att, labels=labels).loss

    def itm_logits(self, image_embeds: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """BLIP-2's image-text matching: (B, 2) [no match, match] logits, mean over the queries."""
        if self.itm_head is None:
            raise RuntimeError(f"{self.config.name} has no image-text matching head (itm_head=False)")
        return self.itm_head(self.query_outputs(image_embeds, texts)).mean(1)

    def vision_logits(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, vision_head_classes) forgery-kind logits from the vision encoder's mean patch token."""
        if self.vision_head is None:
            raise RuntimeError(f"{self.config.name} has no vision head (vision_head_classes=0)")
        return self.vision_head(image_embeds[:, 1:].mean(1))

    @torch.no_grad()
    def generate_answer(self, x: torch.Tensor, question: str | None = None, max_new_tokens: int = 12) -> list[str]:
        """Free-form greedy answers to ``question`` (default: the detection question)."""
        self._require_tokenizers()
        question = question or self.config.prompt
        b = x.shape[0]
        q_ids = self.qformer_tokenizer([question] * b, return_tensors="pt").input_ids.to(x.device)
        image = [self.config.image_token_id] * self.config.num_query_tokens
        lm_ids = torch.tensor([image + self.lm_tokenizer(question).input_ids] * b, device=x.device)
        out = self.vlm.generate(pixel_values=x.to(self._vlm_dtype()), qformer_input_ids=q_ids, input_ids=lm_ids,
                                max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                eos_token_id=self.lm_tokenizer.eos_token_id, pad_token_id=self.lm_tokenizer.pad_token_id)
        new = out[:, lm_ids.shape[1]:] if out.shape[1] > lm_ids.shape[1] and bool((out[:, :lm_ids.shape[1]] == lm_ids).all()) else out
        return [s.strip() for s in self.lm_tokenizer.batch_decode(new, skip_special_tokens=True)]

    # ---- explanation contract -----------------------------------------------------------------
    def target_layers(self) -> list[nn.Module]:
        """The vision encoder's last block's first norm (the authors' ``blocks[-1].norm1``)."""
        return [self.vlm.vision_model.encoder.layers[-1].layer_norm1]

    def reshape_transform(self, tokens: torch.Tensor) -> torch.Tensor:
        """ViT tokens (B, 1 + N, C) -> (B, C, sqrt N, sqrt N), dropping the class token."""
        return tokens_to_grid(tokens, self.config.input_size // self.config.patch_size)

    def adapt_init_state(self, module: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A DINOv2 ViT (timm names) as this VLM's vision encoder (``training.pretrained_init``)."""
        if module != "vlm.vision_model" or "blocks.0.attn.qkv.weight" not in state:
            return state
        return dinov2_to_blip_vision(keep_first_blocks(state, self.config.vision_layers),
                                     self.config.input_size // self.config.patch_size)

    # ---- checkpoint side files ----------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        self._require_tokenizers()
        _save_tokenizer(self.lm_tokenizer, save_directory / LM_TOKENIZER_FILE)
        _save_tokenizer(self.qformer_tokenizer, save_directory / QFORMER_TOKENIZER_FILE)

    def load_side_files(self, folder: Path) -> None:
        """Read the tokenizers saved beside the weights (called by ``detectors.hub``)."""
        lm_path, qf_path = Path(folder) / LM_TOKENIZER_FILE, Path(folder) / QFORMER_TOKENIZER_FILE
        if not lm_path.is_file():
            if self.lm_tokenizer is not None:
                return  # a rebuilt default tokenizer of the same size is already attached
            raise FileNotFoundError(f"{folder}: no {LM_TOKENIZER_FILE} (the detector's tokenizer)")
        lm = _load_tokenizer(lm_path, self.config)
        qf = _load_tokenizer(qf_path, self.config) if qf_path.is_file() else lm
        self.set_tokenizers(lm, qf)


def dinov2_to_blip_vision(state: dict[str, torch.Tensor], grid: int) -> dict[str, torch.Tensor]:
    """timm DINOv2 tensors -> an InstructBLIP vision encoder's, computing the same function.

    Both are pre-norm ViTs with exact GELU and LayerNorm eps 1e-6 and one fused qkv projection.
    DINOv2's LayerScale (``ls1``, ``ls2``: a per-channel gain after attention and MLP) folds into
    the rows of the output projections. The position table is resampled to ``grid`` x ``grid`` (bicubic, as DINOv2 does)."""
    from .pretrained import resample_grid_pos_embed

    out = {"embeddings.class_embedding": state["cls_token"],
           "embeddings.position_embedding": resample_grid_pos_embed(state["pos_embed"], grid),
           "embeddings.patch_embedding.weight": state["patch_embed.proj.weight"],
           "embeddings.patch_embedding.bias": state["patch_embed.proj.bias"],
           "post_layernorm.weight": state["norm.weight"], "post_layernorm.bias": state["norm.bias"]}
    layers = sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.")})
    for i in layers:
        src, dst = f"blocks.{i}.", f"encoder.layers.{i}."
        ls1, ls2 = state[src + "ls1.gamma"], state[src + "ls2.gamma"]
        out.update({
            dst + "layer_norm1.weight": state[src + "norm1.weight"], dst + "layer_norm1.bias": state[src + "norm1.bias"],
            dst + "self_attn.qkv.weight": state[src + "attn.qkv.weight"], dst + "self_attn.qkv.bias": state[src + "attn.qkv.bias"],
            dst + "self_attn.projection.weight": state[src + "attn.proj.weight"] * ls1[:, None],
            dst + "self_attn.projection.bias": state[src + "attn.proj.bias"] * ls1,
            dst + "layer_norm2.weight": state[src + "norm2.weight"], dst + "layer_norm2.bias": state[src + "norm2.bias"],
            dst + "mlp.fc1.weight": state[src + "mlp.fc1.weight"], dst + "mlp.fc1.bias": state[src + "mlp.fc1.bias"],
            dst + "mlp.fc2.weight": state[src + "mlp.fc2.weight"] * ls2[:, None],
            dst + "mlp.fc2.bias": state[src + "mlp.fc2.bias"] * ls2,
        })
    return out


def _save_tokenizer(tok, path: Path) -> None:
    path.write_text(tok.backend_tokenizer.to_str(pretty=True), encoding="utf-8")


def _load_tokenizer(path: Path, cfg: AntifakePromptConfig):
    if cfg.tokenizer == "word-level":
        return load_word_tokenizer(path, cfg.pseudo_word)
    from transformers import PreTrainedTokenizerFast

    data = json.loads(path.read_text(encoding="utf-8"))
    specials = {t["content"] for t in data.get("added_tokens", []) if t.get("special")}
    kwargs = {k: v for k, v in (("bos_token", "<s>"), ("eos_token", "</s>"), ("unk_token", "<unk>"),
                                ("pad_token", "[PAD]")) if v in specials}
    if "[CLS]" in specials:  # a BERT (Q-Former) tokenizer
        kwargs = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    return PreTrainedTokenizerFast(tokenizer_file=str(path), **kwargs)


def pretrained_tokenizers(repo: str, pseudo_word: str = PSEUDO_WORD):
    """The LLaMA and BERT tokenizers of an InstructBLIP repo with ``[*]`` appended to both (online)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(repo)
    lm, qf = processor.tokenizer, processor.qformer_tokenizer
    for tok in (lm, qf):
        tok.add_special_tokens({"additional_special_tokens": [pseudo_word]})
    return lm, qf


def load_instructblip(repo: str = "Salesforce/instructblip-vicuna-7b", soft_prompt: str | Path | None = None,
                      dtype: str = "bfloat16", **overrides: Any) -> AntifakePromptDetector:
    """A full detector from pretrained InstructBLIP weights (needs the Hub) and, optionally, a
    soft prompt converted by ``training/convert_antifake_prompt.py`` (a safetensors file).

    Memory: Vicuna-7B InstructBLIP is ~7.9 B parameters, ~16 GB in bf16 (CPU RAM while loading,
    then GPU memory); inference at batch 1 needs ~17-18 GB of GPU memory.
    """
    from safetensors.torch import load_file
    from transformers import InstructBlipForConditionalGeneration

    pretrained = InstructBlipForConditionalGeneration.from_pretrained(repo, dtype=getattr(torch, dtype))
    hf: Any = pretrained.config  # transformers types its sub-configs as dict | config | None; loaded, each is a config
    cfg = AntifakePromptConfig(name="antifake_prompt_full", pretrained_weights=repo, dtype=dtype).updated(
        vision_hidden=hf.vision_config.hidden_size, vision_layers=hf.vision_config.num_hidden_layers,
        vision_heads=hf.vision_config.num_attention_heads, vision_mlp=hf.vision_config.intermediate_size,
        patch_size=hf.vision_config.patch_size, input_size=hf.vision_config.image_size,
        num_query_tokens=hf.num_query_tokens, qformer_vocab_size=hf.qformer_config.vocab_size,
        vocab_size=hf.text_config.vocab_size, image_token_id=hf.image_token_index, **overrides)
    model = AntifakePromptDetector(cfg, vlm=pretrained)
    if soft_prompt is not None:
        state = load_file(str(soft_prompt))
        unknown = sorted(set(state) - set(SOFT_PROMPT_KEYS))
        if unknown:
            raise ValueError(f"{soft_prompt}: not a soft-prompt file (unexpected {unknown[:3]})")
        model.load_state_dict(state, strict=False)
    model.set_tokenizers(*pretrained_tokenizers(repo, cfg.pseudo_word))
    model.source = f"hf-hub:{repo}"
    return model.eval()


#: state-dict keys of the two soft-prompt tables inside a detector
SOFT_PROMPT_KEYS = ("vlm.qformer.embeddings.word_embeddings.train_embed.weight",
                    "vlm.language_model.model.embed_tokens.train_embed.weight")


def _word_level_ids() -> dict[str, int]:
    """Vocabulary sizes and special-token ids of the word-level tokenizer built offline."""
    tok = build_word_tokenizer()
    base = len(tok) - 1  # without [*]
    return dict(qformer_vocab_size=base, vocab_size=base, image_token_id=tok.convert_tokens_to_ids("<image>"),
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def _create(variant: str, from_pretrained: bool = False, **model_args: Any) -> AntifakePromptDetector:
    """Build ``variant`` from its config fields. ``from_pretrained`` loads ``pretrained_weights`` with
    :func:`load_instructblip` (needs the Hub; the shapes come from that repo); a ``word-level``
    tokenizer fills the vocabulary sizes and token ids not given from the tokenizer built offline."""
    cfg = AntifakePromptConfig(name=variant).updated(**model_args)
    if from_pretrained:
        rest = {k: v for k, v in model_args.items() if k not in ("pretrained_weights", "dtype")}
        return load_instructblip(cfg.pretrained_weights, dtype=cfg.dtype, **{"name": variant, **rest})
    if cfg.tokenizer == "word-level":
        cfg = cfg.updated(**{k: v for k, v in _word_level_ids().items() if k not in model_args})
    return AntifakePromptDetector(cfg)


@register_detector
def antifake_prompt_full(**overrides: Any) -> AntifakePromptDetector:
    """InstructBLIP Vicuna-7B with the ``[*]`` soft prompt, randomly initialised unless
    ``from_pretrained=True`` (needs the Hub: loads ``pretrained_weights`` via :func:`load_instructblip`;
    the full training recipe sets it in its ``model`` section)."""
    # input_size stays the config's 224: with from_pretrained it is read from the repo's config
    model_args = dict(crop_size=256, crop_margin=1.3, pretrained_weights="Salesforce/instructblip-vicuna-7b",
                      dtype="bfloat16", tokenizer="pretrained")
    return _create("antifake_prompt_full", **{**model_args, **overrides})


@register_detector
def antifake_prompt_demo(**overrides: Any) -> AntifakePromptDetector:
    """A small InstructBLIP for 2 CPU cores: the first six blocks of DINOv2 ViT-S/14 at 126 px as its
    vision encoder (11 M parameters), a 2-layer Q-Former and a 3-layer language model (~2.5 M),
    word-level tokenizer."""
    model_args = dict(
        input_size=126, crop_size=126, crop_margin=1.3, mean=DINOV2_MEAN, std=DINOV2_STD,
        vision_hidden=384, vision_layers=6, vision_heads=6, vision_mlp=1536, patch_size=14,
        num_query_tokens=8, qformer_hidden=192, qformer_layers=2, qformer_heads=4, qformer_mlp=512,
        qformer_cross_every=1, qformer_max_positions=64,
        lm_hidden=192, lm_layers=3, lm_heads=4, lm_mlp=384, lm_max_positions=128,
        tokenizer="word-level", dtype="float32",
        itm_head=True, vision_head_classes=6, vision_head_norm=True, patch_stem="linear", storage_dtype="float16")
    return _create("antifake_prompt_demo", **{**model_args, **overrides})


def demo_config(**overrides: Any) -> AntifakePromptConfig:
    """The demo's config (word-level vocabulary size read from the tokenizer built offline)."""
    return antifake_prompt_demo(**overrides).config
