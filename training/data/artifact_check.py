"""Quick check of a forgery kind's artifact: does a tiny CNN trained on real vs that kind rank
unseen GAN faces (``dev-gan``, evaluation only, never trained on) above chance?

    flock /tmp/forgerylens-heavy.lock python -m training.data.artifact_check --kind ae --minutes 4

Prints the AUC on held-out pool forgeries of the same kind and on ``dev-gan`` (real vs fake).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]


def tiny_cnn(width: int = 24) -> nn.Module:
    w = width

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    return nn.Sequential(block(3, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 4 * w),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 1))


@torch.no_grad()
def scores(model: nn.Module, ds, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    ys, ps = [], []
    for b in torch.utils.data.DataLoader(ds, batch_size=batch_size):
        ps.append(model(b["image"]).squeeze(1).numpy())
        ys.append(b["label"].numpy())
    return np.concatenate(ys), np.concatenate(ps)


def main(argv: list[str] | None = None) -> int:
    from sklearn.metrics import roc_auc_score

    from detectors.config import DetectorConfig

    from .build import build_dataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="ae")
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--dev", default=str(ROOT.parent / "shared" / "data" / "dev-gan"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    cfg = DetectorConfig(input_size=args.size, crop_size=args.size, mean=(0.5,) * 3, std=(0.5,) * 3)
    data = {"kinds": {"real": 1, args.kind: 1}, "cycle_kinds": True}
    train = build_dataset(data, cfg, "train", seed=args.seed)
    val = build_dataset(data, cfg, "val", seed=args.seed)
    dev = build_dataset({"folder": args.dev}, cfg, "all")
    model = tiny_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    start, epoch, steps = time.time(), 0, 0
    while time.time() - start < args.minutes * 60:
        train.set_epoch(epoch)
        model.train()
        for b in torch.utils.data.DataLoader(train, batch_size=32, num_workers=1):
            loss = nn.functional.binary_cross_entropy_with_logits(model(b["image"]).squeeze(1), b["label"].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.time() - start > args.minutes * 60:
                break
        epoch += 1
    y, s = scores(model, val)
    auc_val = roc_auc_score(y, s)
    y, s = scores(model, dev)
    auc_dev = roc_auc_score(y, s)
    print(f"kind={args.kind} steps={steps} epochs~{steps * 32 / len(train):.1f} "
          f"AUC held-out {args.kind}: {auc_val:.3f}  AUC dev-gan: {auc_dev:.3f} (dev-gan no-face files: {dev.no_face_count})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
