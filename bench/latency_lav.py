"""CPU forward latency of lav_demo and lav_full at their input sizes (batch 1, 2 threads).

Run under the shared lock: ``flock /tmp/forgerylens-heavy.lock .venv/bin/python bench/latency_lav.py``.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detectors.registry import build_detector  # noqa: E402


def measure(name: str, runs: int = 10, warmup: int = 3) -> tuple[float, float, int]:
    """Median and min forward time in ms, and the parameter count."""
    model = build_detector(name).eval()
    size = model.config.input_size
    x = torch.randn(1, 3, size, size)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times), sum(p.numel() for p in model.parameters())


def main() -> None:
    torch.set_num_threads(2)
    for name in ("lav_demo", "lav_full"):
        med, best, params = measure(name)
        size = build_detector(name).config.input_size
        print(f"{name}: {params / 1e6:.2f} M params, input {size} px, forward batch 1 on 2 threads: "
              f"median {med:.0f} ms, min {best:.0f} ms")


if __name__ == "__main__":
    main()
