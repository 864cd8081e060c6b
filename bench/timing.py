"""Timing helpers shared by the latency benchmarks: run a callable a few times, report in ms."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_ms(fn: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    """Milliseconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def p90(ms: list[float]) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def describe(ms: list[float]) -> str:
    """``median … ms, p90 … ms, min … ms (n=…)``: the line every latency script prints."""
    return (f"median {statistics.median(ms):.1f} ms, p90 {p90(ms):.1f} ms, min {min(ms):.1f} ms "
            f"(n={len(ms)})")
