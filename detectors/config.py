"""Detector configs: one dataclass per detector is the source of truth, JSON round-trippable."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .faces.align import CropPolicy

C = TypeVar("C", bound="DetectorConfig")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DetectorConfig:
    """Fields every detector shares: identity, input, crop policy and decision threshold.

    ``name`` is the registry entry that built the model (``lav_demo``); ``threshold`` is the
    calibrated decision threshold on ``prob_fake`` (written back by ``training evaluate``).
    """

    name: str = ""
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_size: int = 256
    crop_margin: float = 1.3
    crop_align: bool = True
    threshold: float = 0.5
    pretrained_weights: str = ""  # what a user online would initialise the backbone from
    #: dtype of the floating tensors ``training export`` writes (``float16`` halves a checkpoint);
    #: the model computes in float32 either way (loading copies into float32 parameters)
    storage_dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata (training data, metrics)

    @property
    def crop_policy(self) -> CropPolicy:
        return CropPolicy(size=self.crop_size, margin=self.crop_margin, align=self.crop_align)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from a ``config.json`` dict; unknown keys are an error, lists become tuples."""
        return cls().updated(**data)

    def updated(self: C, **overrides: Any) -> C:
        """A copy with ``overrides`` applied, type-coerced as JSON loses tuples."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no field(s) {', '.join(unknown)}")
        hints = typing.get_type_hints(type(self))
        coerced = {k: _coerce(hints.get(k), v) for k, v in overrides.items()}
        return dataclasses.replace(self, **coerced)


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else None
        return tuple(_coerce(inner, v) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
