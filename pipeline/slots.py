"""Which detectors exist: one slot per family (installed or not), in the order the app shows them.

A family whose module is not part of this build still gets a slot, so the app launches with
whatever exists and says which are missing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from detectors import get_entry, list_detectors

#: The five papers' families, in the order the app shows them.
KNOWN_FAMILIES = ("lav", "rffr", "antifake_prompt", "prodet", "vlffd")
#: Card titles and papers for families whose module is not installed (the model's own
#: ``display_name`` / ``paper`` win once it loads).
FAMILY_INFO = {
    "lav": ("Locate-and-Verify (LAV)", "Shuai et al., ACM MM 2023"),
    "rffr": ("Real Face Foundation Representation (RFFR)", "Shi et al., Pattern Recognition 2024"),
    "antifake_prompt": ("AntifakePrompt", "Chang et al., 2023 (InstructBLIP + soft prompt)"),
    "prodet": ("ProDet (progressive detector)", "Cheng et al., NeurIPS 2024"),
    "vlffd": ("VLFFD (visual-linguistic)", "Sun et al., arXiv 2307.16545"),
    "tiny": ("Tiny test detector", "not a paper: a random-weight detector for tests"),
}
#: Families that must run one request at a time (the VLM); the others share the CNN group.
SERIAL_FAMILIES = frozenset({"antifake_prompt"})


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

    @property
    def concurrency_group(self) -> str:
        return "vlm" if self.family in SERIAL_FAMILIES else "cnn"


def _entry_for(family: str, names: list[str]) -> str | None:
    mine = [n for n in names if get_entry(n).family == family]
    for suffix in ("_demo", "_test"):
        for n in mine:
            if n.endswith(suffix):
                return n
    return mine[0] if mine else None


def detector_slots(include_test: bool = False, families: Iterable[str] | None = None) -> list[DetectorSlot]:
    """A slot per known family (installed or not), plus ``tiny`` when ``include_test``.

    ``families`` restricts and orders the slots (e.g. ``["tiny"]`` for fast tests).
    """
    names = list_detectors(include_hidden=include_test)
    installed = {get_entry(n).family for n in names}
    wanted = list(families) if families else list(KNOWN_FAMILIES) + sorted(installed - set(KNOWN_FAMILIES))
    slots = []
    for family in wanted:
        if family not in installed and family not in KNOWN_FAMILIES:
            continue
        title, paper = FAMILY_INFO.get(family, (family, ""))
        source = "random" if family == "tiny" else "demo"
        slots.append(DetectorSlot(family, _entry_for(family, names), source, title, paper))
    return slots
