"""A room of users at once: 20 gradio_client clients x 5 ``analyze`` requests on loopback.

Every request must succeed (the queue holds them all: max size 64 > 20 waiting), and the
server's memory after the run must be within 10% of its memory before (after a warm-up).
``FORGERY_LENS_LOAD_FAMILIES`` (e.g. ``tiny``) limits the detectors; default: all, plus tiny.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from .app_server import start_app

pytestmark = pytest.mark.slow

CLIENTS = 20
REQUESTS = 5


def rss(pid: int) -> int:
    """Resident memory of the server process in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = tmp_path_factory.mktemp("gradio-cache")
    args = ["--with-test-detector", "--no-warm-up"]
    families = os.environ.get("FORGERY_LENS_LOAD_FAMILIES")
    if families:
        args += ["--families", families]
    app = start_app(*args, "--upload-grace", "5", env={"GRADIO_TEMP_DIR": str(cache)})
    app.cache = cache
    yield app
    app.stop()


# 120 full analyses on 2 cores: about 7 minutes here, longer on a slower machine
@pytest.mark.timeout(1800)
def test_twenty_clients_five_requests_each(server, tmp_path, astronaut):
    from gradio_client import Client, handle_file

    photo = tmp_path / "room-upload.png"
    Image.fromarray(astronaut).save(photo)

    def session(n: int) -> list[dict]:
        client = Client(server.url, verbose=False)
        out = []
        for _ in range(n):
            result, gallery = client.predict(handle_file(str(photo)), api_name="/analyze")
            out.append({"result": result, "images": len(gallery)})
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:  # warm-up at the same concurrency: threads, allocator settle
        list(pool.map(session, [1] * CLIENTS))
    time.sleep(1.0)
    before = rss(server.process.pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        runs = list(pool.map(session, [REQUESTS] * CLIENTS))
    elapsed = time.perf_counter() - started
    time.sleep(1.0)
    after = rss(server.process.pid)
    results = [r for run in runs for r in run]
    assert len(results) == CLIENTS * REQUESTS
    for r in results:
        tiny = next(d for d in r["result"]["detectors"] if d["family"] == "tiny")
        assert tiny["status"] == "ok" and r["images"] >= 1
        assert r["result"]["combined"]["n"] >= 1
    print(f"\n{len(results)} requests in {elapsed:.1f} s; server RSS {before / 2**20:.0f} MiB before, "
          f"{after / 2**20:.0f} MiB after ({(after - before) / before:+.1%})")
    assert after <= before * 1.10, f"memory grew from {before / 2**20:.0f} to {after / 2**20:.0f} MiB"
    deadline = time.monotonic() + 30
    while list(server.cache.rglob(photo.name)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not list(server.cache.rglob(photo.name)), "uploads must not stay in Gradio's cache"


def test_a_full_queue_is_refused_politely_and_the_app_recovers(tmp_path, astronaut):
    """With room for 2 waiting requests, a burst of 12 gets some refusals; later requests succeed."""
    from gradio_client import Client, handle_file

    photo = tmp_path / "burst.png"
    Image.fromarray(astronaut).save(photo)
    app = start_app("--with-test-detector", "--no-warm-up", "--families", "tiny", "--max-queue", "2",
                    "--cnn-concurrency", "1")
    try:
        client = Client(app.url, verbose=False)
        jobs = [client.submit(handle_file(str(photo)), api_name="/analyze") for _ in range(12)]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=120)
                outcomes.append("ok")
            except Exception as exc:  # noqa: BLE001 - the refusal type differs between client versions
                outcomes.append(str(exc))
        refused = [o for o in outcomes if o != "ok"]
        assert refused and "ok" in outcomes, outcomes
        assert all("full" in o.lower() or "busy" in o.lower() for o in refused), refused
        result, _ = client.predict(handle_file(str(photo)), api_name="/analyze")
        assert result["detectors"][0]["status"] == "ok"
    finally:
        app.stop()
