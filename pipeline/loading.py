"""Models loaded once per ``(family, source)`` under the source policy, with a visible fallback.

A source that fails (offline, missing repo, wrong detector type, corrupted file) falls back to
the demo checkpoint with a message saying so; a family without a demo checkpoint yields a
model of ``None`` and the reason, never an error.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from detectors import CheckpointNotFound, compute_thread, create_detector
from detectors.hub import prefetch
from detectors.source_policy import SourcePolicy, SourceRefused, neutral_reason, side_files_of

from .slots import DetectorSlot

log = logging.getLogger(__name__)


@dataclass
class LoadedDetector:
    """A model ready to run (or ``None`` with the reason), and the lock that guards it."""

    slot: DetectorSlot
    requested: str
    model: Any | None
    message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def source(self) -> str:
        return getattr(self.model, "source", "") if self.model is not None else ""

    @property
    def title(self) -> str:
        return getattr(self.model, "display_name", "") or self.slot.title

    @property
    def paper(self) -> str:
        return (getattr(self.model, "paper", "") or self.slot.paper) if self.model is not None else self.slot.paper


def normalize_source(source: str | None, slot: DetectorSlot) -> str:
    text = (source or "").strip()
    return text or slot.default_source


class ModelCache:
    """Models loaded once and kept: default sources for good, user sources in a small LRU.

    A user-typed source that fails to load falls back to the slot's default source with a
    visible message; the failure is cached too, so a dead repo is not retried per request.
    """

    def __init__(self, max_custom: int = 3, policy: SourcePolicy | None = None) -> None:
        #: Which sources visitors may name (``detectors.source_policy``); default: local use.
        self.policy = policy or SourcePolicy.local_use()
        self._defaults: dict[tuple[str, str], LoadedDetector] = {}
        self._custom: OrderedDict[tuple[str, str], LoadedDetector] = OrderedDict()
        self._max_custom = max_custom
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def get(self, slot: DetectorSlot, source: str | None = None) -> LoadedDetector:
        source = normalize_source(source, slot)
        key = (slot.family, source)
        with self._lock:
            hit = self._lookup(key)
            if hit is not None:
                return hit
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per key; other keys (and cached models) are not held up
            with self._lock:
                hit = self._lookup(key)
            if hit is not None:
                return hit
            loaded = self._load(slot, source)
            with self._lock:
                if source == slot.default_source:
                    self._defaults[key] = loaded
                else:
                    self._custom[key] = loaded
                    while len(self._custom) > self._max_custom:
                        self._custom.popitem(last=False)
                self._loading.pop(key, None)
            return loaded

    def _lookup(self, key: tuple[str, str]) -> LoadedDetector | None:
        if key in self._defaults:
            return self._defaults[key]
        if key in self._custom:
            self._custom.move_to_end(key)
            return self._custom[key]
        return None

    def loaded(self) -> list[LoadedDetector]:
        with self._lock:
            return list(self._defaults.values()) + list(self._custom.values())

    def _load(self, slot: DetectorSlot, source: str) -> LoadedDetector:
        if slot.name is None:
            return LoadedDetector(slot, source, None,
                                  f"{slot.title} is not part of this build yet (no detectors/{slot.family}.py).")
        started = time.perf_counter()
        try:
            # the policy first: a refused source never reaches the file system or the Hub's downloads
            target = self.policy.check(source, side_files_of(slot.name))
            prefetch(target)  # a Hub download waits here, not on the compute thread
            model = compute_thread.run(create_detector, slot.name, target)
            model.eval()
            log.info("loaded %s from %s in %.1f s", slot.name, getattr(model, "source", source),
                     time.perf_counter() - started)
            return LoadedDetector(slot, source, model)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a visible message, never a crash
            reason, exc_seen = short_reason(exc), exc
            log.warning("could not load %s from %s: %s", slot.name, source, reason)
            if not self.policy.detailed_errors:  # visitors see a fixed sentence; the log keeps the reason
                reason = neutral_reason(exc)
        if source != slot.default_source and not self.policy.detailed_errors:
            fallback = self.get(slot, slot.default_source)
            # a refusal is its own sentence (never the source); other failures one fixed sentence per type
            refused = isinstance(exc_seen, SourceRefused)
            shown = reason if refused else f"That checkpoint could not be loaded ({reason})."
            if fallback.model is None:
                return LoadedDetector(slot, source, None, f"{shown} {fallback.message}")
            return LoadedDetector(slot, source, fallback.model,
                                  f"{shown} Showing the {fallback.source} checkpoint instead.", fallback.lock)
        if source == slot.default_source:
            if source == "demo" and isinstance(exc_seen, CheckpointNotFound):
                return LoadedDetector(slot, source, None, f"No demo checkpoint yet for {slot.title}.")
            if source == "demo":
                return LoadedDetector(slot, source, None,
                                      f"The demo checkpoint of {slot.title} could not be loaded ({reason}).")
            return LoadedDetector(slot, source, None, f"{slot.title} could not be loaded ({reason}).")
        fallback = self.get(slot, slot.default_source)
        if fallback.model is None:
            message = f"Could not load {source!r}: {reason}. {fallback.message}"
        else:
            message = f"Could not load {source!r}: {reason}. Showing the {fallback.source} checkpoint instead."
        return LoadedDetector(slot, source, fallback.model, message, fallback.lock)


def short_reason(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (at most 300 characters), for logs and cards."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
