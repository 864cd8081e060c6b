"""Across detectors: the combined verdict (a vote weighted by measured skill) and the API's report."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .images import PreparedImage
from .results import DetectorResult


@dataclass(frozen=True)
class Combined:
    """The verdict across detectors: the counts, and a vote weighted by each one's measured skill.

    ``lean`` is the weighted vote in [-1, 1] (+1 = every skilled detector says manipulated),
    each detector weighted by :attr:`detectors.measured.Measured.skill` (0 = guessing); votes of
    detectors without recorded figures weigh nothing. ``blind_spots`` names the measured kinds
    that no detector here separates well (best AUC below :data:`RELIABLE_AUC`).
    """

    n: int
    n_fake: int
    mean_prob: float | None
    lean: float | None = None
    blind_spots: tuple[tuple[str, float], ...] = ()
    skill: float | None = None  # the mean measured skill of the detectors that voted

    @property
    def n_real(self) -> int:
        return self.n - self.n_fake

    @property
    def label(self) -> str:
        """``fake`` / ``real`` when the weighted vote leans clearly, else ``inconclusive``."""
        if self.n == 0:
            return "none"
        if self.lean is None or abs(self.lean) < LEAN_MARGIN:
            return "inconclusive"
        return "fake" if self.lean > 0 else "real"

    def headline(self) -> str:
        words = {"none": "no verdict", "inconclusive": "inconclusive", "fake": "leans manipulated",
                 "real": "leans real"}[self.label]
        if self.label in ("fake", "real") and (self.skill or 0.0) < CONFIDENT_SKILL:
            words += ", with low confidence"
        return words

    def summary(self) -> str:
        if self.n == 0:
            return "No detector gave a verdict."
        counts = f"{self.n_fake} of {self.n} detectors say likely manipulated, {self.n_real} say likely real."
        if self.lean is None:
            weighed = "No measured accuracy is recorded for these checkpoints, so the votes cannot be weighed."
        elif self.label == "inconclusive":
            weighed = (f"Weighted by how well each one detects (measured), the votes do not lean clearly either way "
                       f"({self.lean:+.2f} on a scale from -1 = real to +1 = manipulated).")
        else:
            weighed = (f"Weighted by how well each one detects (measured), they lean "
                       f"{'manipulated' if self.label == 'fake' else 'real'} ({self.lean:+.2f} on a scale from "
                       f"-1 = real to +1 = manipulated): a hint, not proof.")
        blind = ""
        if self.blind_spots:
            blind = " None of them reliably detects " + ", ".join(
                f"{name} (best AUC {auc:.2f})" for name, auc in self.blind_spots) + "."
        return f"{counts} {weighed}{blind}"

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "n_fake": self.n_fake, "n_real": self.n_real, "label": self.label,
                "lean": None if self.lean is None else round(self.lean, 4),
                "mean_prob_fake": None if self.mean_prob is None else round(self.mean_prob, 6),
                "blind_spots": [{"kind": name, "best_auc": auc} for name, auc in self.blind_spots],
                "mean_skill": None if self.skill is None else round(self.skill, 4), "headline": self.headline(),
                "summary": self.summary()}


#: A weighted vote closer to 0 than this is called inconclusive.
LEAN_MARGIN = 0.34
#: Below this mean skill of the voters, a lean is said to carry low confidence.
CONFIDENT_SKILL = 0.6
#: A kind of fake whose best AUC among the detectors run is below this is a blind spot.
RELIABLE_AUC = 0.75


def combine(results: Iterable[DetectorResult | dict]) -> Combined:
    """The verdict across detectors, from results or their JSON (``DetectorResult.to_json``)."""
    items = [r.to_json() if isinstance(r, DetectorResult) else r for r in results]
    done = [r for r in items if r and r.get("status") == "ok" and r.get("prob_fake") is not None]
    probs = [float(r["prob_fake"]) for r in done]
    weights = [float((r.get("measured") or {}).get("skill") or 0.0) for r in done]
    votes = [1.0 if r["label"] == "fake" else -1.0 for r in done]
    lean = sum(w * v for w, v in zip(weights, votes)) / sum(weights) if sum(weights) > 0 else None
    best: dict[str, float] = {}
    for r in done:
        for k in (r.get("measured") or {}).get("kinds", []):
            best[k["name"]] = max(best.get(k["name"], 0.0), float(k["auc"]))
    blind = tuple(sorted(((name, auc) for name, auc in best.items() if auc < RELIABLE_AUC), key=lambda x: x[1]))
    measured = [w for w, r in zip(weights, done) if (r.get("measured") or {}).get("skill") is not None]
    return Combined(len(done), sum(r["label"] == "fake" for r in done), float(np.mean(probs)) if probs else None,
                    lean, blind, float(np.mean(measured)) if measured else None)


def report(results: list[DetectorResult], prepared: PreparedImage | None = None,
           face_index: int = 0) -> tuple[dict, list[tuple[np.ndarray, str]]]:
    """The API's JSON and the gallery of explanation images it refers to by index (a chart has
    no image: its numbers are in the JSON)."""
    gallery: list[tuple[np.ndarray, str]] = []
    items = []
    for r in results:
        index = {}
        for i, e in enumerate(r.explanations):
            if e.image is not None:
                index[i] = len(gallery)
                gallery.append((e.image, f"{r.title} · {e.title}"))
        items.append(r.to_json(index))
    face = None
    if prepared is not None:
        i, f = prepared.face(face_index)
        face = {"index": i, "n_faces": len(prepared.faces), "box": [round(v, 1) for v in f.bbox]}
    return {"face": face, "detectors": items, "combined": combine(results).to_json()}, gallery
