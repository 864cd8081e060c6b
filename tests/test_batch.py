"""The batch command line (``python -m pipeline analyze``): one JSON line per file, resume, processes.

A folder made here holds a portrait photo (twice, one in a subfolder), a short clip of the
portrait sliding across the frame (``cv2.VideoWriter``), a note, a corrupt photo and a text file
named like a video. The hidden ``tiny`` detector is saved once to a folder and named with
``--source`` so every process, and the Python API the lines are compared with, loads the same
weights.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from detectors import create_detector
from pipeline import Analyzer, Choice, analyze_video, batch, prepare, report
from pipeline.batch import BatchFile, collect_files, main, read_records

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 4


def _clip(path: Path, portrait: np.ndarray, n: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 6, (320, 240))
    assert writer.isOpened()
    face = cv2.resize(portrait, (200, 200), interpolation=cv2.INTER_AREA)
    for i in range(n):
        frame = np.full((240, 320, 3), 70, np.uint8)
        frame[20:220, 10 + 20 * i:210 + 20 * i] = face
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("media")
    (folder / "sub").mkdir()
    Image.fromarray(astronaut).save(folder / "portrait.png")
    Image.fromarray(astronaut).resize((384, 384)).save(folder / "sub" / "portrait.jpg", quality=92)
    _clip(folder / "clip.mp4", astronaut)
    (folder / "notes.txt").write_text("not a picture\n")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    (folder / "fake.mp4").write_text("a text file named like a video\n" * 20)
    (folder / ".hidden.png").write_bytes(b"")
    return folder


#: what each file of ``media`` should come back as: kind, status, error type
EXPECTED = {
    "portrait.png": ("photo", "ok", None),
    "sub/portrait.jpg": ("photo", "ok", None),
    "clip.mp4": ("video", "ok", None),
    "notes.txt": ("other", "skipped", None),
    "broken.jpg": ("photo", "error", "ImageUnreadable"),
    "fake.mp4": ("video", "error", "NotAVideo"),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "tiny"
    create_detector("tiny_test", "random").save_pretrained(folder)
    return folder


def _args(checkpoint: Path) -> list[str]:
    return ["--detectors", "tiny", "--source", f"tiny={checkpoint}", "--frames", str(FRAMES), "--no-progress"]


@pytest.fixture(scope="module")
def first_run(media, checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "results.jsonl"
    assert main(["analyze", str(media), "--out", str(out), *_args(checkpoint)]) == 0
    return out


def _by_name(records: list[dict[str, Any]], media: Path) -> dict[str, dict[str, Any]]:
    return {Path(r["path"]).relative_to(media).as_posix(): r for r in records}


def _timeless(value: Any) -> Any:
    """The JSON without wall-clock timings, which differ from run to run."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if not k.startswith("seconds")}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


# ---- which files --------------------------------------------------------------------------------
def test_files_are_found_recursively_once_in_order_without_hidden_ones_or_the_output(media, tmp_path):
    out = media / "results.jsonl"
    files = collect_files([media / "clip.mp4", media], exclude=[out])
    names = [Path(f.path).relative_to(media).as_posix() for f in files]
    assert names[0] == "clip.mp4" and names.count("clip.mp4") == 1  # named first, not again from the folder
    assert sorted(names) == sorted(EXPECTED)
    assert names[1:] == sorted(names[1:])
    assert {Path(f.path).relative_to(media).as_posix(): f.kind for f in files} == {k: v[0] for k, v in EXPECTED.items()}
    assert all(os.path.isabs(f.path) for f in files)


def test_a_link_back_up_the_tree_is_walked_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    (tmp_path / "a" / "up").symlink_to(tmp_path, target_is_directory=True)
    assert [Path(f.path).name for f in collect_files([tmp_path])] == ["x.png"]


