"""Analyse a video: sample frames, follow the subject's face, score every frame, explain the key frame.

The stable Python API (the app's Video tab and the batch command line build on it)::

    from pipeline import Analyzer, analyze_video
    report = analyze_video(Analyzer(), "clip.mp4", frames=16)
    report.to_json()           # per detector: frame times, per-frame P(fake), video score, label, ...
    report.results[0].score    # the mean P(fake) over the frames where the face was found

:func:`analyze_video` ``(analyzer, source, frames=16, track=0, choices=None, evidence=True,
max_seconds=60, batch_size=16, progress=None) -> VideoReport``

- ``source``: a video file path, or a :class:`PreparedVideo` (decoded and tracked once, e.g. to
  re-run with another ``track`` or other ``choices`` without decoding again).
- ``frames``: how many evenly spaced frames (by timestamp) to sample, 1..64; the report says how
  many were actually used (a short or variable-frame-rate clip may hold fewer distinct ones).
- ``track``: which person to follow, 0 = the heaviest track (largest faces over most frames).
- ``choices``: ``{family: Choice(run, source)}`` as for photos; missing = run the default.
- ``evidence``: explain each detector's most suspicious frame (``False`` = scores only, faster).
- ``progress(fraction, words)``: called while decoding, finding faces and scoring.

Raises the typed errors of :mod:`detectors.faces.video` (all :class:`~detectors.faces.FaceError`):
``NotAVideo``, ``AudioOnly``, ``VideoUnreadable``, ``NoVideoFrames``, ``NoFaceInVideo``. A
detector that fails comes back as an ``error`` result; the others still score.

Scores: per frame, each detector crops the tracked face by its own policy and decides exactly as
for a photo (the same crop gives the same P(fake)); the video score is the mean P(fake) over the
frames where the face was found (DeepfakeBench's video-level score) and the label compares it
with the checkpoint's threshold. :func:`frame_evidence` explains another frame on request.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detectors import compute_thread
from detectors.faces import AlignedFace, Face
from detectors.faces.video import (
    DEFAULT_FRAMES,
    MAX_FRAMES,
    MAX_SECONDS,
    NoFaceInVideo,
    VideoClip,
    VideoSource,
    read_video,
)
from detectors.faces.video_tracks import Track, track_faces
from detectors.measured import Measured, measured_of
from explain.base import Explanation, explanation_json
from explain.evidence import explain as explain_face

from .loading import LoadedDetector, short_reason
from .results import measured_json
from .running import Choice
from .verdicts import Combined, combine

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
#: Frames scored per forward pass.
BATCH_SIZE = 16

__all__ = ["BATCH_SIZE", "DEFAULT_FRAMES", "MAX_FRAMES", "MAX_SECONDS", "PreparedVideo", "Progress",
           "VideoDetectorResult", "VideoReport", "analyze_video", "frame_evidence", "prepare_video"]


# ---- decoding and tracking --------------------------------------------------------------------
@dataclass
class PreparedVideo:
    """A clip's sampled frames and the faces followed through them (heaviest track first)."""

    clip: VideoClip
    tracks: list[Track]
    per_frame: list[list[Face]]
    key: str = ""  # what it was decoded from (upload path), to reuse it
    seconds: dict[str, float] = field(default_factory=dict)  # decode, tracking

    @property
    def n_frames(self) -> int:
        return len(self.clip.frames)

    def track(self, index: int | None) -> tuple[int, Track]:
        i = min(max(int(index or 0), 0), len(self.tracks) - 1)
        return i, self.tracks[i]


def prepare_video(source: VideoSource, frames: int = DEFAULT_FRAMES, max_seconds: float = MAX_SECONDS,
                  key: str = "", progress: Progress | None = None) -> PreparedVideo:
    """Decode and sample the clip, find and track its faces; raises :class:`NoFaceInVideo` when none."""
    started = time.perf_counter()
    clip = read_video(source, frames, max_seconds, progress=_part(progress, 0.0, 0.2))
    decoded = time.perf_counter()
    tracks, per_frame = track_faces([f.rgb for f in clip.frames], progress=_part(progress, 0.2, 0.5))
    if not tracks:
        raise NoFaceInVideo(len(clip.frames))
    return PreparedVideo(clip, tracks, per_frame, key or str(source),
                         {"decode": decoded - started, "tracking": time.perf_counter() - decoded})


