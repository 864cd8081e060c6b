"""CPU forward latency of lav_demo and lav_full at their input sizes (batch 1, 2 threads).

Run under the shared lock: ``flock /tmp/forgerylens-heavy.lock .venv/bin/python -m bench.latency_lav``.
"""
from __future__ import annotations

import torch

from bench.timing import describe, time_ms
from detectors import build_detector


def measure(name: str, runs: int = 10, warmup: int = 3) -> tuple[list[float], int]:
    """Forward times in ms and the parameter count."""
    model = build_detector(name).eval()
    x = torch.randn(1, 3, model.config.input_size, model.config.input_size)
    with torch.inference_mode():
        ms = time_ms(lambda: model(x), runs, warmup)
    return ms, sum(p.numel() for p in model.parameters())


def main() -> None:
    torch.set_num_threads(2)
    for name in ("lav_demo", "lav_full"):
        ms, params = measure(name)
        size = build_detector(name).config.input_size
        print(f"{name}: {params / 1e6:.2f} M params, input {size} px, forward batch 1 on 2 threads: {describe(ms)}")


if __name__ == "__main__":
    main()
