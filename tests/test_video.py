"""Video: decoding and sampling, face tracking, per-frame scores, the video score, bad input, the JSON API.

Clips are made here with ``cv2.VideoWriter`` from the public-domain astronaut portrait sliding
across the frame; some frames carry a forgery from the project's engine (an autoencoder face
blended back into the portrait). The hidden ``tiny_test`` detector keeps most tests fast; one
test uses LAV's demo checkpoint to see the forged frames rise on the timeline.
"""
from __future__ import annotations

import itertools
import json
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

import pipeline
from detectors.faces import CropPolicy, Face, align_face, detect_faces
from detectors.faces import video as vid
from detectors.faces.video import AudioOnly, NoFaceInVideo, NotAVideo, NoVideoFrames, VideoUnreadable, read_video
from detectors.faces.video_tracks import iou, link_tracks
from pipeline import Analyzer, Choice, PreparedImage, analyze_video, frame_evidence, prepare_video
from pipeline.running import run_detector

CANVAS = (480, 360)  # width, height
SIDE = 280  # the portrait's side in the frame
FPS = 6
N = 12  # frames written: 2 s
FORGED = {4, 5, 6, 7}  # frames showing the forged portrait


# ---- clips made here ----------------------------------------------------------------------------
def _forged_portrait(portrait: np.ndarray) -> np.ndarray:
    """The portrait with its face re-synthesised by the project's autoencoder forgery, pasted back."""
    from training.data.forgery import make_forgery

    face = detect_faces(portrait)[0]
    aligned = align_face(portrait, face, CropPolicy(size=256))
    forgery = make_forgery("ae", aligned.image, aligned.landmarks, np.random.default_rng(0))
    back = cv2.invertAffineTransform(aligned.matrix)
    h, w = portrait.shape[:2]
    pasted = cv2.warpAffine(forgery.image, back, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
    weight = cv2.warpAffine(forgery.weight.astype(np.float32), back, (w, h))[..., None]
    return (portrait * (1 - weight) + pasted * weight + 0.5).astype(np.uint8)


def _frame(portrait: np.ndarray, x: int, canvas: tuple[int, int] = CANVAS, side: int = SIDE) -> np.ndarray:
    frame = np.full((canvas[1], canvas[0], 3), 70, np.uint8)
    frame[:side, x:x + side] = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA)
    return frame


def write_clip(path: Path, frames: list[np.ndarray], fps: float = FPS, fourcc: str = "mp4v") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cv2 cannot write {fourcc}"
    for rgb in frames:
        writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
    writer.release()
    return path


def _x(i: int) -> int:
    return 10 + i * (CANVAS[0] - SIDE - 20) // (N - 1)  # left to right across the clip


@pytest.fixture(scope="module")
def portraits(astronaut) -> tuple[np.ndarray, np.ndarray]:
    return astronaut, _forged_portrait(astronaut)


@pytest.fixture(scope="module")
def frames_written(portraits) -> list[np.ndarray]:
    real, forged = portraits
    return [_frame(forged if i in FORGED else real, _x(i)) for i in range(N)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, frames_written) -> Path:
    return write_clip(tmp_path_factory.mktemp("video") / "moving.mp4", frames_written)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(include_test=True, families=["tiny"])


@pytest.fixture(scope="module")
def prepared(clip) -> pipeline.PreparedVideo:
    return prepare_video(clip, frames=N)


@pytest.fixture(scope="module")
def report(analyzer, prepared) -> pipeline.VideoReport:
    return analyze_video(analyzer, prepared)


# ---- decoding and sampling ----------------------------------------------------------------------
def test_frames_are_sampled_evenly_by_time(clip, frames_written):
    got = read_video(clip, frames=4)
    assert len(got.frames) == 4 and got.requested == 4
    span = N / FPS
    assert got.seconds == pytest.approx(span)
    for k, frame in enumerate(got.frames):
        middle = (k + 0.5) * span / 4
        assert frame.time <= middle < frame.time + 1 / FPS  # the frame on screen at each span's middle
        assert frame.number == round(frame.time * FPS)
        # the frame decoded is the frame written there (mp4v is lossy: compare loosely)
        written = frames_written[frame.number]
        assert np.abs(frame.rgb.astype(int) - written.astype(int)).mean() < 6
    assert not got.clipped and not got.truncated and got.notes == []


