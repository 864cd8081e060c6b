"""Pretrained-shaped towers the demo detectors share: a DINOv2-style ViT and a BERT sentence encoder.

Each is built from a detector's config alone (no download) with the module names of the source
it starts from, so :mod:`training.pretrained_init` can copy the converted weights of
:mod:`detectors.pretrained` into it strictly:

- :class:`VitTower`: timm's ``VisionTransformer`` with DINOv2's LayerScale (``vit_small_patch14_dinov2``
  shapes at ``width=384, layers=12, heads=6``), at the detector's own input size (the position
  table is resampled when the weights are copied in). Its embedding is the class token
  concatenated with the mean patch token, DINOv2's own linear-evaluation readout, standardised
  per channel (batch norm).
- :class:`BertTextTower`: transformers' ``BertModel`` without its pooler (paraphrase-MiniLM-L3-v2
  shapes at ``width=384, layers=3, heads=12``) with mean pooling over the sentence's tokens, the
  sentence-transformers readout that model was trained with.
- :class:`PieceTokenizer`: BERT's uncased WordPiece over a *pruned* vocabulary — the pieces the
  detector's fixed sentence vocabulary needs — so the checkpoint holds a few hundred rows of the
  30,522-row embedding table. WordPiece takes the longest known prefix, and every piece the full
  vocabulary picks for a known word is kept, so known words tokenize exactly as with the full
  vocabulary; unknown words become ``[UNK]``.

``trainable`` (the last N blocks or layers; -1 = all) freezes the rest at build time: on 2 CPU
cores the demos fine-tune the top of each tower only.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .patch_grid import tokens_to_grid

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def freeze_all_but_last(blocks: nn.ModuleList | nn.Sequential | Sequence[nn.Module], trainable: int,
                        *before: nn.Module) -> None:
    """Freeze ``before`` modules and all but the last ``trainable`` of ``blocks`` (-1: freeze nothing)."""
    if trainable < 0:
        return
    frozen = list(before) + list(blocks[:max(len(blocks) - trainable, 0)])
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)


class VitTower(nn.Module):
    """A pre-norm ViT with LayerScale (DINOv2's layout, timm names); ``forward`` -> (B, 2 * width)."""

    def __init__(self, img_size: int, patch_size: int = 14, width: int = 384, layers: int = 12, heads: int = 6,
                 mlp_ratio: float = 4.0, layer_scale: float = 1e-5, trainable: int = -1) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if img_size % patch_size:
            raise ValueError(f"input size {img_size} is not a multiple of the patch size {patch_size}")
        self.vit = VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=width, depth=layers,
                                     num_heads=heads, mlp_ratio=mlp_ratio, init_values=layer_scale, num_classes=0)
        self.grid = img_size // patch_size
        self.out_dim = 2 * width
        # DINOv2's final norm leaves a few channels with offsets near 30 and spreads of 0.07 to 11 across
        # the others (measured on the pool's faces): the readout is standardised per channel, as a linear
        # probe standardises its inputs, or those channels swamp whatever reads the embedding
        self.readout_norm = nn.BatchNorm1d(self.out_dim)
        freeze_all_but_last(self.vit.blocks, trainable, self.vit.patch_embed)
        if trainable >= 0:
            for table in (self.vit.cls_token, self.vit.pos_embed):
                if table is not None:
                    table.requires_grad_(False)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm tokens (B, 1 + g*g, width)."""
        return self.vit.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(x)
        prefix = self.vit.num_prefix_tokens
        return self.readout_norm(torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], dim=-1))

    def last_block_norm(self) -> nn.Module:
        """Where Grad-CAM hooks: the last block's first LayerNorm (tokens of the final block's input)."""
        norm = self.vit.blocks[-1].norm1
        assert isinstance(norm, nn.Module)
        return norm

    def tokens_to_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1 + g*g, C) -> (B, C, g, g), the class token dropped."""
        return tokens_to_grid(tokens, self.grid, self.vit.num_prefix_tokens)


class BertTextTower(nn.Module):
    """``BertModel`` (no pooler) + mean pooling; ``forward(ids, mask)`` -> (B, width)."""

    def __init__(self, vocab_size: int, width: int = 384, layers: int = 3, heads: int = 12, mlp: int = 1536,
                 max_positions: int = 512, trainable: int = -1) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=mlp, max_position_embeddings=max_positions,
                            type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)
        config._attn_implementation = "sdpa"
        self.bert = BertModel(config, add_pooling_layer=False)
        self.out_dim = width
        freeze_all_but_last(self.bert.encoder.layer, trainable, self.bert.embeddings)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def keep_first_blocks(state: dict[str, torch.Tensor], depth: int, prefix: str = "blocks.") -> dict[str, torch.Tensor]:
    """A ViT's tensors without the blocks from ``depth`` on (a tower that keeps a source's first blocks)."""
    def index(key: str) -> int:
        return int(key[len(prefix):].split(".", 1)[0])
    return {k: v for k, v in state.items() if not (k.startswith(prefix) and index(k) >= depth)}


# --------------------------------------------------------------------------- the pruned WordPiece vocabulary
def read_vocab(path: str | Path) -> list[str]:
    """A BERT ``vocab.txt``: one piece per line, the line number is its id."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def pieces_for_words(words: Sequence[str], full_vocab: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The pruned vocabulary for ``words``: BERT's specials, then every piece the full vocabulary's
    WordPiece gives those words, in first-use order; with each piece's id in ``full_vocab``."""
    full = PieceTokenizer(full_vocab, context=64)
    table = {p: i for i, p in enumerate(full_vocab)}
    missing = [s for s in BERT_SPECIALS if s not in table]
    if missing:
        raise ValueError(f"not a BERT vocabulary: {missing} missing")
    pieces = list(BERT_SPECIALS)
    for word in words:
        for piece in full.backend.encode(word, add_special_tokens=False).tokens:
            if piece not in pieces:
                pieces.append(piece)
    return tuple(pieces), tuple(table[p] for p in pieces)


class PieceTokenizer:
    """BERT's uncased WordPiece (``[CLS] sentence [SEP]``) over ``pieces``, padded to ``context``."""

    def __init__(self, pieces: Sequence[str], context: int) -> None:
        from tokenizers import Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordPiece
        from tokenizers.processors import TemplateProcessing

        table = {p: i for i, p in enumerate(pieces)}
        missing = [s for s in BERT_SPECIALS if s not in table]
        if missing:
            raise ValueError(f"a WordPiece vocabulary needs {missing}")
        tok = Tokenizer(WordPiece(table, unk_token="[UNK]", continuing_subword_prefix="##"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
            ("[CLS]", table["[CLS]"]), ("[SEP]", table["[SEP]"])])
        tok.enable_truncation(max_length=context)
        tok.enable_padding(pad_id=table["[PAD]"], pad_token="[PAD]", length=context)
        self.backend = tok

    def __call__(self, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.backend.encode_batch(list(sentences))
        return (torch.tensor([e.ids for e in enc], dtype=torch.long),
                torch.tensor([e.attention_mask for e in enc], dtype=torch.long))

    def save(self, path: Path) -> None:
        self.backend.save(str(path))


def bert_vocab_file() -> Path | None:
    """The BERT ``vocab.txt`` kept beside the cached MiniLM weights, if it is there."""
    from . import pretrained

    path = pretrained.cache_dir("minilm_l3") / "vocab.txt"
    return path if path.is_file() else None
