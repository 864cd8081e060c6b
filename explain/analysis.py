"""The app's pipeline, free of UI types: decode, find faces, run every chosen detector, explain.

``app.py`` only converts Gradio values, calls these functions and formats their results.

- :func:`detector_slots` lists one slot per detector family (installed or not), so the app
  launches with whatever exists and says which are missing.
- :class:`ModelCache` loads each ``(detector, source)`` once. A source that fails (offline,
  missing repo, wrong detector type, corrupted file) falls back to the demo checkpoint with a
  message saying so; a family without a demo checkpoint yields a "missing" result, not an error.
- :func:`run_detector` crops the face by the detector's own policy and collects its
  explanations (``explain.pipeline.explain``) under a per-model lock (Grad-CAM hooks are not
  thread-safe).
- :func:`combine` gives the verdict across detectors and how far they agree;
  :func:`score_map` scores a map against a ground-truth mask for the forgery lab.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from detectors import CheckpointNotFound, Verdict, compute_thread, create_detector, get_entry, list_detectors
from detectors.faces import AlignedFace, Face, detect_faces, load_image
from detectors.faces.io import ImageSource
from detectors.hub import prefetch
from detectors.measured import Measured, measured_of
from detectors.source_policy import SourcePolicy, SourceRefused, neutral_reason, side_files_of

from .base import Explanation
from .pipeline import explain as explain_face
from .render import resize_map

log = logging.getLogger(__name__)

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


# ---- which detectors exist ------------------------------------------------------------------
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


# ---- loading, once per (name, source) ---------------------------------------------------------
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
            reason, exc_seen = _reason(exc), exc
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


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


# ---- one image, its faces --------------------------------------------------------------------
@dataclass
class PreparedImage:
    """A decoded upload and the faces found in it (largest first)."""

    rgb: np.ndarray
    faces: list[Face]
    key: str = ""  # what it was decoded from (upload path), to reuse it on a second click

    def face(self, index: int | None) -> tuple[int, Face]:
        i = min(max(int(index or 0), 0), len(self.faces) - 1)
        return i, self.faces[i]


def prepare(source: ImageSource, key: str = "") -> PreparedImage:
    """Decode any upload and find its faces; raises the face pipeline's typed errors."""
    rgb = load_image(source)
    return PreparedImage(rgb, detect_faces(rgb), key)