def _part(progress: Progress | None, start: float, end: float) -> Progress | None:
    """A stage's own 0..1 progress mapped onto [start, end] of the whole run."""
    if progress is None:
        return None
    return lambda fraction, words: progress(start + (end - start) * min(max(fraction, 0.0), 1.0), words)


# ---- one detector over the frames -------------------------------------------------------------
@dataclass
class VideoDetectorResult:
    """One detector over the tracked face: P(fake) per sampled frame, the video score, evidence."""

    family: str
    name: str
    title: str
    paper: str
    status: str  # "ok" | "missing" | "error" | "off"
    times: list[float]
    probs: list[float | None] = field(default_factory=list)  # per sampled frame; None = no face there
    threshold: float | None = None
    message: str = ""
    requested_source: str = ""
    source: str = ""
    key_frame: int | None = None  # the most suspicious frame (highest P(fake))
    evidence: dict[int, list[Explanation]] = field(default_factory=dict)  # frame -> explanations
    crops: dict[int, AlignedFace] = field(default_factory=dict, repr=False)  # kept to explain on request
    seconds: float = 0.0  # scoring and evidence together
    measured: Measured | None = None
    loaded: LoadedDetector | None = field(default=None, repr=False)
    scoring_seconds: float = 0.0  # cropping and deciding every frame
    evidence_seconds: float = 0.0  # explaining the frames explained so far

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.score is not None

    @property
    def scored(self) -> list[int]:
        return [i for i, p in enumerate(self.probs) if p is not None]

    @property
    def score(self) -> float | None:
        """The video score: the mean P(fake) over the frames where the face was found."""
        values = [p for p in self.probs if p is not None]
        return float(np.mean(values)) if values else None

    @property
    def label(self) -> str | None:
        if self.score is None or self.threshold is None:
            return None
        return "fake" if self.score >= self.threshold else "real"

    def summary(self) -> str | None:
        """One sentence, e.g. ``likely manipulated: mean P(fake) 0.82 >= 0.64 over 16 frames``."""
        if self.score is None or self.threshold is None:
            return None
        n = len(self.scored)
        over = f"over {n} frame{'s' if n != 1 else ''}"
        if self.label == "fake":
            return f"likely manipulated: mean P(fake) {self.score:.2f} \u2265 {self.threshold:.2f} {over}"
        return f"likely real: mean P(fake) {self.score:.2f} < {self.threshold:.2f} {over}"

    def to_json(self, image_index: dict[tuple[int, int], int] | None = None) -> dict[str, Any]:
        """The API's view; ``image_index`` maps (frame, explanation) -> gallery index."""
        score = self.score
        key = self.key_frame
        explanations = [
            {"frame": f, "time": self.times[f], **explanation_json(e, (image_index or {}).get((f, i)))}
            for f in sorted(self.evidence) for i, e in enumerate(self.evidence[f])]
        return {
            "name": self.name, "family": self.family, "title": self.title, "status": self.status,
            "message": self.message, "source": self.source or None, "requested_source": self.requested_source,
            "threshold": None if self.threshold is None else round(self.threshold, 6),
            "frame_times": [round(t, 4) for t in self.times],
            "frame_probs": [None if p is None else round(p, 6) for p in self.probs],
            "video_score": None if score is None else round(score, 6),
            "prob_fake": None if score is None else round(score, 6),  # the video score, as photos name it
            "label": self.label, "summary": self.summary(), "frames_scored": len(self.scored),
            "key_frame": key, "key_frame_time": None if key is None else self.times[key],
            "explanations": explanations,
            "measured": measured_json(self.measured) if self.measured is not None else None,
            "seconds": round(self.seconds, 3), "seconds_scoring": round(self.scoring_seconds, 3),
            "seconds_evidence": round(self.evidence_seconds, 3),
        }


