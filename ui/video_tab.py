"""The Video tab: a clip in (upload or webcam recording), its face followed, each detector's timeline.

Events: ``video_page`` (the button: decode, track, score, explain each key frame, with a progress
bar), ``video_frame`` (a click on the frame strip or a drag on a timeline: every detector's
evidence on that frame) and ``analyze_video`` (the one-call API: the JSON report). Each detector
runs as its card on the Analyze tab says (its *Run* box and *Checkpoint*).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

import pipeline
from detectors.faces import FaceError
from detectors.faces.video import DEFAULT_FRAMES, MAX_FRAMES, MAX_SECONDS
from explain.summary import escape
from pipeline.video import PreparedVideo, VideoDetectorResult, VideoReport, thumbnails, tracks_picture

from . import texts
from .cards import bar_plot, bar_plot_update
from .files import Pictures
from .values import MAX_FACES, error_markdown, face_index, read_choices, signature

log = logging.getLogger("forgery_lens.app")

#: Seconds a visitor's decoded clip and report are kept (frames are large: shorter than photos).
VIDEO_TTL = 600
WAITING = ("Upload a clip (MP4, MOV, WebM, MKV, AVI) or record one with the webcam, then press **Analyze video**. "
           f"The first {MAX_SECONDS:g} s are used.")


@dataclass
class VideoCard:
    """One detector's row: its verdict over the clip, its timeline, the evidence of the chosen frame."""

    family: str
    verdict: Any
    plot: Any
    evidence: Any
    chart: Any  # the chosen frame's bar chart, for a detector that draws one

    @property
    def evidence_outputs(self) -> list:
        return [self.evidence, self.chart]

    @property
    def outputs(self) -> list:
        return [self.verdict, self.plot, *self.evidence_outputs]


def video_path(payload: Any) -> str | None:
    """The file behind a raw ``gr.Video`` payload (``{"video": {"path": ...}}``) or a plain path."""
    if payload is None:
        return None
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        inner = payload.get("video", payload)
        return inner.get("path") if isinstance(inner, dict) else inner
    return getattr(payload, "path", None)


