"""Read a video upload into a few evenly spaced RGB frames, with typed, plain-spoken errors.

Decoding uses OpenCV's bundled FFmpeg (``cv2.CAP_FFMPEG``): one sequential pass that *grabs*
every frame (decodes it) but converts to RGB only the frames picked, which measured as fast as
PyAV on H.264, MPEG-4, VP8 and MJPEG (docs/video.md), so no second decoder is needed.

Frames are picked by **time**, not by index, so variable-frame-rate clips (phones, screen
recorders, browser webcam recordings) are sampled evenly too: the clip's first
``max_seconds`` are cut into ``n`` equal spans and the frame on screen at the middle of each
span is kept (each frame once). When the container does not say how long the clip is (a browser's WebM
recording) or says more than it holds (a truncated file), a first pass reads the frames'
timestamps and a second pass picks them.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import FaceError

#: Frames sampled by default, and the most a request may ask for.
DEFAULT_FRAMES = 16
MAX_FRAMES = 64
#: Only the first this many seconds of a clip are analysed.
MAX_SECONDS = 60.0
#: Frames whose longer side is above this are downscaled to it before face search.
VIDEO_WORKING_SIZE = 1280

VideoSource = str | Path
#: ``progress(fraction, words)``: how far decoding is, in [0, 1] (``gr.Progress`` fits).
Progress = Callable[[float, str], None]


# ---- errors -----------------------------------------------------------------------------------
class VideoError(FaceError):
    """Base of every error a video upload raises (a :class:`FaceError`, so pages show it the same way)."""


class VideoUnreadable(VideoError):
    def __init__(self, detail: str = "") -> None:
        msg = ("This video file could not be decoded: it looks damaged or cut short (an upload that stopped "
               "early, for example). Please export or upload it again.")
        super().__init__(f"{msg} ({detail})" if detail else msg)


class NotAVideo(VideoError):
    def __init__(self, detail: str = "") -> None:
        msg = "This file is not a video. Please upload an MP4, MOV, WebM, MKV or AVI clip."
        super().__init__(f"{msg} ({detail})" if detail else msg)


class AudioOnly(VideoError):
    def __init__(self) -> None:
        super().__init__("This file holds sound only, no pictures. Please upload a video with a face in it.")


class NoVideoFrames(VideoError):
    def __init__(self, detail: str = "") -> None:
        msg = "Not a single frame of this video could be decoded. Please export or upload it again."
        super().__init__(f"{msg} ({detail})" if detail else msg)


class NoFaceInVideo(VideoError):
    def __init__(self, n_frames: int) -> None:
        super().__init__(
            f"No face was found in any of the {n_frames} frames looked at. Try a clip where a face looks "
            "towards the camera, well lit and not too small.")
        self.n_frames = n_frames


# ---- what comes out ---------------------------------------------------------------------------
@dataclass
class VideoFrame:
    """One sampled frame: where it sits in the clip and its pixels (RGB, working size)."""

    number: int  # the frame's position in the decoded stream (0-based)
    time: float  # its timestamp in seconds
    rgb: np.ndarray


@dataclass
class VideoClip:
    """The sampled frames of a clip and what was learnt about the clip while reading it."""

    frames: list[VideoFrame]
    requested: int  # how many frames were asked for
    fps: float  # as the container states it (0 when it does not)
    width: int  # original size
    height: int
    seconds: float  # the span sampled: the first max_seconds, or less where the clip is shorter
    stated_seconds: float | None  # what the container says, when it says
    max_seconds: float
    clipped: bool  # the clip is longer than max_seconds: only its start was used
    truncated: bool  # the container promised more than could be decoded
    scale: float = 1.0  # working size / original size
    notes: list[str] = field(default_factory=list)

    @property
    def times(self) -> list[float]:
        return [f.time for f in self.frames]


# ---- reading ----------------------------------------------------------------------------------
def read_video(source: VideoSource, frames: int = DEFAULT_FRAMES, max_seconds: float = MAX_SECONDS,
               working_size: int = VIDEO_WORKING_SIZE, progress: Progress | None = None) -> VideoClip:
    """Decode ``source`` and return ``frames`` (1..64) evenly spaced frames of its first ``max_seconds``.

    Raises :class:`NotAVideo`, :class:`AudioOnly`, :class:`VideoUnreadable` or :class:`NoVideoFrames`.
    """
    n = max(1, min(MAX_FRAMES, int(frames)))
    path = Path(source)
    if not path.is_file():
        raise VideoUnreadable(f"no file at {path.name!r}")
    _refuse_photos(path)
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    fps = fps if math.isfinite(fps) and 0 < fps < 1000 else 0.0
    stated = count / fps if fps and math.isfinite(count) and count > 0 else None
    picked: list[VideoFrame] = []
    past_limit, unmet = False, n
    span = min(stated, max_seconds) if stated is not None else 0.0
    if stated is not None:
        picked, _, past_limit, unmet = _pass(path, _targets(span, n), fps, max_seconds, working_size, progress)
    truncated = False
    if unmet:
        # No stated length, or the stream ended before the length it stated: read the frames'
        # timestamps first, then pick by them.
        _, times, past_limit, _ = _pass(path, [], fps, max_seconds, working_size, progress, scan=True)
        if times:
            truncated = stated is not None and _span(times, fps) < span * 0.9
            span = min(_span(times, fps), max_seconds)
            picked, _, _, _ = _pass(path, _targets(span, n), fps, max_seconds, working_size, progress)
    if not picked:
        raise NoVideoFrames("the stream ended before its first picture")
    clipped = past_limit or (stated is not None and not truncated and stated > max_seconds + 1e-3)
    h0, w0 = height or picked[0].rgb.shape[0], width or picked[0].rgb.shape[1]
    clip = VideoClip(picked, n, fps, w0, h0, span, stated, max_seconds, clipped, truncated,
                     picked[0].rgb.shape[1] / max(1, w0))
    clip.notes = _notes(clip)
    return clip


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if cap.isOpened():
        return cap
    cap.release()
    raise _why_unopenable(path)


def _targets(span: float, n: int) -> list[float]:
    """The middle of each of ``n`` equal spans of ``[0, span)``."""
    return [(k + 0.5) * span / n for k in range(n)]


def _span(times: list[float], fps: float) -> float:
    """Seconds covered by frames stamped ``times``: the last stamp plus one frame's duration."""
    if not times:
        return 0.0
    step = 1.0 / fps if fps else (times[-1] - times[0]) / max(1, len(times) - 1)
    return times[-1] + step