def faces_picture(prepared: PreparedImage, selected: int = 0) -> np.ndarray:
    """The photo with each face's landmarks and a numbered box; the selected face drawn boldly."""
    img = prepared.rgb.copy()
    h, w = img.shape[:2]
    unit = max(1, round(max(h, w) / 400))
    for i, face in enumerate(prepared.faces):
        x0, y0, x1, y1 = (int(round(v)) for v in face.bbox)
        chosen = i == selected
        colour = (253, 231, 37) if chosen else (72, 170, 222)  # viridis yellow / light blue
        for x, y in face.landmarks[::2]:
            cv2.circle(img, (int(x), int(y)), unit, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 3 * unit + 2, cv2.LINE_AA)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 3 * unit if chosen else unit + 1, cv2.LINE_AA)
        label = f"{i + 1}"
        scale = 0.6 * unit + 0.2
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 2 * unit)
        ty = max(th + 4, y0 - 4)
        cv2.rectangle(img, (x0, ty - th - 4), (x0 + tw + 6, ty + 4), colour, -1)
        cv2.putText(img, label, (x0 + 3, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2 * unit, cv2.LINE_AA)
    return img


# ---- one detector on one face ------------------------------------------------------------------
@dataclass
class DetectorResult:
    """What one card shows: status, verdict, evidence, where the weights came from."""

    family: str
    name: str
    title: str
    paper: str
    status: str  # "ok" | "missing" | "error" | "off"
    message: str = ""
    requested_source: str = ""
    source: str = ""
    verdict: Verdict | None = None
    explanations: list[Explanation] = field(default_factory=list)
    aligned: AlignedFace | None = None
    seconds: float = 0.0
    measured: Measured | None = None  # how well this checkpoint detects, by kind (recorded figures)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.verdict is not None

    def to_json(self, image_index: dict[int, int] | None = None) -> dict[str, Any]:
        """The API's view: numbers and text; ``image_index`` maps explanation -> gallery index."""
        v = self.verdict
        item: dict[str, Any] = {
            "name": self.name, "family": self.family, "title": self.title, "status": self.status,
            "prob_fake": round(v.prob_fake, 6) if v else None, "threshold": round(v.threshold, 6) if v else None,
            "label": v.label if v else None, "summary": v.summary() if v else None,
            "source": self.source or None, "requested_source": self.requested_source,
            "message": self.message, "seconds": round(self.seconds, 3),
        }
        item["explanations"] = [
            {"kind": e.kind, "title": e.title, "caption": e.caption, "data": jsonable(e.data),
             "image": (image_index or {}).get(i)}
            for i, e in enumerate(self.explanations)
        ]
        item["measured"] = measured_json(self.measured) if self.measured is not None else None
        return item


def measured_json(m: Measured) -> dict[str, Any]:
    """A checkpoint's recorded figures for the API and the cards (``skill`` is ``None`` when unmeasured)."""
    return {"skill": round(m.skill, 4) if m.kinds else None, "sentence": m.sentence(),
            "real_called_real": m.real_called_real,
            "kinds": [{"name": k.short, "kind": k.kind, "label": k.label, "auc": k.auc, "caught": k.caught,
                       "measured_on": k.measured_on} for k in m.kinds]}


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
            aligned, out, explanations = compute_thread.run(_decide, model, prepared.rgb, face, with_explanations)
        verdict = Verdict(model.config.name, float(out["prob_fake"][0]), float(model.config.threshold), model.source,
                          aligned.image, face_index=index, n_faces=len(prepared.faces))
    except Exception as exc:  # noqa: BLE001 - one broken detector must not take the page down
        log.exception("%s failed", slot.name)
        return DetectorResult(slot.family, model.config.name, loaded.title, loaded.paper, "error",
                              f"This detector failed on this face ({_reason(exc)}).", loaded.requested, model.source,
                              seconds=time.perf_counter() - started)
    return DetectorResult(slot.family, model.config.name, loaded.title, loaded.paper, "ok", loaded.message,
                          loaded.requested, model.source, verdict, list(explanations), aligned,
                          time.perf_counter() - started, measured_of(model.config))


def _decide(model, rgb: np.ndarray, face: Face, with_explanations: bool) -> tuple[AlignedFace, dict, list[Explanation]]:
    """Crop, verdict and (optionally) explanations: the part of a run that belongs on the compute thread."""
    aligned = model.crop(rgb, face)
    if with_explanations:
        out, explanations = explain_face(model, aligned)
        return aligned, out, explanations
    import torch

    with torch.no_grad():
        return aligned, model.eval()(model.preprocess(aligned)), []


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


# ---- across detectors --------------------------------------------------------------------------
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
    """The API's JSON and the gallery of explanation images it refers to by index."""
    gallery: list[tuple[np.ndarray, str]] = []
    items = []
    for r in results:
        index = {}
        for i, e in enumerate(r.explanations):
            index[i] = len(gallery)
            gallery.append((e.image, f"{r.title} · {e.title}"))
        items.append(r.to_json(index))
    face = None
    if prepared is not None:
        i, f = prepared.face(face_index)
        face = {"index": i, "n_faces": len(prepared.faces), "box": [round(v, 1) for v in f.bbox]}
    return {"face": face, "detectors": items, "combined": combine(results).to_json()}, gallery


# ---- interactive evidence ------------------------------------------------------------------------
@dataclass
class PatchProbe:
    """What a click on a crop-sized picture needs to redraw a patch-similarity grid (LAV).

    Built from an explanation whose ``data`` holds ``patch_embeddings`` (D, G, G); ``target``
    is the index of that explanation, ``clickable`` says which pictures are in crop pixels.
    """

    embeddings: np.ndarray
    target: int
    crop_size: tuple[int, int]
    clickable: list[bool]

    @property
    def grid(self) -> int:
        return int(self.embeddings.shape[-1])

    def patch_at(self, x: float, y: float) -> tuple[int, int]:
        h, w = self.crop_size
        g = self.grid
        return min(g - 1, max(0, int(y * g / h))), min(g - 1, max(0, int(x * g / w)))

    def similarity(self, patch: tuple[int, int]) -> np.ndarray:
        e = np.asarray(self.embeddings, np.float32).reshape(self.embeddings.shape[0], -1)
        e = e / (np.linalg.norm(e, axis=0, keepdims=True) + 1e-8)
        g = self.grid
        return (e[:, patch[0] * g + patch[1]] @ e).reshape(g, g)


def patch_probe(result: DetectorResult, limit: int | None = None) -> PatchProbe | None:
    """A :class:`PatchProbe` when one of the (first ``limit``) explanations carries patch embeddings."""
    if not result.ok or result.aligned is None:
        return None
    shown = result.explanations[:limit]
    crop = result.aligned.image.shape[:2]
    for i, e in enumerate(shown):
        emb = e.data.get("patch_embeddings")
        if emb is not None and np.ndim(emb) == 3:
            return PatchProbe(np.asarray(emb, np.float32), i, crop, [x.image.shape[:2] == crop for x in shown])
    return None


# ---- forgery lab: maps against ground truth ------------------------------------------------------
def mask_in_crop(mask: np.ndarray, aligned: AlignedFace) -> np.ndarray:
    """A full-image mask moved into a detector's crop with the crop's own matrix."""
    size = aligned.image.shape[1], aligned.image.shape[0]
    return cv2.warpAffine(np.asarray(mask, np.float32), aligned.matrix, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def score_map(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> dict[str, float | None]:
    """How well a map finds the forged pixels.

    ``pixel_auc``: the chance that a forged pixel scores higher than an untouched one (0.5 =
    no better than chance; ``None`` when the mask is empty or covers everything).
    ``iou``: overlap of the map's top region (map >= ``threshold`` after min-max scaling) with
    the mask (> 0.5).
    """
    heat = resize_map(heatmap, mask.shape[:2]) if heatmap.shape != mask.shape else np.asarray(heatmap, np.float32)
    truth = np.asarray(mask) > 0.5
    heat = np.nan_to_num(heat.astype(np.float64))
    lo, hi = heat.min(), heat.max()
    scaled = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    hit = scaled >= threshold if hi > lo else np.zeros_like(truth)
    union = np.logical_or(hit, truth).sum()
    iou = float(np.logical_and(hit, truth).sum() / union) if union else None
    return {"pixel_auc": _auc(heat.ravel(), truth.ravel()), "iou": iou, "forged_share": float(truth.mean())}


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Mann-Whitney AUC with ties counted half (no sklearn import on the request path)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass
class LabMap:
    detector: str
    title: str
    heatmap: np.ndarray
    scores: dict[str, float | None]
    kind: str = ""


def lab_maps(result: DetectorResult, mask_full: np.ndarray) -> tuple[np.ndarray | None, list[LabMap]]:
    """The ground truth in this detector's crop and a score for each of its maps."""
    if not result.ok or result.aligned is None:
        return None, []
    truth = mask_in_crop(mask_full, result.aligned)
    maps = [LabMap(result.title, e.title, resize_map(e.heatmap, truth.shape), score_map(e.heatmap, truth), e.kind)
            for e in result.explanations if e.heatmap is not None]
    return truth, maps


# ---- JSON --------------------------------------------------------------------------------------
#: Arrays up to this many elements go into the API as lists; larger ones as their shape.
MAX_JSON_ARRAY = 256


def jsonable(value: Any) -> Any:
    """Numbers, strings, short lists; numpy turned into Python; big arrays summarised."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size <= MAX_JSON_ARRAY:
            return jsonable(value.tolist())
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