def build_video_tab(analyzer: pipeline.Analyzer, picture: Pictures, discard: Callable[[str | None], None],
                    cnn_concurrency: int, choice_inputs: list) -> None:
    """Lay out the tab inside the open ``gr.Tabs`` and wire its events. ``choice_inputs``: the Analyze
    tab's (run, source) boxes in slot order; ``discard`` hands an upload to the janitor."""
    slots = analyzer.slots
    cards: dict[str, VideoCard] = {}
    with gr.Tab("Video", id="video"):
        with gr.Row():
            with gr.Column(scale=1):
                clip = gr.Video(label="Video of a face", sources=["upload", "webcam"], include_audio=False,
                                height=320, elem_id="video")
                frames = gr.Slider(2, MAX_FRAMES, value=DEFAULT_FRAMES, step=1, label="Frames to sample",
                                   info="Evenly spaced in time; more frames take longer.", elem_id="video-frames")
                person = gr.Number(value=1, precision=0, minimum=1, maximum=MAX_FACES, label="Face to follow",
                                   info="The numbers drawn on the faces; 1 = the largest over the clip.",
                                   elem_id="video-person")
                button = gr.Button("Analyze video", variant="primary", elem_id="video-btn")
            with gr.Column(scale=1):
                tracks_img = gr.Image(label="Faces followed (numbers)", interactive=False, height=320,
                                      elem_id="video-tracks")
                status = gr.Markdown(WAITING, elem_id="video-status")
        combined = gr.Markdown(elem_id="video-combined")
        strip = gr.Gallery(label="Sampled frames: click one to see every detector's evidence there", columns=16,
                           rows=1, height=150, allow_preview=False, object_fit="contain", elem_id="video-strip")
        frame_md = gr.Markdown(elem_id="video-frame")
        for slot in slots:
            loaded = analyzer.loaded(slot.family)
            with gr.Row(elem_classes=["card"], elem_id=f"video-card-{slot.family}", equal_height=False):
                with gr.Column(scale=1, min_width=280):
                    verdict = gr.Markdown(f"### {loaded.title}\nWaiting for a clip.", elem_id=f"video-verdict-{slot.family}")
                with gr.Column(scale=2, min_width=320):
                    plot = gr.LinePlot(x="time (s)", y="P(fake)", color="line", y_lim=[0, 1], height=240,
                                       show_label=False, elem_id=f"video-plot-{slot.family}")
                with gr.Column(scale=2, min_width=320):
                    evidence = gr.Gallery(label="Evidence on the chosen frame", columns=3, height=240,
                                          object_fit="contain", elem_id=f"video-evidence-{slot.family}")
                    chart = bar_plot(f"video-chart-{slot.family}", height=200)
            cards[slot.family] = VideoCard(slot.family, verdict, plot, evidence, chart)
        with gr.Accordion("Result as JSON: the `analyze_video` API (one call, all detectors)", open=False):
            gr.Markdown("Scripts call `Client(url).predict(handle_file(path), 16, 1, "
                        "api_name='/analyze_video')` (gradio_client) and get this JSON.")
            json_btn = gr.Button("Run the analyze_video call on this clip", elem_id="video-json-btn")
            report_json = gr.JSON(label="analyze_video: JSON result", elem_id="video-json")
        state = gr.State(None, time_to_live=VIDEO_TTL)  # (PreparedVideo, VideoReport) of the visitor's clip

    card_outputs = [c for s in slots for c in cards[s.family].outputs]

    def decode(payload: Any, n_frames: Any, held: tuple | None, progress) -> PreparedVideo:
        """The visitor's clip decoded and tracked, reused when the same upload and frame count come again."""
        path = video_path(payload)
        n = _frames(n_frames)
        if held is not None and path is not None and held[0].key == f"{path}#{n}":
            return held[0]
        if path is None:
            raise FaceError("Please upload a clip first (or record one with the webcam).")
        try:
            return pipeline.prepare_video(_existing(path), n, key=f"{path}#{n}", progress=progress)
        finally:
            discard(path)

    def run_page(payload, n_frames, number, held, *choices, progress=gr.Progress()):
        started = time.perf_counter()
        try:
            video = decode(payload, n_frames, held, lambda f, w: progress(f, desc=w))
            report = pipeline.analyze_video(analyzer, video, track=face_index(number),
                                            choices=read_choices(slots, choices),
                                            progress=lambda f, w: progress(0.5 + 0.5 * f, desc=w))
        except FaceError as exc:
            return [None, error_markdown(exc), "", [], "", *_cleared(slots, cards), None]
        except Exception as exc:  # shown, logged, the app keeps serving
            log.exception("video analysis failed")
            return [None, error_markdown(exc), "", [], "", *_cleared(slots, cards), None]
        seconds = time.perf_counter() - started
        strip_items = [(picture(img), caption) for img, caption in thumbnails(report.video, report.track_index)]
        values = []
        for r in report.results:
            values += [_verdict_markdown(r, report), _timeline(r), *_evidence(r, r.key_frame, picture)]
        frame_note = ("Each detector's evidence is shown on its own most suspicious frame (highest P(fake)). "
                      "Click a frame above, or drag across a timeline, to see every detector on that frame.")
        status_md = " ".join(report.notes()) + f" Done in {seconds:.1f} s."
        return [picture(tracks_picture(report.video, report.track_index)), status_md,
                texts.combined_markdown([r.to_json() for r in report.results]), strip_items, frame_note,
                *values, (report.video, report)]

    def show_frame(held, evt: gr.SelectData):
        """Every detector's evidence on the frame clicked in the strip (or the time dragged on a timeline)."""
        if held is None:
            return ["Analyze a clip first.", *[gr.update()] * (2 * len(slots))]
        report: VideoReport = held[1]
        index = evt.index
        if isinstance(index, (list, tuple)):  # a drag across a timeline: its time range
            middle = (float(index[0]) + float(index[-1])) / 2
            index = min(range(len(report.times)), key=lambda i: abs(report.times[i] - middle))
        index = int(index)
        pipeline.frame_evidence(report, index)
        by_family = {r.family: r for r in report.results}
        evidence = [v for s in slots for v in (_evidence(by_family[s.family], index, picture)
                                               if s.family in by_family else [gr.update(), gr.update()])]
        missing = "" if index in report.track.faces else " The followed face was not found in this frame."
        return [f"Evidence on frame {index + 1} of {len(report.times)} ({report.times[index]:.2f} s).{missing}",
                *evidence]

    def analyze(video, n_frames, number, *choices):
        """One call, all chosen detectors: the JSON report of the clip."""
        path = video_path(video)
        try:
            report = pipeline.analyze_video(analyzer, _existing(path), frames=_frames(n_frames),
                                            track=face_index(number), choices=read_choices(slots, choices))
        except FaceError as exc:
            raise gr.Error(str(exc), title=type(exc).__name__) from None
        finally:
            discard(path)
        return report.to_json()

    inputs = [clip, frames, person, state, *choice_inputs]
    button.click(run_page, inputs, [tracks_img, status, combined, strip, frame_md, *card_outputs, state],
                 api_name="video_page", api_visibility="undocumented", preprocess=False, concurrency_id="cnn",
                 concurrency_limit=cnn_concurrency)
    frame_outputs = [frame_md, *[c for s in slots for c in cards[s.family].evidence_outputs]]
    strip.select(show_frame, [state], frame_outputs, api_name=False,
                 concurrency_id="cnn", concurrency_limit=cnn_concurrency)
    for slot in slots:
        cards[slot.family].plot.select(show_frame, [state], frame_outputs,
                                       api_name=False, concurrency_id="cnn", concurrency_limit=cnn_concurrency)
    names = ["video", "frames", "face"] + [f"{k}_{s.family}" for s in slots for k in ("run", "source")]
    analyze.__signature__ = signature(names)
    json_btn.click(analyze, [clip, frames, person, *choice_inputs], [report_json], api_name="analyze_video",
                   preprocess=False, concurrency_id="cnn", concurrency_limit=cnn_concurrency)


