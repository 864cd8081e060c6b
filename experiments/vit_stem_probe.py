"""Does a from-scratch ViT start learning? The VLFFD demo tower with each patch stem, and a CNN.

By default the task is the easiest the forgery engine makes: reals against autoencoder
deepfakes, one fixed draw of training faces held in memory (``--augment`` applies the recipes'
augmentation to that draw; ``--kinds`` picks another mix). Each model trains with the VLFFD
demo recipe's optimizer and schedule (AdamW, wd 0.05, betas 0.9/0.98, 20 warm-up steps, cosine;
the engine's own builders) on cross-entropy of its coarse verdict; validation AUC every
``--every`` steps.

Measured on 2 cores with the earlier VLFFD demo size (96 px, 8 px tokens; the demo now takes
128 px with 16 px tokens) (1529 training / 171 validation faces, lr 5e-4), reals vs
autoencoder fakes with ``--augment``: the conv-stem tower 0.55 / 0.96 / 0.96 at steps 100 / 200 /
300 (``--steps 300``); the linear patchify tower 0.46-0.53 over 200 steps. Earlier stand-alone
loops with the same settings agree: the patchify tower stayed at 0.45-0.55 for 300 steps also at
lr 2e-3, with mean pooling instead of CLS, and as timm's ViT; a 4-block CNN reached 0.90 at step
100. With blends in the mix (same loop, 300 steps) the conv-stem tower had not started: 0.53
with ``--kinds real=0.5,ae=0.3,sbi=0.1,donor=0.1 --augment``, 0.46 with VLFFD's own mix.

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m experiments.vit_stem_probe --steps 300 --augment
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from detectors import build_detector
from detectors.base import Detector
from training.data.artifact_check import tiny_cnn
from training.data.build import build_dataset
from training.engine.optim import build_optimizer, build_scheduler
from training.metrics import auc as roc_auc
from training.recipes import load_recipe


def load_split(config, split: str, limit: int, kinds: dict[str, float], augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``limit`` faces of ``split`` (one fixed draw; augmented once when ``augment``)."""
    return load_tensors({"kinds": kinds, "augment": augment}, config, split, limit)


def load_tensors(data: dict, config, split: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of up to ``limit`` items of ``build_dataset(data, ...)``, held in memory."""
    ds = build_dataset(data, config, split, seed=0)
    items = [ds[i] for i in range(min(limit, len(ds)))]
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])


class Verdict(nn.Module):
    """Fake-minus-real logit of a model (a detector's coarse head, or a 1-logit CNN)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, Detector):
            logits = self.model(x, sentences=False)["logits"]  # the coarse head only, no text tower
            return logits[:, 1] - logits[:, 0]
        return self.model(x)[:, 0]


@torch.no_grad()
def val_auc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    scores = torch.cat([model(x[i:i + 128]) for i in range(0, len(x), 128)])
    model.train()
    return roc_auc(scores.tolist(), y.tolist())


def train(name: str, model: nn.Module, data, settings: dict, steps: int, every: int,
          also: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
    """Cross-entropy on the training draw; validation AUC (and AUC on each set in ``also``) every ``every`` steps."""
    xtr, ytr, xva, yva = data
    torch.manual_seed(0)
    opt = build_optimizer([{"params": list(model.parameters())}], settings)
    sched = build_scheduler(opt, settings, steps)
    batch = int(settings["batch_size"])
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(xtr), (batch,), generator=g)
        loss = F.binary_cross_entropy_with_logits(model(xtr[idx]), ytr[idx].float())
        opt.zero_grad()
        loss.backward()
        if float(settings["grad_clip"]) > 0:  # 0 means off, as in the training engine
            nn.utils.clip_grad_norm_(model.parameters(), float(settings["grad_clip"]))
        opt.step()
        sched.step()
        if step % every == 0:
            extra = "".join(f"  {k} AUC {val_auc(model, *xy):.3f}" for k, xy in (also or {}).items())
            print(f"{name:>18}  step {step:4d}  loss {loss.item():.3f}  val AUC {val_auc(model, xva, yva):.3f}{extra}  "
                  f"{time.perf_counter() - start:5.0f} s", flush=True)


def add_probe_arguments(ap: argparse.ArgumentParser, recipe_owner: str) -> None:
    """The options every probe shares (schedule, data draw, seeds)."""
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--lr", type=float, default=None, help=f"default: the {recipe_owner} demo recipe's")
    ap.add_argument("--batch", type=int, default=None, help=f"images per step; default: the {recipe_owner} demo recipe's")
    ap.add_argument("--limit", type=int, default=1600, help="training faces held in memory")
    ap.add_argument("--kinds", default="real=0.5,ae=0.5", help="forgery kinds and their shares")
    ap.add_argument("--augment", action="store_true", help="the project's default augmentation, blur and down-scaling "
                    "included (training faces only)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="initialisation seeds, one run each")


def probe_settings(args: argparse.Namespace, detector: str) -> dict:
    """The detector's demo recipe's training settings, with ``--lr`` and ``--batch`` if given."""
    settings = load_recipe("demo", detector)["train"]
    if args.lr is not None:
        settings["lr"] = args.lr
    if args.batch is not None:
        settings["batch_size"] = args.batch
    return settings


def probe_data(config, args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    """(train images, train labels, val images, val labels) of ``--kinds``, held in memory."""
    kinds = {k: float(v) for k, v in (part.split("=") for part in args.kinds.split(","))}
    data = (*load_split(config, "train", args.limit, kinds, args.augment),
            *load_split(config, "val", args.limit, kinds, False))
    print(f"{len(data[0])} training / {len(data[2])} validation faces at {config.input_size} px", flush=True)
    return data


def train_seeds(name: str, build: Callable[[], nn.Module], data, settings: dict, args: argparse.Namespace) -> None:
    """One run of ``build()`` per ``--seeds`` draw (the seed set before building)."""
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = build()
        train(name if len(args.seeds) == 1 else f"{name} seed {seed}", model, data, settings, args.steps, args.every)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_arguments(ap, "VLFFD")
    ap.add_argument("--models", nargs="+", default=["vit-linear-stem", "vit-conv-stem", "cnn"])
    args = ap.parse_args(argv)
    settings = probe_settings(args, "vlffd_demo")
    data = probe_data(build_detector("vlffd_demo").config, args)
    for name in args.models:
        stem = None if name == "cnn" else name.split("-")[1]
        build = (lambda: tiny_cnn()) if stem is None else (lambda: build_detector("vlffd_demo", patch_stem=stem))
        train_seeds(name, lambda: Verdict(build()), data, settings, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
