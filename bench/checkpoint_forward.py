"""Forward latency (batch 1) and file size of each shipped demo checkpoint, optionally beside others.

    python -m bench.checkpoint_forward                          # the five in assets/checkpoints
    python -m bench.checkpoint_forward --before vlffd=runs/backup_vlffd --threads 1

``--before FAMILY=FOLDER`` times an earlier checkpoint of that family on the same machine in the
same run (figures from different machines or loads do not compare).
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from bench.timing import time_ms
from detectors import create_detector
from detectors.registry import BUILTIN_FAMILIES
from detectors.weight_files import weights_size

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"


def measure(name: str, source: str, folder: Path, runs: int) -> tuple[float, float]:
    """(median forward ms, MB of its weight files: model.safetensors, or index + shards) of one checkpoint."""
    model = create_detector(name, source).eval()
    x = torch.randn(1, 3, model.config.input_size, model.config.input_size)
    with torch.no_grad():
        times = time_ms(lambda: model(x), runs, warmup=3)
    return statistics.median(times), weights_size(folder) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (the app uses 1)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--before", action="append", default=[], metavar="FAMILY=FOLDER")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    before = dict(item.split("=", 1) for item in args.before)
    print(f"batch 1, {args.threads} thread(s), median of {args.runs}")
    for family in BUILTIN_FAMILIES:
        name = f"{family}_demo"
        if not (ASSETS / family).is_dir():
            continue
        rows = [("before", before[family], Path(before[family]))] if family in before else []
        rows.append(("shipped", "demo", ASSETS / family))
        for label, source, folder in rows:
            ms, mb = measure(name, source, folder, args.runs)
            print(f"{family:16s} {label:8s} forward {ms:7.1f} ms  {mb:6.1f} MB")


if __name__ == "__main__":
    main()