def test_mjpeg_avi_decodes_too(tmp_path, frames_written):
    path = write_clip(tmp_path / "clip.avi", frames_written[:6], fourcc="MJPG")
    got = read_video(path, frames=3)
    assert [f.number for f in got.frames] == [1, 3, 5]


def test_a_short_clip_gives_the_frames_it_has_and_says_so(clip):
    got = read_video(clip, frames=200)  # above the cap of 64, and more than the clip holds
    assert got.requested == vid.MAX_FRAMES
    assert [f.number for f in got.frames] == list(range(N))
    assert any(f"Only {N} distinct frames" in n for n in got.notes)


def test_a_long_clip_is_cut_to_its_first_seconds_and_says_so(clip):
    got = read_video(clip, frames=4, max_seconds=1.0)
    assert got.clipped and got.seconds == pytest.approx(1.0)
    assert all(f.time < 1.0 for f in got.frames)
    assert any("only its first 1 s" in n for n in got.notes)


def test_large_frames_are_downscaled_first(clip):
    got = read_video(clip, frames=2, working_size=240)
    assert got.frames[0].rgb.shape == (180, 240, 3) and (got.width, got.height) == CANVAS
    assert any("downscaled from 480x360 to 240x180" in n for n in got.notes)


class _VariableRateCapture:
    """Stands in for ``cv2.VideoCapture`` on a variable-frame-rate stream: each frame's pixels hold its number."""

    def __init__(self, stamps: list[float], count: float) -> None:
        self.stamps, self.count, self.at = stamps, count, -1

    def grab(self) -> bool:
        self.at += 1
        return self.at < len(self.stamps)

    def retrieve(self):
        return True, np.full((40, 60, 3), self.at, np.uint8)

    def get(self, prop):
        return {cv2.CAP_PROP_POS_MSEC: self.stamps[self.at] * 1000 if self.at >= 0 else 0.0,
                cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_COUNT: self.count,
                cv2.CAP_PROP_FRAME_WIDTH: 60, cv2.CAP_PROP_FRAME_HEIGHT: 40}[prop]

    def release(self) -> None:
        pass


@pytest.mark.parametrize("count", [90, 0], ids=["length stated", "length unknown (a browser recording)"])
def test_variable_frame_rate_is_sampled_by_timestamp(tmp_path, monkeypatch, count):
    # 30 fps for 1 s, then one frame held for 2 s, then a last frame: 3 s but only 32 frames.
    stamps = [i / 30 for i in range(30)] + [1.0, 2.99]
    path = tmp_path / "vfr.webm"
    path.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 64)
    monkeypatch.setattr(vid, "_open", lambda p: _VariableRateCapture(stamps, count))
    got = read_video(path, frames=6)
    assert got.seconds == pytest.approx(3.0, abs=0.05)
    expected = []
    for k in range(6):  # the first frame on screen (1/30 s) at the middle of each sixth of the clip, each once
        first = next(i for i, t in enumerate(stamps) if t + 1 / 30 > (k + 0.5) * got.seconds / 6)
        if first not in expected:
            expected.append(first)
    numbers = [int(f.rgb[0, 0, 0]) for f in got.frames]
    assert numbers == expected == [f.number for f in got.frames]
    assert [f.time for f in got.frames] == pytest.approx([stamps[i] for i in expected], abs=1e-3)
    assert numbers[-1] == 31, "sampling by index would never reach the frame at 2.99 s"
    assert any(f"Only {len(expected)} distinct frames" in n for n in got.notes)


# ---- bad input ----------------------------------------------------------------------------------
def _audio(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 2000).astype(np.int16).tobytes())
    return path