def _crop_and_score(model, items: list[tuple[np.ndarray, Face]]) -> tuple[list[AlignedFace], list[float]]:
    """One batch: crop each face by the detector's policy and decide (on the compute thread)."""
    import torch

    crops = [model.crop(rgb, face) for rgb, face in items]
    x = torch.cat([model.preprocess(a) for a in crops])
    model.eval()
    with torch.no_grad():
        prob_fake = model.fake_probability(x)
    return crops, [float(p) for p in prob_fake.float().cpu()]


def _without_model(loaded: LoadedDetector, times: list[float], status: str) -> VideoDetectorResult:
    slot = loaded.slot
    return VideoDetectorResult(slot.family, slot.name or slot.family, loaded.title, loaded.paper, status, times,
                               [None] * len(times), message=loaded.message, requested_source=loaded.requested)


def score_track(loaded: LoadedDetector, video: PreparedVideo, track: Track, batch_size: int = BATCH_SIZE,
                progress: Progress | None = None) -> VideoDetectorResult:
    """Every frame of ``track`` through one detector, in batches, under its lock. Never raises for
    model failures: they come back as an ``error`` result so the other detectors still show."""
    times = video.clip.times
    if loaded.model is None:
        return _without_model(loaded, times, "missing")
    model, slot = loaded.model, loaded.slot
    frames = track.frames
    probs: list[float | None] = [None] * len(times)
    crops: dict[int, AlignedFace] = {}
    started = time.perf_counter()
    try:
        for b in range(0, len(frames), max(1, batch_size)):
            chunk = frames[b:b + batch_size]
            items = [(video.clip.frames[i].rgb, track.faces[i]) for i in chunk]
            with loaded.lock:
                aligned, values = compute_thread.run(_crop_and_score, model, items)
            for i, a, p in zip(chunk, aligned, values):
                crops[i], probs[i] = a, p
            if progress is not None:
                progress(min(1.0, (b + len(chunk)) / len(frames)), f"Scoring frames: {loaded.title}")
    except Exception as exc:  # one broken detector must not take the page down
        log.exception("%s failed on a video", slot.name)
        return VideoDetectorResult(slot.family, model.config.name, loaded.title, loaded.paper, "error", times,
                                   [None] * len(times), float(model.config.threshold),
                                   f"This detector failed on this video ({short_reason(exc)}).", loaded.requested,
                                   model.source, seconds=time.perf_counter() - started)
    scored = [i for i in frames if probs[i] is not None]
    key = max(scored, key=lambda i: probs[i]) if scored else None  # type: ignore[arg-type, return-value]
    return VideoDetectorResult(slot.family, model.config.name, loaded.title, loaded.paper, "ok", times, probs,
                               float(model.config.threshold), loaded.message, loaded.requested, model.source, key,
                               {}, crops, time.perf_counter() - started, measured_of(model.config), loaded)


def explain_frame(result: VideoDetectorResult, frame: int) -> list[Explanation]:
    """The detector's evidence on one scored frame (computed once, then kept)."""
    if frame in result.evidence:
        return result.evidence[frame]
    if result.loaded is None or result.loaded.model is None or frame not in result.crops:
        return []
    try:
        with result.loaded.lock:
            _, explanations = compute_thread.run(explain_face, result.loaded.model, result.crops[frame])
    except Exception:  # the scores stand without the pictures
        log.exception("%s could not explain frame %d", result.name, frame)
        return []
    result.evidence[frame] = list(explanations)
    return result.evidence[frame]


