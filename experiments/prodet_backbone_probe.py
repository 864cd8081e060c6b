"""Which small EfficientNet starts learning from scratch? Backbones for the ProDet demo, and a CNN.

Same task and loop as ``experiments/vit_stem_probe.py`` (reals against autoencoder deepfakes by
default, one fixed draw held in memory, validation AUC every ``--every`` steps), under the ProDet
demo recipe's optimizer and schedule (Adam 1e-3, 20 warm-up steps, cosine). Each backbone gets a
linear verdict on its mean-pooled last feature map; ``prodet`` is the whole demo detector (heads,
feature attention, final classifier); ``cnn`` is the probes' small 4-block CNN.

A backbone name is a timm model name with optional suffixes:
``+stem1`` keeps the stem at stride 1 (the 128 px face is not halved before the first block),
``+os16`` dilates the last stage (timm ``output_stride=16``).

Measured on 2 cores (1529 training / 171 validation faces at 128 px, ``--batch 32``: the recipe's
8 faces x 4 anchors; read as 8 images per step, the ``prodet`` model reached only 0.58-0.72 by
step 150), AUC at steps 50 / 100 / 150, reals vs autoencoder fakes:

* without augmentation: ``prodet`` 0.70 / 0.89 / 0.94, ``tinynet_b`` 0.70 / 0.80 / 0.85,
  ``cnn`` 0.77 / 1.00 / 1.00;
* with ``--augment`` (the project's default augmentation: flip, colour, blur, down-scaling, JPEG):
  ``tinynet_b`` 0.62 / 0.65 / 0.67, ``cnn`` 0.56 / 0.73 / 0.86, ``tinynet_b+stem1`` 0.67 / 0.86
  at steps 50 / 100 (4x the compute);
* the whole ``prodet`` model on the four anchors' mix with ``--augment``
  (``--kinds real=0.25,sbi=0.25,donor=0.25,ae=0.25``): 0.55 / 0.50 / 0.51 and 0.52 at step 200
  while its training loss fell to 0.15-0.27 (it memorises the draw).

The blur and down-scaling were what held the demo back: its recipe now trains without them
(``training/configs/prodet_demo.yaml``; held-out AUC 0.59 -> 0.80, see the model card).

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m experiments.prodet_backbone_probe --steps 150 \\
        --batch 32 --augment --models tinynet_b tinynet_b+stem1 cnn
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from detectors import build_detector
from experiments.vit_stem_probe import Verdict, add_probe_arguments, probe_data, probe_settings, train_seeds
from training.data.artifact_check import tiny_cnn


class PooledVerdict(nn.Module):
    """A timm backbone's mean-pooled last feature map -> one fake logit."""

    def __init__(self, spec: str) -> None:
        super().__init__()
        import timm

        name, *options = spec.split("+")
        stride = 16 if "os16" in options else 32
        self.backbone = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", output_stride=stride)
        if "stem1" in options:
            self.backbone.conv_stem.stride = (1, 1)
        self.head = nn.Linear(self.backbone.num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x).mean((2, 3)))[:, 0]


class DetectorVerdict(nn.Module):
    """The ProDet demo detector's fake-minus-real logit."""

    def __init__(self) -> None:
        super().__init__()
        self.model = build_detector("prodet_demo")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)["logits"]
        return logits[:, 1] - logits[:, 0]


def build(spec: str) -> nn.Module:
    if spec == "cnn":
        return Verdict(tiny_cnn())
    if spec == "prodet":
        return DetectorVerdict()
    return PooledVerdict(spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_arguments(ap, "ProDet")
    ap.add_argument("--models", nargs="+", default=["tinynet_b", "tinynet_b+stem1", "cnn"],
                    help="'prodet', 'cnn', or a timm model name with +stem1/+os16")
    args = ap.parse_args(argv)
    settings = probe_settings(args, "prodet_demo")
    data = probe_data(build_detector("prodet_demo").config, args)
    for spec in args.models:
        train_seeds(spec, lambda spec=spec: build(spec), data, settings, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
