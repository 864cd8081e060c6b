"""Forgery throughput per generator: images/s on one core at 256 px from cached landmarks.

    python -m bench.forgery_throughput [--pool DIR] [--size 256] [--n 200] [--kinds sbi,donor,region,ae]

Landmarks come from the disk cache (computed once if missing), crops are aligned beforehand,
so the figure is the generator alone. Rates are per CPU-second of this single-threaded process
(robust on a shared machine); the wall-clock rate is printed beside it (what a training data loader pays per fake on top of
reading and aligning an image). Target: >= 150 images/s for sbi and region.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", default=str(ROOT.parent / "shared" / "data" / "ffhq128-real"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--n", type=int, default=200, help="forgeries per kind")
    p.add_argument("--faces", type=int, default=50, help="distinct faces to cycle through")
    p.add_argument("--kinds", default="sbi,donor,region,ae")
    args = p.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from detectors.faces import CropPolicy, align_face, load_image
    from training.data.donors import nearest_neighbours
    from training.data.forgery import make_forgery
    from training.data.landmark_cache import LandmarkCache, list_images

    files = list_images(args.pool)[: args.faces]
    lms = LandmarkCache().get_many(files)
    faces = [align_face(load_image(f), pts, CropPolicy(size=args.size)) for f, pts in zip(files, lms) if pts is not None]
    neighbours = nearest_neighbours([f.landmarks for f in faces], k=5)
    print(f"{len(faces)} faces at {args.size}px, 1 thread, {args.n} forgeries per kind")
    for kind in args.kinds.split(","):
        options = {}
        if kind == "ae":
            try:
                from training.data.autoencoder import get_autoencoder

                options["model"] = get_autoencoder()
            except FileNotFoundError as exc:
                print(f"{kind:>7}: skipped ({exc})")
                continue
        rng = np.random.default_rng(0)
        for warm in range(3):  # warm-up (imports, first allocations)
            f = faces[warm % len(faces)]
            make_forgery(kind, f.image, f.landmarks, rng, donors=[(faces[1].image, faces[1].landmarks)], **options)
        start, cpu0 = time.perf_counter(), time.process_time()
        for i in range(args.n):
            j = i % len(faces)
            d = faces[int(neighbours[j][i % neighbours.shape[1]])]
            make_forgery(kind, faces[j].image, faces[j].landmarks, rng, donors=[(d.image, d.landmarks)], **options)
        dt, cpu = time.perf_counter() - start, time.process_time() - cpu0
        print(f"{kind:>7}: {args.n / cpu:7.1f} images/s per CPU-second ({1000 * cpu / args.n:.1f} ms CPU each); "
              f"wall {args.n / dt:.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
