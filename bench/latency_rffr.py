"""CPU forward latency of rffr_demo and rffr_full (batch 1, 2 threads, random weights).

Reports the whole forward (16 block passes + 4 border passes of the MAE, two ViTs) and the
frozen-MAE residual alone. Run under the shared lock:
``flock /tmp/forgerylens-heavy.lock .venv/bin/python -m bench.latency_rffr``
"""
from __future__ import annotations

import argparse
import statistics

import torch

from bench.timing import time_ms
from detectors import build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--names", nargs="*", default=["rffr_demo", "rffr_full"])
    parser.add_argument("--patch-stem", default="linear", choices=("linear", "conv"),
                        help="the detector ViTs' patch embedding (the shipped demo has conv)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.names:
        model = build_detector(name, patch_stem=args.patch_stem).eval()
        size = model.config.input_size
        x = torch.randn(1, 3, size, size)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        mim = sum(p.numel() for p in model.mim.parameters()) / 1e6
        repeats = args.repeats if name.endswith("demo") else max(2, args.repeats // 2)
        with torch.inference_mode():
            full = statistics.median(time_ms(lambda: model(x), repeats))
            blocks = statistics.median(time_ms(lambda: model.residual(x), repeats))
            model.config.dense_map = False
            no_ring = statistics.median(time_ms(lambda: model(x), repeats))
            model.config.dense_map = True
        print(f"{name} ({args.patch_stem} stem): {size}px, {params:.1f} M params ({mim:.1f} M MAE): forward {full:.0f} ms "
              f"(without the 4 border passes {no_ring:.0f} ms; 16-block residual alone {blocks:.0f} ms), "
              f"batch 1, {args.threads} threads, median of {repeats}")


if __name__ == "__main__":
    main()
