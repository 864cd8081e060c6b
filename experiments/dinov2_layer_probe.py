"""Which DINOv2 block holds forgery traces? A linear probe on frozen tokens after each block.

DINOv2 ViT-S/14 (the converted weights of ``detectors.pretrained``, cache filled by ``python -m
training pretrained download dinov2_vits14``) at 126 px reads faces from the VLFFD demo recipe's
training split (augmentation off): reals and the recipe's forgery kinds. For the chosen blocks the
class token and the mean patch token are concatenated, standardised, and a logistic regression
scores them by 5-fold cross-validation; AUC is printed overall and per kind (each kind against
the reals). Decided the VLFFD and AntifakePrompt demos' towers (docs/experiments.md)::

    python -m experiments.dinov2_layer_probe --faces 600 --blocks 3 6 9 12
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from detectors import build_detector
from training.data import kinds as K
from training.data.build import build_dataset
from training.pretrained_init import apply_init
from training.recipes import load_recipe


def block_features(vit, x: torch.Tensor, blocks: list[int]) -> dict[int, np.ndarray]:
    """(class token, mean patch token) after each listed block (1-based; the last one normed)."""
    h = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
    out = {}
    for i, block in enumerate(vit.blocks, 1):
        h = block(h)
        if i in blocks:
            z = vit.norm(h) if i == len(vit.blocks) else h
            out[i] = torch.cat([z[:, 0], z[:, vit.num_prefix_tokens:].mean(1)], -1).numpy()
    return out


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=600)
    p.add_argument("--blocks", type=int, nargs="+", default=[3, 6, 9, 12])
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args()
    model = build_detector("vlffd_demo", vision_layers=12).eval()
    apply_init(model, {"backbone": "dinov2_vits14", "module": "vision.vit"})
    data = {**load_recipe("demo", "vlffd_demo")["data"], "augment": False}
    dataset = build_dataset(data, model.config, "train", seed=args.seed)
    picked = np.random.default_rng(0).choice(len(dataset), min(args.faces, len(dataset)), replace=False)
    feats: dict[int, list[np.ndarray]] = {b: [] for b in args.blocks}
    labels, codes = [], []
    started = time.time()
    with torch.no_grad():
        for s in range(0, len(picked), 50):
            items = [dataset[int(i)] for i in picked[s:s + 50]]
            labels += [int(it["label"]) for it in items]
            codes += [int(it["kind"]) for it in items]
            for b, f in block_features(model.vision.vit, torch.stack([it["image"] for it in items]), args.blocks).items():
                feats[b].append(f)
    print(f"features of {len(picked)} faces in {time.time() - started:.0f} s")
    y, k = np.array(labels), np.array(codes)
    for b in args.blocks:
        x = np.concatenate(feats[b])
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        p_fake = cross_val_predict(LogisticRegression(C=0.1, max_iter=2000), x, y, cv=5, method="predict_proba")[:, 1]
        per_kind = {K.KIND_NAMES[c]: round(roc_auc_score(y[(k == 0) | (k == c)], p_fake[(k == 0) | (k == c)]), 3)
                    for c in sorted(set(k)) if c != 0}
        print(f"block {b:2d}: AUC {roc_auc_score(y, p_fake):.3f} by kind {per_kind}")


if __name__ == "__main__":
    main()
