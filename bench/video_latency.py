"""Video latency: a 10-second 720p clip, 16 frames, every shipped detector, timeline + key-frame evidence.

    python -m bench.video_latency [--frames 16] [--seconds 10] [--runs 3] [--threads 1] [--codec mp4v]

Makes the clip on the fly (the public-domain astronaut portrait sliding across a 1280x720 frame
at 30 fps, written with OpenCV), loads the demo checkpoints of ``assets/checkpoints``, warms
up once, then times ``pipeline.analyze_video`` end to end and reports decode, face tracking,
scoring and key-frame evidence separately, and frames per second per detector (scoring only).
Runs the models on the compute thread with ``--threads`` torch threads, as the app does.
Target: at most 8 s end to end on 2 cores.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def make_clip(path: Path, seconds: float, fps: int = 30, size: tuple[int, int] = (1280, 720),
              codec: str = "mp4v") -> Path:
    """The portrait (460 px) sliding left to right across a grey 720p frame."""
    import skimage.data

    portrait = cv2.resize(skimage.data.astronaut(), (460, 460), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {codec!r} here; try --codec mp4v or MJPG")
    n = int(round(seconds * fps))
    for i in range(n):
        frame = np.full((h, w, 3), 90, np.uint8)
        x = int(40 + (w - 460 - 80) * i / max(1, n - 1))
        frame[130:590, x:x + 460] = portrait
        writer.write(frame)
    writer.release()
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the app's default is 1)")
    p.add_argument("--codec", default="mp4v")
    args = p.parse_args()

    import torch

    import pipeline
    from detectors import compute_thread

    torch.set_num_threads(args.threads)
    compute_thread.start()
    folder = Path(tempfile.mkdtemp(prefix="video-bench-"))
    started = time.perf_counter()
    clip = make_clip(folder / f"clip.{'avi' if args.codec == 'MJPG' else 'mp4'}", args.seconds, codec=args.codec)
    print(f"clip: {args.seconds:g} s, 1280x720, 30 fps, {args.codec}, {clip.stat().st_size / 1e6:.1f} MB "
          f"(made in {time.perf_counter() - started:.1f} s)")
    analyzer = pipeline.Analyzer()
    loaded = analyzer.load_defaults()
    for item in loaded:
        print(f"  {item.slot.family}: {item.source or item.message}")
    pipeline.analyze_video(analyzer, clip, frames=args.frames)  # warm-up: mediapipe graphs, first calls
    reports = [pipeline.analyze_video(analyzer, clip, frames=args.frames) for _ in range(args.runs)]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"\n{args.frames} frames, {args.runs} runs after one warm-up, {args.threads} torch thread(s); medians:")
    for stage in ("decode", "tracking", "scoring", "evidence", "total"):
        print(f"  {stage:<9} {med([r.seconds[stage] for r in reports]):6.2f} s")
    print("\nper detector (scoring = crop + decide every frame; evidence = explain the key frame):")
    print(f"  {'detector':<16} {'frames':>6} {'scoring s':>10} {'frames/s':>9} {'evidence s':>11} {'video score':>12}")
    for i, first in enumerate(reports[0].results):
        if not first.ok:
            print(f"  {first.family:<16} {first.status}: {first.message}")
            continue
        scoring = med([r.results[i].scoring_seconds for r in reports])
        evidence = med([r.results[i].evidence_seconds for r in reports])
        n = len(first.scored)
        print(f"  {first.family:<16} {n:>6} {scoring:>10.2f} {n / scoring:>9.1f} {evidence:>11.2f} "
              f"{first.score:>8.3f} {first.label}")
    total = med([r.seconds["total"] for r in reports])
    print(f"\nend to end: {total:.2f} s (target <= 8 s on 2 cores)")
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
