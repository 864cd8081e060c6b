"""CPU forward latency of vlffd_demo and vlffd_full (batch 1, 2 threads, random weights).

Run under the shared lock: ``flock /tmp/forgerylens-heavy.lock .venv/bin/python -m bench.latency_vlffd``.
The forward includes the sentence space (candidate text embeddings are cached after the first
call, as at inference). Grad-CAM time is printed too.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # vlffd_full names CLIP's tokenizer: use the cache or fall back

from bench.timing import describe, time_ms
from detectors import build_detector


def measure(name: str, repeats: int, gradcam: bool) -> None:
    model = build_detector(name).eval()
    size = model.config.input_size
    x = torch.randn(1, 3, size, size)
    t0 = time.perf_counter()
    with torch.no_grad():
        model(x)  # warm-up; also embeds the candidate sentences once
    first = time.perf_counter() - t0
    with torch.no_grad():
        times = time_ms(lambda: model(x), repeats, warmup=0)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    line = (f"{name}: {params:.2f} M params, input {size}px, first call {first * 1000:.0f} ms, "
            f"forward {describe(times)}")
    if gradcam:
        from explain.gradcam import grad_cam

        grad_cam(model, x)
        t = time.perf_counter()
        grad_cam(model, x)
        line += f", Grad-CAM {(time.perf_counter() - t) * 1000:.0f} ms"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-gradcam", action="store_true")
    parser.add_argument("names", nargs="*", default=["vlffd_demo", "vlffd_full"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.names:
        measure(name, args.repeats, not args.no_gradcam)


if __name__ == "__main__":
    main()
