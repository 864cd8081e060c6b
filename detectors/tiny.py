"""A tiny convolutional detector for testing the base class, registry and Hub loading.

Not one of the five papers' detectors, and hidden from :func:`list_detectors`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base import Detector
from .config import DetectorConfig
from .registry import register_detector


@dataclass
class TinyConfig(DetectorConfig):
    input_size: int = 32
    crop_size: int = 64
    width: int = 8


class TinyDetector(Detector):
    family = "tiny"
    display_name = "Tiny test detector"
    paper = "not a paper: a random-weight detector for tests"
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        w = config.width
        self.body = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                                  nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * w, 2)

    def forward(self, x: torch.Tensor) -> dict:
        fmap = self.body(x)
        features = fmap.mean((2, 3))
        return self.outputs(self.head(features), features, fmap=fmap)

    def target_layers(self) -> list[nn.Module]:
        return [self.body[-2]]


def _create(variant: str, **model_args: Any) -> TinyDetector:
    """Build ``variant`` from its config fields."""
    return TinyDetector(TinyConfig(name=variant).updated(**model_args))


@register_detector(hidden=True)
def tiny_test(**overrides: Any) -> TinyDetector:
    """A random-weight detector for the registry, base-class and Hub tests."""
    model_args: dict[str, Any] = dict()
    return _create("tiny_test", **{**model_args, **overrides})
