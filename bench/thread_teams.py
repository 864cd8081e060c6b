"""Why the app runs every model call on one thread (``detectors/compute_thread.py``).

    flock /tmp/forgerylens-heavy.lock python -m bench.thread_teams [--threads 2]

Times a small convolution and an element-wise add (median of 50) from the first thread that
uses torch, then from a second thread, then from the first again. PyTorch's OpenMP runtime
gives each of the two threads a team of its own; on a 2-core machine, once both exist, every
parallel op is slower from either thread (this machine: add 0.02 -> 0.16-0.23 ms, conv 0.8 -> 1.6 ms).
"""
from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch


def op_times(repeats: int = 50) -> tuple[float, float]:
    """Median ms of a 32-channel 3x3 conv on 64x64 and of an add over 131k floats."""
    x = torch.randn(1, 32, 64, 64)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).eval()

    def median_ms(fn) -> float:
        with torch.no_grad():
            for _ in range(5):
                fn()
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1e3

    return median_ms(lambda: conv(x)), median_ms(lambda: x + x)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with ThreadPoolExecutor(1) as other:
        rows = [("first thread, alone", op_times()),
                ("second thread, after the first", other.submit(op_times).result()),
                ("first thread again", op_times())]
    print(f"torch {torch.__version__}, {args.threads} threads, parallel backend: "
          f"{torch.__config__.parallel_info().splitlines()[-1].strip()}")
    for name, (conv_ms, add_ms) in rows:
        print(f"  {name:32s} conv {conv_ms:.3f} ms   add {add_ms:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
