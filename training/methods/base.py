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
import types
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import torch
from torch import nn

_METHODS: dict[str, type[TrainingMethod]] = {}


@dataclass
class Stage:
    """One stage of a recipe (RFFR: ``mim`` then ``detector``). ``data`` names what it sees:
    ``real_only`` or ``mixed`` (reals plus the recipe's forgery mix)."""

    name: str = "main"
    data: str = "mixed"
    options: dict[str, Any] = field(default_factory=dict)


class MethodOptionsError(ValueError):
    """A recipe's ``method:`` section names an option the method does not have, or a wrong type."""


@dataclass
class MethodOptions:
    """A method's recipe ``method:`` options: each method subclasses this with typed fields and
    their defaults, so a misspelt key is an error (as under ``model:``), not silently ignored."""

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any] | None, family: str = "") -> MethodOptions:
        raw = (recipe or {}).get("method") or {}
        where = f"{family}: method" if family else "method"
        if not isinstance(raw, dict):
            raise MethodOptionsError(f"{where} must be a mapping of options, got {type(raw).__name__}")
        hints = get_type_hints(cls)
        allowed = sorted(f.name for f in fields(cls))
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise MethodOptionsError(f"{where} has unknown option(s) {', '.join(map(repr, unknown))}; "
                                     f"allowed: {', '.join(allowed) or 'none'}")
        values = {}
        for name, value in raw.items():
            try:
                values[name] = _typed(value, hints[name])
            except TypeError:
                raise MethodOptionsError(f"{where}.{name} must be {_type_name(hints[name])}, got {value!r}") from None
        options = cls(**values)
        options.check(where)
        return options

    def check(self, where: str) -> None:
        """Checks across fields (a method overrides it); raise :class:`MethodOptionsError`."""


def _typed(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (ints accepted as floats, lists for tuples); TypeError if it is not one."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _typed(value, arg)
            except TypeError:
                continue
        raise TypeError
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, str) and isinstance(value, hint):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        return origin(_typed(v, inner) for v in value)
    if origin is dict and isinstance(value, dict):
        key, inner = args if args else (Any, Any)
        return {_typed(k, key): _typed(v, inner) for k, v in value.items()}
    raise TypeError


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if get_origin(hint) is None else str(hint).replace("typing.", "")


class TrainingMethod:
    """Paper-specific parts of training one detector family; the engine does the rest.

    ``options_class`` declares the recipe's ``method:`` options (validated at construction,
    read as ``self.options``); :meth:`after_training` runs once when training is done.
    """

    family: str = ""
    options_class: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(self, recipe: dict[str, Any] | None = None) -> None:
        self.recipe = recipe or {}
        self.options = self.options_class.from_recipe(self.recipe, self.family)

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

    def after_training(self, checkpoint: Path) -> dict[str, Any] | None:
        """Called by the engine once, on the main process, after the last stage, with the final
        checkpoint folder (``OUT/best``): a method that refines a trained model from data
        rewrites it there and returns what it recorded. Nothing to do by default."""
        return None


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
