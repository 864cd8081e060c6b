"""``python -m training train-ae``: train the forgery engine's face autoencoder on a real pool.

Reads the pool's aligned crops (landmarks from the cache), trains the shared encoder and its
decoders (one random decoder per step) with L1 + image-gradient + spectrum losses so the
decoded faces stay sharp, and writes ``config.json``, ``model.safetensors`` and
``training.json`` (losses, time) to ``--out``. Run it under the heavy lock:
``flock /tmp/forgerylens-heavy.lock python -m training train-ae``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

HELP = "train the autoencoder that makes the 'ae' deepfake forgeries"
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pool", default=str(ROOT.parent / "shared" / "data" / "ffhq128-real"), help="folder of real faces")
    p.add_argument("--out", default=str(ROOT / "assets" / "forgery" / "autoencoder"))
    p.add_argument("--cpu-minutes", type=float, default=20.0,
                   help="training budget in CPU minutes of this process (20 = 10 min on 2 cores; "
                        "counting CPU, not wall time, keeps the result the same on a busy machine)")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock cap")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--decoders", default="transpose,nearest,pixelshuffle")
    p.add_argument("--adv", type=float, default=0.0,
                   help="weight of a PatchGAN hinge loss (0: none); sharpens the decoders and adds GAN-like texture")
    p.add_argument("--init", default=None, help="start from the weights in this folder (fine-tuning)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many pool images (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)


def load_crops(pool: str, size: int, margin: float, limit: int = 0):
    """Aligned crops (N, size, size, 3) uint8 and face-hull weights (N, size, size) of a pool."""
    import cv2
    import numpy as np

    from detectors.faces import CropPolicy, align_face, load_image, region_mask

    from ..data.landmark_cache import LandmarkCache, list_images

    paths = list_images(pool)
    if limit:
        paths = paths[:limit]
    lms = LandmarkCache().get_many(paths)
    crops, weights = [], []
    policy = CropPolicy(size=size, margin=margin, align=True)
    for path, pts in zip(paths, lms):
        if pts is None:
            continue
        a = align_face(load_image(path), pts, policy)
        crops.append(a.image)
        w = region_mask(a.landmarks, "face", (size, size), soft=True)
        weights.append(0.25 + 0.75 * cv2.dilate(w, np.ones((5, 5), np.uint8)))
    return np.stack(crops), np.stack(weights).astype(np.float32)


def patch_discriminator():
    """A small PatchGAN critic (one logit per ~16 px patch) for the optional adversarial loss."""
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]

    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 96), nn.Conv2d(96, 1, 3, padding=1))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ..data.autoencoder import AutoencoderConfig, FaceAutoencoder

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = AutoencoderConfig(size=args.size, width=args.width, latent=args.latent,
                            decoders=tuple(args.decoders.split(",")))
    if args.init:
        model = FaceAutoencoder.load(args.init).train()
        cfg = model.config
    else:
        model = FaceAutoencoder(cfg)
    crops, weights = load_crops(args.pool, cfg.size, cfg.crop_margin, args.limit)
    x_all = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
    w_all = torch.from_numpy(weights)[:, None]
    n = len(x_all)
    print(f"training on {n} aligned {cfg.size}px crops for {args.cpu_minutes:.1f} CPU minutes", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    disc = patch_discriminator() if args.adv > 0 else None
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.99)) if disc is not None else None
    budget, wall_cap = args.cpu_minutes * 60.0, args.minutes * 60.0
    start, cpu0 = time.time(), time.process_time()
    step, history, running = 0, [], {}
    while time.process_time() - cpu0 < budget and time.time() - start < wall_cap:
        frac = (time.process_time() - cpu0) / budget
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        idx = torch.from_numpy(rng.choice(n, size=min(args.batch_size, n), replace=False))
        x = x_all[idx].float() / 255.0
        w = w_all[idx]
        flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
        x[flip] = x[flip].flip(-1)
        w[flip] = w[flip].flip(-1)
        dec = cfg.decoders[step % len(cfg.decoders)]
        y = model(x, dec)
        l1 = ((y - x).abs() * w).mean()
        grad = (((y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs().mean()
                + ((y[..., 1:] - y[..., :-1]) - (x[..., 1:] - x[..., :-1])).abs().mean())
        spec = (torch.log1p(torch.fft.rfft2(y).abs()) - torch.log1p(torch.fft.rfft2(x).abs())).abs().mean()
        loss = l1 + 0.5 * grad + 0.05 * spec
        parts = {"l1": l1, "grad": grad, "spec": spec}
        if disc is not None:
            warm = min(1.0, step / 200)  # let reconstruction settle before the critic speaks
            g_adv = -disc(y * 2 - 1).mean()
            loss = loss + args.adv * warm * g_adv
            parts["adv"] = g_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if disc is not None:
            d_loss = (F.relu(1 - disc(x * 2 - 1)).mean() + F.relu(1 + disc(y.detach() * 2 - 1)).mean())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            parts["disc"] = d_loss
        step += 1
        for k, v in parts.items():
            running[k] = 0.98 * running.get(k, v.item()) + 0.02 * v.item()
        if step % 50 == 0:
            elapsed = time.time() - start
            cpu = time.process_time() - cpu0
            history.append({"step": step, "seconds": round(elapsed, 1), "cpu_seconds": round(cpu, 1),
                            **{k: round(v, 4) for k, v in running.items()}})
            print(f"step {step} {elapsed:.0f}s (cpu {cpu:.0f}s) " + " ".join(f"{k} {v:.4f}" for k, v in running.items()), flush=True)
    model.eval()
    model.save(args.out)
    seconds = time.time() - start
    info = {"pool": Path(args.pool).name, "images": n, "steps": step, "seconds": round(seconds, 1),
            "cpu_seconds": round(time.process_time() - cpu0, 1), "width": args.width, "latent": args.latent,
            "batch_size": args.batch_size, "lr": args.lr, "adv": args.adv, "init": args.init and Path(args.init).name,
            "threads": args.threads,
            "final": {k: round(v, 4) for k, v in running.items()}, "history": history}
    (Path(args.out) / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"saved {args.out} after {step} steps ({seconds / 60:.1f} min); weighted L1 {running.get('l1', 0):.4f}")
    return 0
