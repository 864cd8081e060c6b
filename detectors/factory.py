"""Build detectors: fresh from a registry entry, or filled from a checkpoint.

The top of the loading layers (file format < weight files < hub I/O < registry < factory): it joins the
registry's classes to the hub's files. ``Detector.from_pretrained`` calls into here.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .errors import CheckpointMismatch, CheckpointNotFound, UnsafeCheckpoint
from .file_format import CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from .hub import load_side_files, load_weights, read_config, resolve_source
from .registry import get_entry, get_family
from .weight_files import has_weights


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
    entry = get_entry(name)
    if source == "random":
        model = build_detector(name, **config_overrides)
        model.source = "random"
        return model
    return load_checkpoint(source, expected_family=entry.family, demo_name=name, **config_overrides)


def load_checkpoint(source: str, expected_family: str | None = None, demo_name: str | None = None, **overrides: Any):
    """Build the detector that ``source`` describes and load its weights (``strict=True``)."""
    family_hint = expected_family or (get_entry(demo_name).family if demo_name else None)
    folder, label = resolve_source(source, family_hint)
    if not has_weights(folder):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeCheckpoint(f"{folder}: only pickle weights ({', '.join(pickles)}); convert them to {WEIGHTS_FILE}")
        raise CheckpointNotFound(f"{folder}: no {WEIGHTS_FILE} (nor {WEIGHTS_INDEX_FILE} with shards)")
    data = read_config(folder)
    name = data.pop("name")
    data.pop("format_version", None)
    family = data.pop("detector_family", None) or name.rsplit("_", 1)[0]
    if expected_family and family != expected_family:
        raise CheckpointMismatch(f"{source}: holds a {family!r} detector ({name}), not {expected_family!r}")
    entry = get_entry(name)
    if family != entry.family:
        raise CheckpointMismatch(f"{folder / CONFIG_FILE}: name {name!r} does not match family {family!r}")
    try:
        model = entry.factory(**{**fields_it_predates(data, family), **data, **overrides})
    except (TypeError, ValueError) as exc:
        raise CheckpointMismatch(f"{folder / CONFIG_FILE}: {exc}") from None
    model.config.name = name
    load_weights(model, folder)
    load_side_files(model, folder, source)
    model.source = label
    model.eval()
    return model


def fields_it_predates(data: dict[str, Any], family: str) -> dict[str, Any]:
    """The config fields a checkpoint's ``config.json`` lacks, at their dataclass defaults.

    A field added after a checkpoint was written defaults to the network it was trained as (the
    rule for new fields); the registry entry's value, what ships now, would build another network.
    """
    defaults = dataclasses.asdict(get_family(family).config_class())
    return {k: v for k, v in defaults.items() if k not in data and k not in ("name", "extra")}