def _frames(value: Any) -> int:
    try:
        return max(1, min(MAX_FRAMES, int(value or DEFAULT_FRAMES)))
    except (TypeError, ValueError):
        return DEFAULT_FRAMES


def _existing(path: str | None) -> str:
    from pathlib import Path

    if path is None:
        raise FaceError("No video was sent.")
    if not Path(path).is_file():
        raise FaceError("This clip is no longer on the server: uploads are deleted shortly after they are "
                        "analysed. Please upload it again.")
    return path


def _cleared(slots, cards: dict[str, VideoCard]) -> list:
    return [v for s in slots for v in ("", None, [], bar_plot_update(None))]


def _timeline(r: VideoDetectorResult) -> pd.DataFrame | None:
    """P(fake) per scored frame and the threshold as a second line, for ``gr.LinePlot``."""
    if not r.ok:
        return None
    rows = [{"time (s)": r.times[i], "P(fake)": r.probs[i], "line": "P(fake) per frame"} for i in r.scored]
    ends = [r.times[0], r.times[-1]] if len(r.times) > 1 else [r.times[0], r.times[0] + 0.01]
    rows += [{"time (s)": t, "P(fake)": r.threshold, "line": f"threshold {r.threshold:.2f}"} for t in ends]
    return pd.DataFrame(rows)


def _evidence(r: VideoDetectorResult, frame: int | None, picture: Pictures) -> list:
    """[gallery, chart] of one detector on ``frame``: its pictures, and its bar chart if it draws one."""
    if frame is None or frame not in r.evidence:
        return [[], bar_plot_update(None)]
    when = r.times[frame]
    p = r.probs[frame]
    pictures = [(picture(e.image, min_side=256), f"{e.title} \u00b7 {when:.2f} s \u00b7 P(fake) {p:.2f}")
                for e in r.evidence[frame] if e.image is not None]
    chart = next((e.chart for e in r.evidence[frame] if e.chart is not None), None)
    return [pictures, bar_plot_update(chart)]


def _verdict_markdown(r: VideoDetectorResult, report: VideoReport) -> str:
    lines = [f"### {escape(r.title)}"]
    if r.ok:
        mark = "\u26a0\ufe0f" if r.label == "fake" else "\u2714\ufe0f"
        words = r.summary()
        lines.append(f"**{mark} {words[0].upper()}{words[1:]}.**")
        lines.append(f"Video score (mean P(fake) over frames) **{r.score:.3f}**, threshold **{r.threshold:.3f}**.")
        key = r.key_frame
        if key is not None:
            lines.append(f"Most suspicious frame: **{report.times[key]:.2f} s** (P(fake) {r.probs[key]:.3f}).")
        lines.append(f"Checkpoint: `{r.source}` \u00b7 {r.seconds:.2f} s")
    elif r.status == "off":
        lines.append("Not run: tick **Run** on its card in the Analyze tab to include it.")
    elif r.status == "error":
        lines.append("\u274c Failed on this clip.")
    else:
        lines.append("Not available.")
    if r.message:
        lines.append(f"> **Note:** {escape(r.message)}")
    return "\n\n".join(lines)