def _pass(path: Path, targets: list[float], fps: float, max_seconds: float, working_size: int,
          progress: Progress | None, scan: bool = False) -> tuple[list[VideoFrame], list[float], bool, int]:
    """One sequential read: every frame is grabbed (decoded), only the frame on screen at each target
    time (its stamp plus one frame's duration, at the stated rate, passes the target) is converted to
    RGB; the read stops once every target is met. After a frame held longer than the stated rate
    (variable frame rate), the next frame stands for the targets the held one covered.

    Returns the frames kept, the timestamps of the frames read, whether a frame lies past
    ``max_seconds``, and how many targets the stream ended before reaching."""
    cap = _open(path)
    picked: list[VideoFrame] = []
    times: list[float] = []
    past_limit = False
    step = 1.0 / fps if fps else 1.0 / 30.0  # how long a frame stays on screen, as the container says
    k = 0
    try:
        while cap.grab():
            number = len(times)
            t = _timestamp(cap, number, fps, times[-1] if times else -1.0)
            if t >= max_seconds:
                past_limit = True
                break
            times.append(t)
            if scan:
                if progress is not None and number % 50 == 0:
                    progress(min(1.0, t / max_seconds), "Reading the clip's timestamps")
                continue
            if t + step > targets[k]:  # this frame is on screen at the target time
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    picked.append(VideoFrame(number, round(t, 4), _to_rgb(bgr, working_size)))
                while k < len(targets) and t + step > targets[k]:
                    k += 1  # a frame stands once for every target it covers
                if progress is not None:
                    progress(k / len(targets), "Decoding frames")
                if k == len(targets):
                    break
    finally:
        cap.release()
    return picked, times, past_limit, (len(targets) - k) if not scan else 0


