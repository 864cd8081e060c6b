"""A timm-style registry: ``@register_detector`` on factories, ``create_detector(name, source)``."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UnknownDetector

#: Modules that hold built-in detectors, imported on first use (not at package import).
BUILTIN_MODULES = ("tiny", "lav", "rffr", "antifake_prompt", "prodet", "vlffd")
_REGISTRY: dict[str, "DetectorEntry"] = {}
_builtins_loaded = False


@dataclass(frozen=True)
class DetectorEntry:
    name: str
    family: str
    factory: Callable[..., Any]
    hidden: bool = False


def register_detector(fn: Callable[..., Any] | None = None, *, hidden: bool = False):
    """Register a factory ``name(**config_overrides) -> Detector`` under its function name.

    The family is the name without its last ``_variant`` part (``lav_demo`` -> ``lav``).
    ``hidden`` keeps test-only detectors out of :func:`list_detectors`.
    """

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        name = f.__name__
        family = name.rsplit("_", 1)[0] if "_" in name else name
        _REGISTRY[name] = DetectorEntry(name, family, f, hidden)
        return f

    return wrap(fn) if fn is not None else wrap


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    for module in BUILTIN_MODULES:
        full = f"{__package__}.{module}"
        if importlib.util.find_spec(full) is not None:
            importlib.import_module(full)
    _builtins_loaded = True


def list_detectors(include_hidden: bool = False) -> list[str]:
    """Names of the registered detectors (``*_full`` and ``*_demo`` of each family)."""
    _load_builtins()
    return sorted(n for n, e in _REGISTRY.items() if include_hidden or not e.hidden)


def list_families(include_hidden: bool = False) -> list[str]:
    return sorted({_REGISTRY[n].family for n in list_detectors(include_hidden)})


def get_entry(name: str) -> DetectorEntry:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_detectors()) or "none"
        raise UnknownDetector(f"unknown detector {name!r}; known detectors: {known}") from None


def build_detector(name: str, **config_overrides: Any):
    """A freshly initialised detector (random weights) of registry entry ``name``."""
    model = get_entry(name).factory(**config_overrides)
    model.config.name = name if not model.config.name else model.config.name
    return model


def create_detector(name: str, source: str = "demo", **config_overrides: Any):
    """Build detector ``name`` and fill it from ``source``.

    ``source`` is ``"demo"`` (the checkpoint shipped in ``assets/``), ``"random"`` (no
    weights; for tests), a local folder, or a Hub repo as ``hf-hub:org/repo@revision`` (the
    ``hf-hub:`` prefix and ``@revision`` are optional).
    """
    from .hub import load_checkpoint

    entry = get_entry(name)
    if source == "random":
        model = build_detector(name, **config_overrides)
        model.source = "random"
        return model
    return load_checkpoint(source, expected_family=entry.family, demo_name=name, **config_overrides)
