"""CPU forward latency of ProDet demo and full at their input sizes (batch 1), plus Grad-CAM.

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m bench.latency_prodet [--threads 2] [--runs 20]

Random weights (latency does not depend on them); prints median and p90 milliseconds.
"""
from __future__ import annotations

import argparse

import torch

from bench.timing import describe, time_ms


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
        print(f"{name} forward @{size}: {describe(time_ms(forward, args.runs, warmup=3))}")
        print(f"{name} Grad-CAM @{size}: {describe(time_ms(lambda: grad_cam(model, x), max(3, args.runs // 4)))}")


if __name__ == "__main__":
    main()