def _timestamp(cap: cv2.VideoCapture, number: int, fps: float, last: float) -> float:
    """The grabbed frame's time in seconds; the frame number / fps where the container gives none."""
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    t = ms / 1000.0 if math.isfinite(ms) and ms >= 0 else -1.0
    if t < 0 or t < last:
        t = number / fps if fps else (last + 1.0 / 30.0 if last >= 0 else 0.0)
    if t <= last:
        t = last + 1e-3  # stamps must increase for the sampling by time to hold
    return t


def _to_rgb(bgr: np.ndarray, working_size: int) -> np.ndarray:
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    h, w = bgr.shape[:2]
    if max(h, w) > working_size:
        scale = working_size / max(h, w)
        bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _notes(clip: VideoClip) -> list[str]:
    """Sentences for the person who uploaded the clip: what was used of it and why."""
    notes = []
    if clip.clipped:
        notes.append(f"The clip is longer than {clip.max_seconds:g} s: only its first {clip.max_seconds:g} s "
                     "were analysed.")
    if clip.truncated:
        notes.append(f"The file seems cut short: it says {clip.stated_seconds:.1f} s but only "
                     f"{clip.seconds:.1f} s could be decoded; that part was analysed.")
    if len(clip.frames) < clip.requested:
        notes.append(f"Only {len(clip.frames)} distinct frames were found for the {clip.requested} asked for.")
    if clip.scale < 0.999:
        notes.append(f"Frames were downscaled from {clip.width}x{clip.height} to "
                     f"{clip.frames[0].rgb.shape[1]}x{clip.frames[0].rgb.shape[0]} before face search.")
    return notes


# ---- telling bad files apart ------------------------------------------------------------------
_VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3", b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")
_AUDIO_MAGIC = (b"ID3", b"fLaC", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xf1", b"\xff\xf9", b"#!AMR")
#: Bytes read to classify a file that FFmpeg could not open (an MP4's index may sit at its end).
_SNIFF_BYTES = 64 * 1024 * 1024


def _refuse_photos(path: Path) -> None:
    """FFmpeg opens a still image as a one-frame video; a photo belongs on the photo tab."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            kind = img.format or "image"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return
    raise NotAVideo(f"it is a {kind} picture; photos go on the Analyze tab")


def _mp4_has_samples(head: bytes) -> bool:
    """Whether any track's sample-size box (``stsz``) counts at least one sample."""
    at = head.find(b"stsz")
    while at >= 0:
        if int.from_bytes(head[at + 12:at + 16], "big") > 0:
            return True
        at = head.find(b"stsz", at + 4)
    return False


def _why_unopenable(path: Path) -> VideoError:
    """Classify a file FFmpeg would not open: audio only, a damaged video, or something else."""
    size = path.stat().st_size
    if size == 0:
        return NotAVideo("the file is empty")
    with open(path, "rb") as fh:
        head = fh.read(min(size, _SNIFF_BYTES))
    if head.startswith(_AUDIO_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
        return AudioOnly()
    if head[4:8] == b"ftyp":  # MP4 / MOV / M4A / 3GP: the handler atoms say which tracks there are
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ") or (b"soun" in head and b"vide" not in head and b"moov" in head):
            return AudioOnly()
        if b"moov" not in head:
            return VideoUnreadable("its index (the MP4 'moov' box) is missing")
        if b"trak" not in head or not _mp4_has_samples(head):
            return NoVideoFrames("the file holds no frames")
        return VideoUnreadable()
    if head.startswith(_VIDEO_MAGIC) or (head[:4] == b"RIFF" and head[8:11] == b"AVI") or head[:1] == b"\x47":
        return VideoUnreadable()
    return NotAVideo()
