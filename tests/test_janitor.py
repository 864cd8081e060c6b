"""The upload/picture janitor driven by an injected clock: hours of idle, bursts, shared uploads.

The app once died for good two minutes after its last answer: the janitor deleted the folder
its pictures are written into. These tests idle far past every grace period and check that
pictures and uploads still come and go on time.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")
from detectors.faces import FaceError
from ui.files import Janitor, Pictures, existing_upload

HOUR = 3600.0
PIXELS = np.zeros((8, 8, 3), np.uint8)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def idle(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def upload_root(tmp_path) -> Path:
    root = tmp_path / "gradio-cache"
    root.mkdir()
    return root


def janitor_for(clock: Clock, upload_root: Path, grace: float = 60.0, keep=frozenset(), busy=lambda: set()):
    return Janitor(lambda: set(keep), grace, busy=busy, clock=clock, upload_root=lambda: str(upload_root),
                              background=False)


def uploaded(upload_root: Path, name: str = "photo.png", digest: str = "ab12") -> Path:
    folder = upload_root / digest
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(b"png")
    return path


def test_pictures_keep_coming_after_hours_of_idle(clock, upload_root):
    janitor = janitor_for(clock, upload_root)
    pictures = Pictures(janitor, grace=120.0)
    first = Path(pictures(PIXELS))
    for hours in (0.05, 1, 3, 12):
        clock.idle(hours * HOUR)
        janitor.sweep()
        assert pictures.folder.is_dir(), f"the pictures folder vanished after {hours} h idle"
        later = Path(pictures(PIXELS))
        assert later.is_file() and later.parent == pictures.folder
    assert not first.exists()  # each picture still goes once its grace is over


def test_each_picture_lives_exactly_its_grace_period_through_bursts(clock, upload_root):
    janitor = janitor_for(clock, upload_root)
    pictures = Pictures(janitor, grace=120.0)
    burst_a = [Path(pictures(PIXELS)) for _ in range(30)]
    clock.idle(100)
    burst_b = [Path(pictures(PIXELS)) for _ in range(30)]
    clock.idle(19.9)  # 119.9 s after burst A
    assert janitor.sweep() == 0 and all(p.exists() for p in burst_a + burst_b)
    clock.idle(0.1)
    assert janitor.sweep() == 30
    assert not any(p.exists() for p in burst_a) and all(p.exists() for p in burst_b)
    clock.idle(100)
    assert janitor.sweep() == 30 and not any(p.exists() for p in burst_b)
    assert janitor.pending == 0 and pictures.folder.is_dir()
    clock.idle(6 * HOUR)
    assert Path(pictures(PIXELS)).is_file()


def test_upload_goes_with_its_hash_folder_and_the_cache_stays(clock, upload_root):
    janitor = janitor_for(clock, upload_root, grace=60.0)
    photo = uploaded(upload_root)
    janitor.used(str(photo))
    clock.idle(59)
    assert janitor.sweep() == 0 and photo.exists()
    clock.idle(2)
    assert janitor.sweep() == 1
    assert not photo.exists() and not photo.parent.exists() and upload_root.is_dir()
    clock.idle(5 * HOUR)
    again = uploaded(upload_root)  # the same photo uploaded again, hours later
    janitor.used(str(again))
    clock.idle(61)
    assert janitor.sweep() == 1 and not again.exists() and upload_root.is_dir()


def test_files_outside_the_upload_cache_and_kept_files_are_never_deleted(clock, upload_root, tmp_path):
    example = tmp_path / "assets" / "example.png"
    example.parent.mkdir()
    example.write_bytes(b"png")
    kept = uploaded(upload_root, "default.png", "cd34")
    janitor = janitor_for(clock, upload_root, keep={str(kept)})
    janitor.used(str(example))
    janitor.used(str(kept))
    janitor.used(None)
    clock.idle(10 * HOUR)
    assert janitor.sweep() == 0 and example.exists() and kept.exists() and janitor.pending == 0


def test_a_due_upload_that_a_queued_request_still_needs_waits(clock, upload_root):
    """Twenty visitors sending the same photo share one cache path: it must outlive the queue."""
    photo = uploaded(upload_root)
    queued = {str(photo)}
    janitor = janitor_for(clock, upload_root, grace=5.0, busy=lambda: queued)
    janitor.used(str(photo))
    clock.idle(6)
    assert janitor.sweep() == 0 and photo.exists()  # due, but a queued request refers to it
    queued.clear()
    clock.idle(2)
    assert janitor.sweep() == 0 and photo.exists()  # given another grace period
    clock.idle(4)
    assert janitor.sweep() == 1 and not photo.exists()


def test_the_pictures_folder_comes_back_when_something_else_removes_it(clock, upload_root):
    janitor = janitor_for(clock, upload_root)
    pictures = Pictures(janitor, grace=120.0)
    old = Path(pictures(PIXELS))
    shutil.rmtree(pictures.folder)  # a tmp cleaner, or an operator
    fresh = Path(pictures(PIXELS))
    assert fresh.is_file()
    clock.idle(121)
    assert janitor.sweep() == 2 and not old.exists() and not fresh.exists() and pictures.folder.is_dir()


def test_a_deleted_upload_gets_a_clear_message(tmp_path):
    gone = tmp_path / "gone.png"
    with pytest.raises(FaceError, match="no longer on the server"):
        existing_upload(str(gone), "none sent")
    with pytest.raises(FaceError, match="none sent"):
        existing_upload(None, "none sent")
