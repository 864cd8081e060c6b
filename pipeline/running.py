"""Run the chosen detectors on one face: crop by each detector's policy, decide, explain.

:func:`run_detector` collects a detector's explanations (``explain.evidence.explain``) under a
per-model lock (Grad-CAM hooks are not thread-safe), on the one compute thread
(``detectors/compute_thread.py``). :class:`Analyzer` is the engine the app, the Python API and
a command line share: one slot per family, the model cache, runs over the chosen detectors.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from detectors import Detector, compute_thread
from detectors.base import Decision
from detectors.faces import Face
from detectors.faces.io import ImageSource
from detectors.measured import measured_of
from detectors.source_policy import SourcePolicy
from explain.base import Explanation
from explain.evidence import explanations_for

from .images import PreparedImage, prepare
from .loading import LoadedDetector, ModelCache, short_reason
from .results import DetectorResult
from .slots import detector_slots

log = logging.getLogger(__name__)


def result_without_model(loaded: LoadedDetector, status: str = "missing") -> DetectorResult:
    slot = loaded.slot
    return DetectorResult(slot.family, slot.name or slot.family, loaded.title, loaded.paper, status,
                          loaded.message, loaded.requested)


def run_detector(loaded: LoadedDetector, prepared: PreparedImage, face_index: int = 0,
                 with_explanations: bool = True) -> DetectorResult:
    """Crop the chosen face by this detector's policy, decide, explain. Never raises for model
    failures: they come back as an ``error`` result so the other cards still show."""
    if loaded.model is None:
        return result_without_model(loaded)
    slot, model = loaded.slot, loaded.model
    index, face = prepared.face(face_index)
    started = time.perf_counter()
    try:
        with loaded.lock:
            decision, explanations = compute_thread.run(_decide, model, prepared.rgb, face, with_explanations, index,
                                                        len(prepared.faces))
    except Exception as exc:  # one broken detector must not take the page down
        log.exception("%s failed", slot.name)
        return DetectorResult(slot.family, model.config.name, loaded.title, loaded.paper, "error",
                              f"This detector failed on this face ({short_reason(exc)}).", loaded.requested,
                              model.source, seconds=time.perf_counter() - started)
    return DetectorResult(slot.family, model.config.name, loaded.title, loaded.paper, "ok", loaded.message,
                          loaded.requested, model.source, decision.verdict, list(explanations), decision.aligned,
                          time.perf_counter() - started, measured_of(model.config))


def _decide(model: Detector, rgb: np.ndarray, face: Face, with_explanations: bool, face_index: int = 0,
            n_faces: int = 1) -> tuple[Decision, list[Explanation]]:
    """Crop, verdict (``Detector.decide_face``, the path ``Detector.predict`` takes too) and, optionally,
    explanations of that same forward output: the part of a run that belongs on the compute thread."""
    model.eval()  # the explainers read the model as it decided
    decision = model.decide_face(rgb, face, face_index, n_faces)
    explanations = explanations_for(model, decision.aligned, decision.x, decision.out) if with_explanations else []
    return decision, explanations


@dataclass(frozen=True)
class Choice:
    """What the user asked of one card: run it or not, and from which checkpoint."""

    run: bool = True
    source: str = ""


class Analyzer:
    """The app's engine: one slot per family, the model cache, runs over the chosen detectors."""

    def __init__(self, include_test: bool = False, families: Iterable[str] | None = None, max_custom: int = 3,
                 policy: SourcePolicy | None = None) -> None:
        self.slots = detector_slots(include_test, families)
        self.by_family = {s.family: s for s in self.slots}
        self.cache = ModelCache(max_custom, policy)

    @property
    def policy(self) -> SourcePolicy:
        """Which checkpoint sources visitors may name (``detectors.source_policy``)."""
        return self.cache.policy

    def load_defaults(self) -> list[LoadedDetector]:
        """Load every family's default checkpoint now (at start), so requests never wait for it."""
        return [self.cache.get(slot) for slot in self.slots]

    def loaded(self, family: str, source: str | None = None) -> LoadedDetector:
        return self.cache.get(self.by_family[family], source)

    def run_one(self, family: str, prepared: PreparedImage, face_index: int = 0, choice: Choice = Choice(),
                with_explanations: bool = True) -> DetectorResult:
        loaded = self.loaded(family, choice.source)
        if loaded.model is None:
            return result_without_model(loaded)
        if not choice.run:
            return result_without_model(loaded, "off")
        return run_detector(loaded, prepared, face_index, with_explanations)

    def run(self, prepared: PreparedImage, face_index: int = 0, choices: dict[str, Choice] | None = None,
            with_explanations: bool = True) -> Iterator[DetectorResult]:
        """Each slot's result as soon as it is done (cards stream in)."""
        for slot in self.slots:
            yield self.run_one(slot.family, prepared, face_index, (choices or {}).get(slot.family, Choice()),
                               with_explanations)

    def warm_up(self, image: ImageSource) -> float:
        """One full pass (face mesh, every model, Grad-CAM) so the first visitor does not pay for it."""
        started = time.perf_counter()
        list(self.run(prepare(image)))
        return time.perf_counter() - started
