"""Soak: the served app idles past every grace period (uploads, its own pictures, Gradio's cache
sweep), then serves photos, examples, the lab and the API again, several times over.

Grace periods are shortened by the app's own flags so the test stays bounded; the janitor's
logic over hours of idle is covered with an injected clock in ``test_janitor.py``. Set
``FORGERY_LENS_SOAK_IDLE`` (seconds, e.g. 200) to run the app with its default grace periods
and idle that long once instead.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file

from .app_server import start_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "examples" / "astronaut_selfblend.png"
LONG_IDLE = os.environ.get("FORGERY_LENS_SOAK_IDLE")
GRACES = () if LONG_IDLE else ("--upload-grace", "1", "--picture-grace", "2", "--cache-sweep", "2,4")
IDLE = float(LONG_IDLE or 15)  # longer than every grace period plus one sweep
ROUNDS = 1 if LONG_IDLE else 3


@pytest.fixture(scope="module")
def gradio_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("soak-cache")


@pytest.fixture(scope="module")
def server(gradio_cache):
    app = start_app("--with-test-detector", "--no-warm-up", *GRACES, env={"GRADIO_TEMP_DIR": str(gradio_cache)})
    yield app
    app.stop()


def fresh_photo(folder: Path, astronaut) -> Path:
    """A new file each round, as a visitor's upload would be."""
    path = folder / f"visitor-{uuid.uuid4().hex[:8]}.png"
    Image.fromarray(astronaut).save(path)
    return path


def serve_everything(client: Client, photo: Path) -> None:
    faces, status = client.predict(handle_file(str(photo)), 1, api_name="/faces")
    assert Path(faces).is_file() and "Found **1 face**" in status
    faces, status, _ = client.predict(handle_file(str(photo)), 1, api_name="/prepare")
    assert "Found **1 face**" in status
    verdict, *_ = client.predict(1, True, "", api_name="/detect_tiny")
    assert "Probability of manipulation" in verdict
    for image in (photo, EXAMPLE):
        result, gallery = client.predict(handle_file(str(image)), api_name="/analyze")
        assert {d["status"] for d in result["detectors"]} <= {"ok", "missing"}
        assert all(Path(item["image"]).is_file() for item in gallery)
    forged, _truth, text = client.predict(handle_file(str(photo)), ["nose"], "self-blend", 0, api_name="/forge")
    assert Path(forged).is_file() and "nose" in text
    table, *_ = client.predict(*([True, ""] * 6), api_name="/lab_detect")
    assert "Tiny test detector" in table


def test_app_serves_after_idling_past_every_grace_period(server, tmp_path, astronaut, gradio_cache):
    client = Client(server.url, verbose=False)
    for round_ in range(ROUNDS):
        serve_everything(client, fresh_photo(tmp_path, astronaut))
        time.sleep(IDLE)
        leftovers = [p for p in gradio_cache.rglob("visitor-*.png")]
        assert not leftovers, f"round {round_}: uploads stayed in the cache: {leftovers[:3]}"
    serve_everything(Client(server.url, verbose=False), fresh_photo(tmp_path, astronaut))
    log = server.log()
    assert "Traceback" not in log and "FileNotFoundError" not in log, log[-3000:]
