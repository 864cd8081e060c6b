"""CPU forward latency of ProDet demo and full at their input sizes (batch 1), plus Grad-CAM.

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m bench.latency_prodet [--threads 2] [--runs 20]

Random weights (latency does not depend on them); prints median and p90 milliseconds.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _report(label: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    print(f"{label:<44} median {statistics.median(ms):7.1f} ms   p90 {p90:7.1f} ms   (n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--names", nargs="*", default=["prodet_demo", "prodet_full"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from detectors import build_detector
    from explain.gradcam import grad_cam

    for name in args.names:
        model = build_detector(name).eval()
        size = model.config.input_size
        x = torch.randn(1, 3, size, size)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        infer = params - (sum(p.numel() for p in model.transition.parameters()) / 1e6 if model.transition else 0)

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        print(f"{name}: {model.config.backbone} at {size} px, {params:.1f} M parameters "
              f"({infer:.1f} M used at inference; the rest are training-only transition blocks)")
        _report(f"{name} forward @{size}", _time(forward, args.runs))
        _report(f"{name} Grad-CAM @{size}", _time(lambda: grad_cam(model, x), max(3, args.runs // 4), warmup=1))


if __name__ == "__main__":
    main()