# ---- one line per file --------------------------------------------------------------------------
def test_every_file_gets_one_line_with_its_status_and_a_sentence_when_it_fails(first_run, media):
    records = read_records(first_run)
    by_name = _by_name(records, media)
    assert len(records) == len(by_name) == len(EXPECTED)
    assert [r["path"] for r in records] == [f.path for f in collect_files([media])]  # input order
    for name, (kind, status, error) in EXPECTED.items():
        r = by_name[name]
        assert (r["kind"], r["status"], r["error"]) == (kind, status, error), name
        assert r["size"] == (media / name).stat().st_size and r["mtime_ns"] == (media / name).stat().st_mtime_ns
        if status == "ok":
            assert r["report"]["detectors"][0]["family"] == "tiny" and r["report"]["detectors"][0]["status"] == "ok"
            assert r["message"] == ""
        else:
            assert r["report"] is None and r["message"] and "Traceback" not in r["message"]
    assert ".txt" in by_name["notes.txt"]["message"]
    assert "not a video" in by_name["fake.mp4"]["message"]
    assert by_name["clip.mp4"]["report"]["video"]["frames_sampled"] == FRAMES
    assert not list(first_run.parent.glob("*.part-*")) and not list(first_run.parent.glob("*.merging"))


def test_each_line_equals_the_python_api_for_that_file(first_run, media, checkpoint):
    by_name = _by_name(read_records(first_run), media)
    analyzer = Analyzer(include_test=True, families=["tiny"])
    choices = {"tiny": Choice(True, str(checkpoint))}
    for name in ("portrait.png", "sub/portrait.jpg"):
        prepared = prepare(media / name)
        data, _ = report(list(analyzer.run(prepared, 0, choices, with_explanations=False)), prepared, 0)
        assert _timeless(by_name[name]["report"]) == _timeless(json.loads(json.dumps(data))), name
    video = analyze_video(analyzer, media / "clip.mp4", frames=FRAMES, choices=choices, evidence=False).to_json()
    assert _timeless(by_name["clip.mp4"]["report"]) == _timeless(json.loads(json.dumps(video)))


def test_evidence_brings_explanations_without_pictures(media, checkpoint, tmp_path):
    out = tmp_path / "evidence.jsonl"
    assert main(["analyze", str(media / "portrait.png"), "--out", str(out), *_args(checkpoint), "--evidence"]) == 0
    (line,) = read_records(out)
    explanations = line["report"]["detectors"][0]["explanations"]
    assert line["options"]["evidence"] is True and explanations
    assert all(e["image"] is None and e["kind"] for e in explanations)


# ---- resume -------------------------------------------------------------------------------------
@pytest.fixture
def counted(monkeypatch) -> list[str]:
    """The files actually analysed in this test (``batch.analyze_file`` is wrapped)."""
    seen: list[str] = []
    real = batch.analyze_file

    def wrapped(analyzer, item: BatchFile, *args, **kwargs):
        seen.append(item.path)
        return real(analyzer, item, *args, **kwargs)

    monkeypatch.setattr(batch, "analyze_file", wrapped)
    return seen


