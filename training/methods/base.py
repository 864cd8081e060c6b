"""The contract between the training engine and a detector's paper-specific training.

Batches the engine hands to a method are dicts (see ``training/data``):
``image`` (B, 3, S, S) float, normalised for the detector; ``label`` (B,) long, 0 real /
1 fake; ``kind`` (B,) long, the forgery kind code from ``training.data.kinds``; ``mask``
(B, 1, S, S) float in [0, 1], the ground-truth forgery mask (zeros for reals); ``regions``
(B, R) float multi-hot over ``training.data.kinds.SENTENCE_REGIONS``; ``sentence`` list[str];
``video_id`` list[str].
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

_METHODS: dict[str, type["TrainingMethod"]] = {}


@dataclass
class Stage:
    """One stage of a recipe (RFFR: ``mim`` then ``detector``). ``data`` names what it sees:
    ``real_only`` or ``mixed`` (reals plus the recipe's forgery mix)."""

    name: str = "main"
    data: str = "mixed"
    options: dict[str, Any] = field(default_factory=dict)


class TrainingMethod:
    """Paper-specific parts of training one detector family; the engine does the rest."""

    family: str = ""

    def __init__(self, recipe: dict[str, Any] | None = None) -> None:
        self.recipe = recipe or {}

    def stages(self) -> list[Stage]:
        return [Stage()]

    def trainable_parameters(self, model: nn.Module, stage: Stage) -> Iterable[nn.Parameter]:
        return (p for p in model.parameters() if p.requires_grad)

    def loss(self, model: nn.Module, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        """Return a dict with ``loss`` (scalar to minimise) and any parts to log."""
        raise NotImplementedError

    def validation_model(self, model: nn.Module, stage: Stage) -> nn.Module:
        """What validation scores during ``stage`` (its ``forward`` returns ``prob_fake``): the
        detector itself unless a stage trains a part the detector's verdict does not read yet."""
        return model


def register_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    _METHODS[cls.family] = cls
    return cls


def get_method(family: str, recipe: dict[str, Any] | None = None) -> TrainingMethod:
    """The method of ``family`` (imports ``training.methods.<family>`` on first use)."""
    if family not in _METHODS:
        module = f"training.methods.{family}"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    if family not in _METHODS:
        raise KeyError(f"no training method for detector family {family!r}")
    return _METHODS[family](recipe)
