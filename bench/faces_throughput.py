"""Face-pipeline throughput: decode + detect 478 landmarks + align, on 512 px photos.

    python -m bench.faces_throughput [--n 100] [--threads 2]

Uses the public-domain astronaut portrait plus, where present, shared real faces upscaled to
512 px; prints faces/s and per-stage milliseconds.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
POOL = ROOT.parent / "shared" / "data" / "ffhq128-real"


def _photos(n: int) -> list[bytes]:
    import skimage.data

    images = [Image.fromarray(skimage.data.astronaut())]
    images += [Image.open(p).convert("RGB").resize((512, 512), Image.Resampling.BICUBIC)
               for p in sorted(POOL.glob("*.png"))[: max(0, n - 1)]]
    out = []
    for i in range(n):
        buf = io.BytesIO()
        images[i % len(images)].save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import cv2

    cv2.setNumThreads(args.threads)
    from detectors.faces import CropPolicy, NoFaceFound, align_face, detect_faces, load_image

    photos = _photos(args.n)
    detect_faces(load_image(photos[0]))  # warm-up: builds the mediapipe graphs
    stages = {"decode": [], "detect": [], "align": []}
    found = 0
    start = time.perf_counter()
    for data in photos:
        t0 = time.perf_counter()
        rgb = load_image(data)
        t1 = time.perf_counter()
        try:
            face = detect_faces(rgb)[0]
        except NoFaceFound:
            continue
        t2 = time.perf_counter()
        align_face(rgb, face, CropPolicy(size=256))
        t3 = time.perf_counter()
        found += 1
        stages["decode"].append(t1 - t0)
        stages["detect"].append(t2 - t1)
        stages["align"].append(t3 - t2)
    total = time.perf_counter() - start
    print(f"photos: {len(photos)} at 512 px, faces found: {found}, threads: {args.threads}")
    print(f"throughput: {found / total:.1f} faces/s ({1000 * total / len(photos):.1f} ms per photo)")
    for name, values in stages.items():
        print(f"  {name:7s} median {1000 * statistics.median(values):6.1f} ms  p90 {1000 * np.percentile(values, 90):6.1f} ms")


if __name__ == "__main__":
    main()
