"""Which detectors exist: one slot per family (installed or not), in the order the app shows them.

Every fact about a family (title, paper, serial or not) comes from the registry, which reads it
from the family's detector class. A built-in family whose module is not part of this build
still gets a slot (titled by its name), so the app launches with whatever exists and says
which are missing.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from detectors import get_entry, get_family, list_detectors, list_families
from detectors.registry import BUILTIN_FAMILIES, TEST_FAMILIES, in_build


@dataclass(frozen=True)
class DetectorSlot:
    """One card of the app: a family, the registry entry that loads it, its default source.

    ``name`` is ``None`` when the family's module is not part of this build.
    """

    family: str
    name: str | None
    default_source: str = "demo"
    title: str = ""
    paper: str = ""
    serial: bool = False

    @property
    def concurrency_group(self) -> str:
        return "vlm" if self.serial else "cnn"


def _entry_for(family: str, names: list[str]) -> str | None:
    mine = [n for n in names if get_entry(n).family == family]
    for suffix in ("_demo", "_test"):
        for n in mine:
            if n.endswith(suffix):
                return n
    return mine[0] if mine else None


def detector_slots(include_test: bool = False, families: Iterable[str] | None = None) -> list[DetectorSlot]:
    """A slot per built-in family (installed or not) and per other registered family, plus the
    test families when ``include_test``; in the registry's order.

    ``families`` restricts and orders the slots (e.g. ``["tiny"]`` for fast tests).
    """
    names = list_detectors(include_hidden=include_test)
    installed = list_families(include_hidden=include_test)
    absent = [f for f in BUILTIN_FAMILIES if not in_build(f)]
    known = [f for f in BUILTIN_FAMILIES if f in installed or f in absent]
    known += [f for f in installed if f not in known]
    slots = []
    for family in (list(families) if families else known):
        if family not in known:
            continue
        if family in absent:
            slots.append(DetectorSlot(family, None, "demo", family))
            continue
        info = get_family(family)
        source = "random" if family in TEST_FAMILIES else "demo"
        slots.append(DetectorSlot(family, _entry_for(family, names), source, info.title, info.paper, info.serial))
    return slots