# ---- the whole report -------------------------------------------------------------------------
@dataclass
class VideoReport:
    """Every detector over the tracked face, the combined verdict, and what was used of the clip."""

    video: PreparedVideo
    track_index: int
    results: list[VideoDetectorResult]
    seconds: dict[str, float] = field(default_factory=dict)  # decode, tracking, scoring, evidence, total

    @property
    def track(self) -> Track:
        return self.video.tracks[self.track_index]

    @property
    def times(self) -> list[float]:
        return self.video.clip.times

    @property
    def missing(self) -> list[int]:
        """Sampled frames where the followed face was not found (not scored)."""
        present = set(self.track.frames)
        return [i for i in range(self.video.n_frames) if i not in present]

    @property
    def combined(self) -> Combined:
        return combine([r.to_json() for r in self.results])

    def notes(self) -> list[str]:
        """Sentences for the person who uploaded the clip: what was used of it."""
        clip = self.video.clip
        notes = list(clip.notes)
        n = self.video.n_frames
        notes.insert(0, f"{n} frame{'s' if n != 1 else ''} sampled evenly from the first {clip.seconds:.1f} s.")
        if len(self.video.tracks) > 1:
            notes.append(f"{len(self.video.tracks)} faces were followed through the clip; this is face "
                         f"{self.track_index + 1} (1 = the largest over the clip).")
        if self.missing:
            at = ", ".join(f"{self.times[i]:.1f} s" for i in self.missing)
            notes.append(f"The face was not found in {len(self.missing)} of {n} frames (at {at}); the scores use "
                         f"the other {n - len(self.missing)}.")
        return notes

    def gallery(self) -> tuple[list[tuple[np.ndarray, str]], dict[str, dict[tuple[int, int], int]]]:
        """The evidence pictures, and per family an index (frame, explanation) -> gallery position."""
        items: list[tuple[np.ndarray, str]] = []
        index: dict[str, dict[tuple[int, int], int]] = {}
        for r in self.results:
            index[r.family] = {}
            for f in sorted(r.evidence):
                for i, e in enumerate(r.evidence[f]):
                    if e.image is None:
                        continue  # a chart: its numbers are in the JSON
                    index[r.family][(f, i)] = len(items)
                    items.append((e.image, f"{r.title} \u00b7 {self.times[f]:.2f} s \u00b7 {e.title}"))
        return items, index

    def to_json(self, image_index: dict[str, dict[tuple[int, int], int]] | None = None) -> dict[str, Any]:
        clip, track = self.video.clip, self.track
        first = clip.frames[0].rgb
        return {
            "video": {"frames_requested": clip.requested, "frames_sampled": len(clip.frames), "fps": round(clip.fps, 4),
                      "width": clip.width, "height": clip.height, "analysed_size": [first.shape[1], first.shape[0]],
                      "seconds_analysed": round(clip.seconds, 4),
                      "seconds_stated": None if clip.stated_seconds is None else round(clip.stated_seconds, 4),
                      "max_seconds": clip.max_seconds, "clipped": clip.clipped, "truncated": clip.truncated},
            "frames": [{"index": i, "number": f.number, "time": f.time, "faces": len(self.video.per_frame[i]),
                        "face_found": i in track.faces} for i, f in enumerate(clip.frames)],
            "tracks": [{"index": j, "frames": t.frames, "box": [round(v, 1) for v in t.box()]}
                       for j, t in enumerate(self.video.tracks)],
            "track": {"index": self.track_index, "n_tracks": len(self.video.tracks), "frames": track.frames,
                      "missing_frames": self.missing, "missing_times": [self.times[i] for i in self.missing]},
            "detectors": [r.to_json((image_index or {}).get(r.family)) for r in self.results],
            "combined": self.combined.to_json(),
            "notes": self.notes(),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def analyze_video(analyzer, source: VideoSource | PreparedVideo, frames: int = DEFAULT_FRAMES, track: int = 0,
                  choices: dict[str, Choice] | None = None, evidence: bool = True,
                  max_seconds: float = MAX_SECONDS, batch_size: int = BATCH_SIZE,
                  progress: Progress | None = None) -> VideoReport:
    """Decode, track, score every chosen detector, explain each one's key frame (see the module doc)."""
    started = time.perf_counter()
    video = source if isinstance(source, PreparedVideo) else prepare_video(
        Path(source), frames, max_seconds, progress=progress)
    index, followed = video.track(track)
    slots = analyzer.slots
    results: list[VideoDetectorResult] = []
    scoring = explaining = 0.0
    for k, slot in enumerate(slots):
        choice = (choices or {}).get(slot.family, Choice())
        loaded = analyzer.loaded(slot.family, choice.source)
        t0 = time.perf_counter()
        if loaded.model is None:
            result = _without_model(loaded, video.clip.times, "missing")
        elif not choice.run:
            result = _without_model(loaded, video.clip.times, "off")
        else:
            result = score_track(loaded, video, followed, batch_size,
                                 _part(progress, 0.5 + 0.5 * k / len(slots), 0.5 + 0.5 * (k + 0.8) / len(slots)))
        t1 = time.perf_counter()
        if evidence and result.key_frame is not None:
            if progress is not None:
                progress(0.5 + 0.5 * (k + 0.8) / len(slots), f"Explaining the key frame: {result.title}")
            explain_frame(result, result.key_frame)
        t2 = time.perf_counter()
        scoring, explaining = scoring + (t1 - t0), explaining + (t2 - t1)
        result.seconds, result.scoring_seconds, result.evidence_seconds = t2 - t0, t1 - t0, t2 - t1
        results.append(result)
    if progress is not None:
        progress(1.0, "Done")
    seconds = {**video.seconds, "scoring": scoring, "evidence": explaining}
    if isinstance(source, PreparedVideo):
        seconds = {"scoring": scoring, "evidence": explaining}
    seconds["total"] = time.perf_counter() - started
    return VideoReport(video, index, results, seconds)


def frame_evidence(report: VideoReport, frame: int, families: list[str] | None = None) -> dict[str, list[Explanation]]:
    """Each detector's evidence on sampled frame ``frame`` (explained now if not yet, then kept)."""
    return {r.family: explain_frame(r, frame) for r in report.results
            if (families is None or r.family in families) and r.ok}


# ---- pictures ---------------------------------------------------------------------------------
def tracks_picture(video: PreparedVideo, selected: int = 0, frame: int | None = None) -> np.ndarray:
    """A frame with each followed face boxed and numbered (1 = the heaviest track); the selected one bold.

    By default the frame where the most tracks appear."""
    if frame is None:
        frame = max(range(video.n_frames), key=lambda i: (sum(i in t.faces for t in video.tracks), -i))
    img = video.clip.frames[frame].rgb.copy()
    unit = max(1, round(max(img.shape[:2]) / 400))
    for j, t in enumerate(video.tracks):
        if frame not in t.faces:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in t.faces[frame].bbox)
        chosen = j == selected
        colour = (253, 231, 37) if chosen else (72, 170, 222)  # viridis yellow / light blue, as for photos
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 3 * unit + 2, cv2.LINE_AA)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, 3 * unit if chosen else unit + 1, cv2.LINE_AA)
        label, scale = f"{j + 1}", 0.6 * unit + 0.2
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 2 * unit)
        ty = max(th + 4, y0 - 4)
        cv2.rectangle(img, (x0, ty - th - 4), (x0 + tw + 6, ty + 4), colour, -1)
        cv2.putText(img, label, (x0 + 3, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2 * unit, cv2.LINE_AA)
    return img


def thumbnails(video: PreparedVideo, track: int = 0, size: int = 96) -> list[tuple[np.ndarray, str]]:
    """One small picture per sampled frame: the followed face, or the whole frame greyed where it is missing."""
    _, followed = video.track(track)
    out = []
    for i, frame in enumerate(video.clip.frames):
        rgb = frame.rgb
        if i in followed.faces:
            x0, y0, x1, y1 = followed.faces[i].bbox
            side = 1.3 * max(x1 - x0, y1 - y0)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            h, w = rgb.shape[:2]
            left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
            right, bottom = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
            pic = cv2.resize(rgb[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)
            caption = f"{frame.time:.2f} s"
        else:
            h, w = rgb.shape[:2]
            pic = cv2.resize(rgb, (size, max(1, round(size * h / w))), interpolation=cv2.INTER_AREA)
            pic = (pic.astype(np.float32) * 0.4 + 153).astype(np.uint8)
            caption = f"{frame.time:.2f} s \u00b7 no face"
        out.append((pic, caption))
    return out