def test_a_resumed_run_skips_recorded_files_and_completes_a_cut_last_line(first_run, media, checkpoint, tmp_path,
                                                                           counted):
    out = tmp_path / "results.jsonl"
    lines = first_run.read_bytes().splitlines(keepends=True)
    cut = json.loads(lines[2])
    out.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed while writing the third line
    assert main(["analyze", str(media), "--out", str(out), *_args(checkpoint)]) == 0
    assert counted == [r["path"] for r in map(json.loads, lines[2:])]  # the cut one and those never written
    assert _timeless(read_records(out)) == _timeless(read_records(first_run))
    assert out.read_bytes().endswith(b"\n") and len(out.read_bytes().splitlines()) == len(EXPECTED)
    assert _timeless(read_records(out)[2]) == _timeless(cut)

    counted.clear()
    assert main(["analyze", str(media), "--out", str(out), *_args(checkpoint)]) == 0
    assert counted == []  # nothing left to do

    touched = media / "notes.txt"
    stamp = touched.stat().st_mtime_ns
    os.utime(touched, ns=(stamp + 10**9, stamp + 10**9))  # changed since it was recorded
    try:
        assert main(["analyze", str(media), "--out", str(out), *_args(checkpoint)]) == 0
    finally:
        os.utime(touched, ns=(stamp, stamp))  # the other tests compare with the first run's lines
    assert counted == [str(touched)]
    assert len(read_records(out)) == len(EXPECTED)  # its line replaced, not added

    counted.clear()
    assert main(["analyze", str(media / "portrait.png"), "--out", str(out), *_args(checkpoint)[:-3],
                 "--frames", "2", "--no-progress"]) == 0
    assert counted == [str(media / "portrait.png")]  # other options: analysed again
    records = read_records(out)
    assert records[0]["path"] == str(media / "portrait.png") and records[0]["options"]["frames"] == 2
    assert len(records) == len(EXPECTED)  # lines of files not named this time are kept


def test_the_parts_of_a_killed_multi_process_run_are_folded_in(first_run, media, checkpoint, tmp_path, counted):
    out = tmp_path / "results.jsonl"
    lines = first_run.read_bytes().splitlines(keepends=True)
    out.write_bytes(lines[0])
    (tmp_path / "results.jsonl.part-0").write_bytes(lines[1])
    (tmp_path / "results.jsonl.part-3").write_bytes(lines[3] + lines[4][:10])  # from a run with 4 processes
    assert main(["analyze", str(media), "--out", str(out), *_args(checkpoint)]) == 0
    assert sorted(counted) == sorted(json.loads(lines[i])["path"] for i in (2, 4, 5))
    assert _timeless(read_records(out)) == _timeless(read_records(first_run))
    assert not list(tmp_path.glob("*.part-*"))


# ---- bad command lines --------------------------------------------------------------------------
@pytest.mark.parametrize("extra, words", [
    (["--detectors", "nope"], "unknown nope"),
    (["--detectors", "tiny", "--source", "tiny"], "FAMILY=SOURCE"),
    (["--detectors", "tiny", "--source", "lav=demo"], "unknown family 'lav'"),
    (["--detectors", "tiny", "--frames", "0"], "--frames must be 1..64"),
    (["--detectors", "tiny", "--source", "tiny=/no/such/checkpoint"], "--source tiny=/no/such/checkpoint"),
])
def test_a_bad_option_is_refused_with_a_sentence(extra, words, media, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["analyze", str(media / "notes.txt"), "--out", str(out), "--no-progress", *extra]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists() or not read_records(out)


def test_a_missing_input_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "gone"), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "no such file or folder" in capsys.readouterr().err and not (tmp_path / "r.jsonl").exists()


# ---- two processes ------------------------------------------------------------------------------
@pytest.mark.slow  # two fresh interpreters load torch and mediapipe: 21-28 s on 2 idle cores, 83 s beside training
def test_two_cpu_processes_under_accelerate_write_the_same_lines_as_one(first_run, media, checkpoint, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert accelerate, "accelerate's launcher is part of the locked environment"
    out = tmp_path / "two.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1"}
    # ``--multi_gpu`` is Accelerate's torchrun launcher, which also starts CPU processes; its own ``--cpu``
    # would pick the single-process launcher. The command's ``--cpu`` keeps the models on the CPU.
    proc = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "pipeline", "analyze",
                           str(media), "--out", str(out), *_args(checkpoint), "--cpu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "over 2 processes" in proc.stderr
    shares = sorted(int(m) for m in re.findall(r"process [01]: (\d+) files analysed", proc.stderr))
    assert len(shares) == 2 and sum(shares) == len(EXPECTED) and min(shares) > 0  # disjoint, none idle
    assert _timeless(read_records(out)) == _timeless(read_records(first_run))
    assert not list(tmp_path.glob("*.part-*"))
