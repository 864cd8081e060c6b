"""CPU forward latency of AntifakePrompt, batch 1, 2 threads (run under the heavy lock).

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m bench.latency_antifake_prompt

``demo`` is timed whole. ``full`` (InstructBLIP Vicuna-7B, ~7.9 B parameters, ~16 GB in bf16)
does not fit beside the other jobs of a 2-core machine, so it is timed at full width with few
layers and extrapolated linearly in depth: each stream's per-layer cost is the difference
between two truncated builds (embeddings, LM head and the rest are in both).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.timing import time_ms
from detectors import build_detector
from detectors.antifake_prompt import AntifakePromptConfig, AntifakePromptDetector, build_word_tokenizer


def timed(model, size: int, repeats: int, warmup: int = 2, best: bool = False) -> float:
    """Median (or, with ``best``, minimum) milliseconds of ``repeats`` forwards after ``warmup``."""
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        times = time_ms(lambda: model(x), repeats, warmup)
    return min(times) if best else statistics.median(times)


def truncated_full(vision_layers: int, qformer_layers: int, lm_layers: int, dtype: str) -> AntifakePromptDetector:
    """Full widths, few layers; a word-level tokenizer only to build the fixed question."""
    tok = build_word_tokenizer()
    base = len(tok) - 1
    cfg = AntifakePromptConfig(name="antifake_prompt_full", dtype=dtype, tokenizer="word-level",
                               vision_layers=vision_layers, qformer_layers=qformer_layers, lm_layers=lm_layers,
                               qformer_vocab_size=base, vocab_size=32002, image_token_id=tok.convert_tokens_to_ids("<image>"))
    model = AntifakePromptDetector(cfg).eval()
    # the LM's table is 32002 wide; place [*] after it so the prompt ids stay valid for the timing
    lm = _WideTokenizer(tok, offset=cfg.vocab_size - base)
    model.set_tokenizers(lm, tok)
    return model


class _WideTokenizer:
    """Maps the word-level tokenizer's [*] to the LLaMA-sized table's first extra id (timing only)."""

    def __init__(self, tok, offset: int) -> None:
        self.tok, self.offset = tok, offset
        self.pseudo = tok.convert_tokens_to_ids("[*]")

    def __call__(self, text, **kw):
        enc = self.tok(text, **kw)
        enc["input_ids"] = [i + self.offset if i == self.pseudo else i for i in enc["input_ids"]]
        return enc

    def convert_tokens_to_ids(self, token):
        i = self.tok.convert_tokens_to_ids(token)
        return i + self.offset if i == self.pseudo else i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--full-repeats", type=int, default=7)
    parser.add_argument("--full-dtype", default="bfloat16")
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    demo = build_detector("antifake_prompt_demo").eval()
    n_demo = sum(p.numel() for p in demo.parameters())
    ms = timed(demo, demo.config.input_size, args.repeats, warmup=5)
    print(f"demo  {n_demo / 1e6:.2f} M params @ {demo.config.input_size}px: forward {ms:.1f} ms "
          f"(batch 1, {args.threads} threads, median of {args.repeats})")
    x = torch.randn(1, 3, demo.config.input_size, demo.config.input_size)
    t = time.perf_counter()
    demo.generate_answer(x, max_new_tokens=4)
    print(f"demo  generate (4 new tokens): {(time.perf_counter() - t) * 1000:.1f} ms")
    del demo
    if args.skip_full:
        return

    full_cfg = AntifakePromptConfig()
    builds = {"base": (1, 2, 1), "vision": (3, 2, 1), "qformer": (1, 6, 1), "lm": (1, 2, 3)}
    results = {}
    for name, layers in builds.items():
        model = truncated_full(*layers, dtype=args.full_dtype)
        # the minimum: differences of medians drown in the noise of a shared machine
        results[name] = timed(model, full_cfg.input_size, args.full_repeats, warmup=1, best=True)
        print(f"full-width {name:8s} (vision {layers[0]}, Q-Former {layers[1]}, LM {layers[2]} layers): "
              f"{results[name]:.0f} ms")
        del model
    per_vision = (results["vision"] - results["base"]) / 2
    per_q2 = (results["qformer"] - results["base"]) / 2  # one cross-attention pair of layers
    per_lm = (results["lm"] - results["base"]) / 2
    total = (results["base"] + per_vision * (full_cfg.vision_layers - 1) + per_q2 * (full_cfg.qformer_layers - 2) / 2
             + per_lm * (full_cfg.lm_layers - 1))
    print(f"full  per layer: vision {per_vision:.0f} ms, Q-Former pair {per_q2:.0f} ms, LM {per_lm:.0f} ms")
    print(f"full  InstructBLIP Vicuna-7B @ {full_cfg.input_size}px, {args.full_dtype}: forward ~{total / 1000:.1f} s "
          f"(extrapolated, batch 1, {args.threads} threads)")


if __name__ == "__main__":
    main()
