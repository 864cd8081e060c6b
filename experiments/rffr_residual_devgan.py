"""The paper's central claim, stage 1 alone: does the real-face MAE's residual rank fakes above reals?

Each face is scored by its residual energy only (no stage-2 detector): the mean squared
``clamp(4 * (recon - input), -1, 1)`` over the 16 paper blocks, where each block is rebuilt by
the frozen MAE with only that block hidden. Also printed: the same over the dense map (border
ring included), the mean ``|residual|`` and the highest block. Faces are cropped exactly as
``python -m training evaluate`` crops them (the detector's crop policy, no augmentation).
``dev-gan`` is evaluation data only; nothing here trains.

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m experiments.rffr_residual_devgan \
        --source assets/checkpoints/rffr
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from detectors import create_detector

ROOT = Path(__file__).resolve().parent.parent


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


@torch.no_grad()
def residual_scores(model, dataset, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per-face stage-1 scores of every item of ``dataset`` (in order) and the labels."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out: dict[str, list] = {"blocks": [], "dense": [], "abs": [], "max_block": [], "label": []}
    for batch in loader:
        r = model.residual(batch["image"], ring=True)
        res = r["residual"]
        out["blocks"].append(r["block_energy"].mean(1))
        out["dense"].append(res.pow(2).mean((1, 2, 3)))
        out["abs"].append(res.abs().mean((1, 2, 3)))
        out["max_block"].append(r["block_energy"].max(1).values)
        out["label"].append(batch["label"])
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="rffr_demo")
    parser.add_argument("--source", default="demo", help="demo | random | a checkpoint folder")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dev-gan"),
                        help="a folder with real/ and fake/")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N items (0 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from training.data.build import build_dataset

    model = create_detector(args.detector, args.source).eval()
    data = build_dataset({"folder": args.data, "augment": False}, model.config, "test")
    if args.limit:
        rng = np.random.default_rng(0)
        data = torch.utils.data.Subset(data, sorted(rng.choice(len(data), min(args.limit, len(data)), replace=False)))
    start = time.perf_counter()
    s = residual_scores(model, data)
    took = time.perf_counter() - start
    labels = s["label"]
    figures = {name: auc(s[name], labels) for name in ("blocks", "dense", "abs", "max_block")}
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    print(f"{args.detector} from {args.source} on {args.data}: {n_real} real, {n_fake} fake, {took:.0f} s")
    print(f"AUC of residual energy alone (16 blocks, the paper's residual): {figures['blocks']:.4f}")
    print(f"  dense map incl. border ring: {figures['dense']:.4f}   mean |residual|: {figures['abs']:.4f}   "
          f"highest block: {figures['max_block']:.4f}")
    for label, name in ((0, "real"), (1, "fake")):
        e = s["blocks"][labels == label]
        print(f"  {name}: residual energy mean {e.mean():.5f} (sd {e.std():.5f})")
    if args.json:
        print(json.dumps({"auc": figures, "n_real": n_real, "n_fake": n_fake, "source": args.source}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
