"""Which training forgeries transfer to GAN faces? A small CNN per data setting, scored on both.

Each setting trains the same 4-block CNN (``training.data.artifact_check.tiny_cnn``, 128 px) on one
fixed, augmented draw of the pool's training faces with a given kind mix and forgery options, and
reports validation AUC on held-out project forgeries of the same setting and AUC on a folder of
unseen fakes (``dev-gan``: StyleGAN2 faces, never trained on) every ``--every`` steps. It isolates
the data from the detectors: what a setting teaches shows up here in minutes.

Measured (reals vs autoencoder deepfakes, 1529 training / 171 held-out faces, 300 steps, lr 1e-3;
held-out / dev-gan AUC at steps 100, 200, 300):
- the engine's default blended autoencoder fakes: 0.85 / 0.42, 0.97 / 0.35, 0.97 / 0.32;
- half of them whole-frame (``{"ae": {"whole_frame_p": 0.5}}``, background synthesised too):
  0.79 / 0.49, 0.99 / 0.36, 1.00 / 0.33;
- no unsharp masking of the decoded face (``{"ae": {"sharpen_p": 0.0}}``): 0.85 / 0.37 at step 100.
The better a CNN learns the autoencoder's traces, the more *real* it finds StyleGAN2 faces, whether
the fake covers the face or the whole picture and whether or not it is sharpened: the GAN faces
carry less of those traces than real JPEG photos do (mean |Laplacian| 13.8 vs 17.9 on dev-gan).

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m experiments.transfer_probe \\
        --setting blended 'ae=0.5,real=0.5' '{}' \\
        --setting whole-frame 'ae=0.5,real=0.5' '{"ae": {"whole_frame_p": 0.5}}'
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from detectors import build_detector
from experiments.vit_stem_probe import Verdict, load_tensors, train
from training.data.artifact_check import tiny_cnn
from training.recipes import load_recipe

ROOT = Path(__file__).resolve().parent.parent


def run_setting(name: str, kinds: dict[str, float], options: dict, config, unseen, args) -> None:
    data = {"kinds": kinds, "forgery_options": options, "augment": True}
    splits = (*load_tensors(data, config, "train", args.limit), *load_tensors(data, config, "val", args.limit))
    torch.manual_seed(0)
    model = Verdict(tiny_cnn())
    # ProDet's demo schedule (Adam, cosine, 20 warm-up steps) with this bench's batch, lr and clipping
    settings = {**load_recipe("demo", "prodet_demo")["train"], "lr": args.lr, "batch_size": 32, "grad_clip": 1.0}
    train(name, model, splits, settings, args.steps, args.every, also={"unseen": unseen})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", nargs=3, action="append", metavar=("NAME", "KINDS", "OPTIONS"), required=True,
                    help="a name, kind shares (real=0.5,ae=0.5) and forgery options as JSON")
    ap.add_argument("--unseen", default=str(ROOT.parent / "shared" / "data" / "dev-gan"),
                    help="folder with real/ and fake/ never trained on")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=1600, help="training faces held in memory")
    args = ap.parse_args(argv)
    config = build_detector("prodet_demo").config
    unseen = load_tensors({"folder": args.unseen}, config, "test", 10_000)
    print(f"unseen: {len(unseen[0])} faces from {args.unseen}", flush=True)
    for name, kinds_text, options_text in args.setting:
        kinds = {k: float(v) for k, v in (part.split("=") for part in kinds_text.split(","))}
        run_setting(name, kinds, json.loads(options_text), config, unseen, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
