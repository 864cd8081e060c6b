"""Convert the authors' AntifakePrompt checkpoint (LAVIS layout) to this project's format.

The LAVIS runner saves ``{"model": {name: tensor for trainable parameters}, "optimizer", ...}``;
for AntifakePrompt the trainable parameters are the two ``[*]`` embedding tables:

- ``Qformer.bert.embeddings.train_word_embeddings.weight`` (1, 768)
- ``llm_model.model.train_embed_tokens.weight`` (1, 4096)

Usage (the ``.pth`` is a pickle: it is read here once, with ``torch.load(weights_only=True)``,
as an explicit conversion step; the app itself only ever reads safetensors)::

    python -m training.convert_antifake_prompt COCO_150k_SD2_SD2IP.pth --out afp_soft_prompt.safetensors
    # with internet, a complete project checkpoint (InstructBLIP Vicuna-7B + the soft prompt, ~16 GB):
    python -m training.convert_antifake_prompt COCO_150k_SD2_SD2IP.pth --out afp_soft_prompt.safetensors \\
        --base Salesforce/instructblip-vicuna-7b --checkpoint-dir checkpoints/antifake_prompt_full
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from detectors.antifake_prompt import SOFT_PROMPT_KEYS

#: authors' key -> this project's key
KEY_MAP = {
    "Qformer.bert.embeddings.train_word_embeddings.weight": SOFT_PROMPT_KEYS[0],
    "llm_model.model.train_embed_tokens.weight": SOFT_PROMPT_KEYS[1],
}
PREFIXES = ("module.", "model.")


def soft_prompt_from_lavis(state: dict[str, Any], qformer_dim: int | None = 768,
                           lm_dim: int | None = 4096) -> dict[str, torch.Tensor]:
    """The two ``[*]`` tables of a LAVIS state dict (``{"model": {...}}`` or the inner dict),
    renamed to this project's keys, float32. ``*_dim=None`` skips the width check."""
    inner = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(inner, dict):
        raise ValueError("not a LAVIS checkpoint: expected a dict with a 'model' state dict")
    found: dict[str, torch.Tensor] = {}
    for key, value in inner.items():
        name = key
        for prefix in PREFIXES:  # DDP-wrapped saves
            if name.startswith(prefix) and name[len(prefix):] in KEY_MAP:
                name = name[len(prefix):]
        if name in KEY_MAP:
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{key}: expected a tensor, got {type(value).__name__}")
            found[KEY_MAP[name]] = value.detach().to(torch.float32).contiguous().clone()
    missing = [k for k, v in KEY_MAP.items() if v not in found]
    if missing:
        raise ValueError(f"not an AntifakePrompt checkpoint: missing {', '.join(missing)}")
    for key, dim in ((SOFT_PROMPT_KEYS[0], qformer_dim), (SOFT_PROMPT_KEYS[1], lm_dim)):
        t = found[key]
        if t.ndim != 2 or t.shape[0] != 1 or (dim is not None and t.shape[1] != dim):
            raise ValueError(f"{key}: shape {tuple(t.shape)}, expected (1, {dim if dim is not None else 'D'})")
    return found


def read_lavis_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load the authors' ``.pth`` with tensors only (no arbitrary objects are unpickled)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unpickling failure reads the same to the user
        raise ValueError(f"{path}: cannot be read as a tensors-only checkpoint ({exc})") from None


def convert(src: str | Path, out: str | Path, qformer_dim: int | None = 768, lm_dim: int | None = 4096) -> Path:
    """``src`` (.pth, LAVIS layout) -> ``out`` (.safetensors with this project's two keys)."""
    tensors = soft_prompt_from_lavis(read_lavis_checkpoint(src), qformer_dim, lm_dim)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"format": "pt", "source": Path(src).name, "family": "antifake_prompt"})
    return out


def apply_soft_prompt(detector, path: str | Path) -> None:
    """Copy a converted soft prompt into a detector (shapes must match its two tables)."""
    tensors = load_file(str(path))
    own = detector.state_dict()
    for key in SOFT_PROMPT_KEYS:
        if key not in tensors:
            raise ValueError(f"{path}: no {key}")
        if tensors[key].shape != own[key].shape:
            raise ValueError(f"{path}: {key} has shape {tuple(tensors[key].shape)}, the detector {tuple(own[key].shape)}")
    detector.load_state_dict({k: tensors[k] for k in SOFT_PROMPT_KEYS}, strict=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.convert_antifake_prompt", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the authors' .pth (LAVIS runner layout)")
    parser.add_argument("--out", required=True, help="soft-prompt .safetensors to write")
    parser.add_argument("--base", default="", help="InstructBLIP repo to combine with (needs the Hub), e.g. "
                                                   "Salesforce/instructblip-vicuna-7b")
    parser.add_argument("--checkpoint-dir", default="", help="with --base: write a full project checkpoint here")
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out)
    print(f"wrote {out} ({', '.join(SOFT_PROMPT_KEYS)})")
    if args.base:
        from detectors.antifake_prompt import load_instructblip

        model = load_instructblip(args.base, soft_prompt=out)
        if args.checkpoint_dir:
            model.save_pretrained(args.checkpoint_dir)
            print(f"wrote a project checkpoint to {args.checkpoint_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
