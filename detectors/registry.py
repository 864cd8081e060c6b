"""A timm-style registry: each family's facts read from its detector class, and the named
factories (``@register_detector``) that build it.

A family registers when its :class:`~detectors.base.Detector` subclass is defined (the class
sets ``family``, ``display_name``, ``paper``, ``serial``); a factory registers under its function
name. Every family module registers one way, as timm's model files do: its one
``_create(variant, **model_args)`` builds a variant (filling the fields derived from its config), and
each ``@register_detector`` function is ``model_args = dict(...)`` then
``return _create("<its name>", **{**model_args, **overrides})``.

Nothing here builds or loads a model: that is :mod:`detectors.factory`, one layer up, so this
module imports no other layer (file format < hub I/O < registry < factory < base).
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .errors import UnknownDetector

#: The five papers' families, in the order the app shows them; each is the module ``detectors/<family>.py``.
BUILTIN_FAMILIES = ("lav", "rffr", "antifake_prompt", "prodet", "vlffd")
#: Test-only families (hidden from listings unless asked for).
TEST_FAMILIES = ("tiny",)
#: Modules that hold built-in detectors, imported on first use (not at package import).
BUILTIN_MODULES = BUILTIN_FAMILIES + TEST_FAMILIES
_REGISTRY: dict[str, DetectorEntry] = {}
_FAMILIES: dict[str, FamilyEntry] = {}
_builtins_loaded = False


@dataclass(frozen=True)
class DetectorEntry:
    name: str
    family: str
    factory: Callable[..., Any]
    hidden: bool = False


@dataclass(frozen=True)
class FamilyEntry:
    """One family's facts, as its detector class declares them."""

    name: str
    title: str
    paper: str
    serial: bool  # runs one request at a time (too large to share the CPU with the others)
    model_class: type
    config_class: type  # its config dataclass


class DeclaresFamily(Protocol):
    """The facts a detector class declares (:class:`detectors.base.Detector`'s class attributes)."""

    family: ClassVar[str]
    display_name: ClassVar[str]
    paper: ClassVar[str]
    serial: ClassVar[bool]
    config_class: ClassVar[type]


def register_family(cls: type[DeclaresFamily]) -> type[DeclaresFamily]:
    """Record the family a detector class declares (called by ``Detector.__init_subclass__``)."""
    _FAMILIES[cls.family] = FamilyEntry(cls.family, cls.display_name or cls.family, cls.paper, bool(cls.serial), cls, cls.config_class)
    return cls


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


def in_build(family: str) -> bool:
    """Whether a built-in family's module is part of this build (a Space may ship fewer)."""
    return importlib.util.find_spec(f"{__package__}.{family}") is not None


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    for module in BUILTIN_MODULES:
        if in_build(module):
            importlib.import_module(f"{__package__}.{module}")
    _builtins_loaded = True


def list_detectors(include_hidden: bool = False) -> list[str]:
    """Names of the registered detectors (``*_full`` and ``*_demo`` of each family)."""
    _load_builtins()
    return sorted(n for n, e in _REGISTRY.items() if include_hidden or not e.hidden)


def list_families(include_hidden: bool = False) -> list[str]:
    """Families with a registered detector, built-in ones first in :data:`BUILTIN_MODULES` order;
    a family whose detectors are all hidden only with ``include_hidden``."""
    shown = {_REGISTRY[n].family for n in list_detectors(include_hidden)}
    order = {f: i for i, f in enumerate(BUILTIN_MODULES)}
    return sorted(shown, key=lambda f: (order.get(f, len(order)), f))


def get_entry(name: str) -> DetectorEntry:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_detectors()) or "none"
        raise UnknownDetector(f"unknown detector {name!r}; known detectors: {known}") from None


def get_family(family: str) -> FamilyEntry:
    """A family's facts (title, paper, serial or not, its class)."""
    _load_builtins()
    try:
        return _FAMILIES[family]
    except KeyError:
        known = ", ".join(list_families(include_hidden=True)) or "none"
        raise UnknownDetector(f"unknown detector family {family!r}; known families: {known}") from None
