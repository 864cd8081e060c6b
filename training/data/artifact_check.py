"""Quick check of a forgery kind's artifact: does a tiny classifier trained on real vs that kind
rank unseen GAN faces (``dev-gan``, evaluation only, never trained on) above chance?

    python -m training.data.artifact_check --kind ae --spectral        # ~30 s CPU
    flock /tmp/forgerylens-heavy.lock python -m training.data.artifact_check --kind ae --minutes 4

``--spectral``: logistic regression on the azimuthal log power spectrum of the high-pass
residual (where up-sampling traces live). Otherwise: a tiny CNN for ``--minutes``.
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


def spectrum_features(images: torch.Tensor, bins: int = 48) -> np.ndarray:
    """Azimuthally averaged log power spectrum of the grey high-pass residual, per image."""
    grey = images.mean(1, keepdim=True)
    blur = torch.nn.functional.avg_pool2d(grey, 3, stride=1, padding=1, count_include_pad=False)
    power = torch.fft.fftshift(torch.fft.fft2((grey - blur)[:, 0]).abs() ** 2, dim=(-2, -1))
    h, w = power.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    radius = torch.sqrt(xx.float() ** 2 + yy.float() ** 2)
    idx = torch.clamp((radius / radius.max() * bins).long(), max=bins - 1).reshape(-1)
    flat = power.reshape(len(power), -1)
    sums = torch.zeros(len(power), bins).index_add_(1, idx, flat)
    counts = torch.zeros(bins).index_add_(0, idx, torch.ones_like(idx, dtype=torch.float))
    return torch.log(sums / counts + 1e-8).numpy()


def _features(ds, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    n = len(ds) if n is None else min(n, len(ds))
    sub = torch.utils.data.Subset(ds, range(n))
    xs, ys = [], []
    for b in torch.utils.data.DataLoader(sub, batch_size=64):
        xs.append(spectrum_features(b["image"]))
        ys.append(b["label"].numpy())
    return np.concatenate(xs), np.concatenate(ys)


def spectral_check(train, val, dev, n_train: int = 600) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _features(train, n_train)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x, y)
    xv, yv = _features(val)
    xd, yd = _features(dev)
    return roc_auc_score(yv, clf.decision_function(xv)), roc_auc_score(yd, clf.decision_function(xd))


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
    p.add_argument("--ae-weights", default=None, help="autoencoder folder for the ae kind")
    p.add_argument("--spectral", action="store_true", help="logistic regression on residual spectra (fast)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    cfg = DetectorConfig(input_size=args.size, crop_size=args.size, mean=(0.5,) * 3, std=(0.5,) * 3)
    data = {"kinds": {"real": 1, args.kind: 1}, "cycle_kinds": True, "ae_weights": args.ae_weights}
    train = build_dataset(data, cfg, "train", seed=args.seed)
    val = build_dataset(data, cfg, "val", seed=args.seed)
    dev = build_dataset({"folder": args.dev}, cfg, "all")
    if args.spectral:
        auc_val, auc_dev = spectral_check(train, val, dev)
        print(f"kind={args.kind} spectral logistic regression: AUC held-out {args.kind}: {auc_val:.3f}  "
              f"AUC dev-gan: {auc_dev:.3f} (dev-gan no-face files: {dev.no_face_count})")
        return 0
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