def _bad_file(kind: str, folder: Path, clip: Path, astronaut: np.ndarray) -> Path:
    from PIL import Image

    path = folder / f"{kind}.bin"
    if kind == "text":
        path.write_text("this is a note, not a video\n" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "photo":
        Image.fromarray(astronaut).save(path, format="PNG")
    elif kind == "audio":
        _audio(path)
    elif kind == "truncated mp4":
        data = clip.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # cv2 writes the MP4 index last: it is lost
    elif kind == "zero frames":
        writer = cv2.VideoWriter(str(folder / "zero.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 6, (64, 64))
        writer.release()
        path = folder / "zero.mp4"
    elif kind == "header only":
        whole = write_clip(folder / "whole.avi", [np.zeros((64, 64, 3), np.uint8)] * 3, fourcc="MJPG")
        path = folder / "cut.avi"
        path.write_bytes(whole.read_bytes()[:5000])  # AVI header only: opens, holds no frame
    elif kind == "missing":
        path = folder / "gone.mp4"
    return path


@pytest.mark.parametrize("kind, error, words", [
    ("text", NotAVideo, "not a video"),
    ("empty", NotAVideo, "empty"),
    ("photo", NotAVideo, "photos go on the Analyze tab"),
    ("audio", AudioOnly, "sound only"),
    ("truncated mp4", VideoUnreadable, "damaged or cut short"),
    ("zero frames", NoVideoFrames, "Not a single frame"),
    ("header only", (VideoUnreadable, NoVideoFrames), "upload it again"),
    ("missing", VideoUnreadable, "no file"),
])
def test_bad_files_raise_typed_errors_that_say_what_to_do(kind, error, words, tmp_path, clip, astronaut):
    path = _bad_file(kind, tmp_path, clip, astronaut)
    with pytest.raises(error) as caught:
        read_video(path)
    assert words in str(caught.value)
    assert isinstance(caught.value, vid.VideoError) and "Traceback" not in str(caught.value)


def test_a_cut_avi_keeps_what_it_holds_and_says_it_was_cut(tmp_path, frames_written):
    whole = write_clip(tmp_path / "whole.avi", frames_written, fourcc="MJPG").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[: len(whole) // 2])
    got = read_video(cut, frames=4)
    assert got.truncated and 0 < got.seconds < 0.9 * N / FPS
    assert all(f.time < got.seconds for f in got.frames) and len(got.frames) == 4
    assert any("cut short" in n for n in got.notes)


def test_no_face_in_any_frame_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    path = write_clip(tmp_path / "noise.mp4", [rng.integers(0, 255, (120, 160, 3), np.uint8) for _ in range(4)])
    with pytest.raises(NoFaceInVideo, match="No face was found in any of the 4 frames"):
        prepare_video(path, frames=4)


# ---- tracking -----------------------------------------------------------------------------------
def test_the_moving_face_is_one_track_through_every_frame(prepared):
    assert len(prepared.tracks) == 1
    track = prepared.tracks[0]
    assert track.frames == list(range(N))
    lefts = [track.faces[i].bbox[0] for i in track.frames]
    assert all(b > a for a, b in itertools.pairwise(lefts)), "the box follows the face left to right"
    assert lefts[-1] - lefts[0] == pytest.approx(_x(N - 1) - _x(0), rel=0.2)  # as far as the portrait moved


def _face_at(x0: float, y0: float, side: float) -> Face:
    corners = np.array([[x0, y0], [x0 + side, y0 + side]], np.float32)
    return Face(np.repeat(corners, [1, 477], axis=0))


def test_linking_follows_overlap_then_nearness_and_orders_by_weight():
    big = [_face_at(10 + 30 * i, 10, 100) for i in range(5)]  # moves less than its size per frame
    small = [_face_at(400, 300, 40) for _ in range(3)]  # appears in the first three frames
    jump = _face_at(10 + 30 * 3 + 90, 10, 100)  # moved almost a face width: no overlap left, still near
    per_frame = [[big[0], small[0]], [small[1], big[1]], [big[2], small[2]], [big[3]], [jump]]
    tracks = link_tracks(per_frame)
    assert [t.frames for t in tracks] == [[0, 1, 2, 3, 4], [0, 1, 2]]
    assert tracks[0].faces[4] is jump and iou(big[3].bbox, jump.bbox) < 0.3


@pytest.fixture(scope="module")
def two_people(tmp_path_factory, astronaut) -> Path:
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    frames = []
    for i in range(4):
        frame = np.full((360, 680, 3), 70, np.uint8)
        frame[:320, 10 + 5 * i:330 + 5 * i] = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA)
        frame[100:360, 420:680] = cv2.resize(mirrored, (260, 260), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    return write_clip(tmp_path_factory.mktemp("two") / "two.mp4", frames)


def test_two_people_make_two_tracks_and_either_can_be_analysed(two_people, analyzer):
    video = prepare_video(two_people, frames=4)
    assert len(video.tracks) == 2
    first, second = video.tracks
    assert first.frames == second.frames == [0, 1, 2, 3]
    assert first.box()[0] < 340 < second.box()[0], "the larger face (left) is track 1"
    assert first.weight > second.weight
    picked = analyze_video(analyzer, video, track=1, evidence=False)
    assert picked.track_index == 1 and picked.to_json()["track"]["index"] == 1
    crop = picked.results[0].crops[0]
    assert crop.landmarks is not None and np.allclose(
        crop.matrix, analyzer.loaded("tiny").model.crop(video.clip.frames[0].rgb, second.faces[0]).matrix)
    picture = pipeline.video.tracks_picture(video, selected=1)
    assert picture.shape == video.clip.frames[0].rgb.shape and not np.array_equal(picture, video.clip.frames[0].rgb)


def test_frames_without_the_face_are_left_out_and_named(tmp_path, frames_written, analyzer):
    blank = np.full_like(frames_written[0], 70)
    frames = [blank if i in (2, 3) else f for i, f in enumerate(frames_written[:6])]
    result = analyze_video(analyzer, write_clip(tmp_path / "gaps.mp4", frames), frames=6, evidence=False)
    assert result.missing == [2, 3]
    tiny = result.results[0]
    assert tiny.probs[2] is None and tiny.probs[3] is None and len(tiny.scored) == 4
    assert tiny.score == pytest.approx(np.mean([tiny.probs[i] for i in (0, 1, 4, 5)]))
    note = next(n for n in result.notes() if "not found" in n)
    assert "2 of 6 frames" in note and f"{result.times[2]:.1f} s" in note and f"{result.times[3]:.1f} s" in note
    data = result.to_json()
    assert data["track"]["missing_frames"] == [2, 3] and data["detectors"][0]["frame_probs"][2] is None
    captions = [caption for _, caption in pipeline.video.thumbnails(result.video)]
    assert captions[2].endswith("no face") and not captions[1].endswith("no face")


# ---- scoring ------------------------------------------------------------------------------------
def test_per_frame_scores_equal_the_photo_path_on_the_same_crop(report, analyzer):
    loaded = analyzer.loaded("tiny")
    tiny = report.results[0]
    assert tiny.status == "ok" and tiny.scored == list(range(N))
    for i in tiny.scored:
        frame = report.video.clip.frames[i]
        photo = run_detector(loaded, PreparedImage(frame.rgb, [report.track.faces[i]]), 0, with_explanations=False)
        assert np.array_equal(photo.aligned.image, tiny.crops[i].image)
        assert tiny.probs[i] == pytest.approx(photo.verdict.prob_fake, abs=1e-5)


def test_batches_do_not_change_the_scores(analyzer, prepared, report):
    one_by_one = analyze_video(analyzer, prepared, evidence=False, batch_size=1).results[0].probs
    assert one_by_one == pytest.approx(report.results[0].probs, abs=1e-5)


def test_the_video_score_is_the_mean_and_the_label_follows_the_threshold(report):
    tiny = report.results[0]
    assert tiny.score == pytest.approx(float(np.mean(tiny.probs)))
    assert tiny.label == ("fake" if tiny.score >= tiny.threshold else "real")
    assert tiny.summary().startswith("likely manipulated" if tiny.label == "fake" else "likely real")
    assert f"over {N} frames" in tiny.summary()


def test_only_the_key_frame_is_explained_until_another_is_asked_for(report):
    tiny = report.results[0]
    assert tiny.key_frame == int(np.argmax(tiny.probs))
    assert list(tiny.evidence) == [tiny.key_frame] and tiny.evidence[tiny.key_frame]
    other = (tiny.key_frame + 1) % N
    shown = frame_evidence(report, other)
    assert shown["tiny"] and sorted(tiny.evidence) == sorted({tiny.key_frame, other})
    assert shown["tiny"][0].image.ndim == 3


def test_an_unchecked_detector_is_off_and_gives_no_scores(analyzer, prepared):
    off = analyze_video(analyzer, prepared, choices={"tiny": Choice(run=False)}).results[0]
    assert off.status == "off" and off.probs == [None] * N and off.score is None and off.evidence == {}


def test_a_failing_detector_comes_back_as_an_error(analyzer, prepared, monkeypatch):
    def broken(*_):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pipeline.video, "_crop_and_score", broken)
    failed = analyze_video(analyzer, prepared).results[0]
    assert failed.status == "error" and "out of memory" in failed.message and failed.score is None


def test_progress_is_reported_from_decoding_to_done(analyzer, clip):
    seen: list[tuple[float, str]] = []
    analyze_video(analyzer, clip, frames=3, evidence=False, progress=lambda f, w: seen.append((f, w)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    words = {w.split(":")[0] for _, w in seen}
    assert {"Decoding frames", "Finding faces", "Scoring frames", "Done"} <= words


def test_the_json_report_carries_every_frame_and_detector(report):
    data = json.loads(json.dumps(report.to_json()))
    tiny = data["detectors"][0]
    assert tiny["frame_times"] == pytest.approx(report.times, abs=1e-4)
    assert tiny["frame_probs"] == pytest.approx(report.results[0].probs, abs=1e-6)
    assert tiny["video_score"] == pytest.approx(report.results[0].score, abs=1e-6)
    assert tiny["threshold"] == pytest.approx(0.5) and tiny["source"] == "random"
    assert tiny["label"] in ("fake", "real") and tiny["key_frame"] == report.results[0].key_frame
    assert tiny["explanations"] and all(e["frame"] in report.results[0].evidence for e in tiny["explanations"])
    assert data["video"]["frames_sampled"] == N and data["track"]["frames"] == list(range(N))
    assert data["combined"]["n"] == 1 and data["combined"]["mean_prob_fake"] == pytest.approx(tiny["video_score"])
    assert set(data["seconds"]) >= {"scoring", "evidence", "total"}


def test_forged_frames_rise_on_a_trained_detectors_timeline(prepared):
    lav = Analyzer(families=["lav"])
    if lav.loaded("lav").model is None:
        pytest.skip("LAV's demo checkpoint is not available")
    result = analyze_video(lav, prepared, evidence=False).results[0]
    forged = [result.probs[i] for i in FORGED]
    real = [result.probs[i] for i in range(N) if i not in FORGED]
    assert min(forged) > max(real), "every forged frame scores above every real one"
    assert result.key_frame in FORGED


# ---- through the served app ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from .app_server import start_app

    cache = tmp_path_factory.mktemp("gradio-cache")
    app = start_app("--with-test-detector", "--families", "tiny", "--no-warm-up", "--upload-grace", "1",
                    env={"GRADIO_TEMP_DIR": str(cache)})
    yield app, cache
    app.stop()


@pytest.fixture(scope="module")
def client(served):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(served[0].url, verbose=False)


def test_the_app_answers_analyze_video_with_the_json_report(client, served, clip, tmp_path):
    from gradio_client import handle_file

    upload = tmp_path / "upload-clip.mp4"
    upload.write_bytes(clip.read_bytes())
    data = client.predict(handle_file(str(upload)), 6, 1, api_name="/analyze_video")
    assert data["video"]["frames_sampled"] == 6 and data["track"]["missing_frames"] == []
    tiny = next(d for d in data["detectors"] if d["family"] == "tiny")
    assert tiny["status"] == "ok" and len(tiny["frame_probs"]) == len(tiny["frame_times"]) == 6
    assert tiny["video_score"] == pytest.approx(float(np.mean(tiny["frame_probs"])), abs=1e-5)
    assert tiny["label"] == ("fake" if tiny["video_score"] >= tiny["threshold"] else "real")
    assert tiny["explanations"] and tiny["explanations"][0]["frame"] == tiny["key_frame"]
    deadline = time.monotonic() + 20
    while list(served[1].rglob(upload.name)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not list(served[1].rglob(upload.name)), "the uploaded clip must not stay in Gradio's cache"


@pytest.mark.parametrize("kind, words", [("text", "not a video"), ("audio", "sound only"),
                                         ("truncated mp4", "damaged or cut short")])
def test_the_app_says_what_is_wrong_with_a_bad_clip_and_stays_up(client, kind, words, tmp_path, clip, astronaut):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = _bad_file(kind, tmp_path, clip, astronaut)
    with pytest.raises(AppError, match=words):
        client.predict(handle_file(str(bad)), 4, 1, api_name="/analyze_video")
    assert client.predict(handle_file(str(clip)), 2, 1, api_name="/analyze_video")["video"]["frames_sampled"] == 2
