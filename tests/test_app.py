"""The app served on 127.0.0.1 and driven through gradio_client, as scripts use it.

The hidden ``tiny_test`` detector (random weights) keeps these fast and independent of the
demo checkpoints; the five real families are checked too where their demo checkpoints exist.
"""
from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from detectors.registry import BUILTIN_FAMILIES

from .app_server import start_app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def gradio_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gradio-cache")


@pytest.fixture(scope="module")
def server(gradio_cache):
    app = start_app("--with-test-detector", "--no-warm-up", "--upload-grace", "1",
                    env={"GRADIO_TEMP_DIR": str(gradio_cache)})
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def photo(tmp_path_factory, astronaut) -> Path:
    path = tmp_path_factory.mktemp("upload") / f"upload-{uuid.uuid4().hex[:8]}.png"
    Image.fromarray(astronaut).save(path)
    return path


@pytest.fixture(scope="module")
def analyzed(client, photo):
    return client.predict(handle_file(str(photo)), api_name="/analyze")


def _entry(result: dict, family: str) -> dict:
    return next(d for d in result["detectors"] if d["family"] == family)


def test_api_names_cover_every_event(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/analyze", "/prepare", "/faces", "/forge", "/lab_detect", "/detect_tiny"} <= names
    assert {f"/detect_{f}" for f in BUILTIN_FAMILIES} <= names


def test_analyze_returns_a_result_per_detector_with_images(analyzed):
    result, gallery = analyzed
    assert [d["family"] for d in result["detectors"]] == [*BUILTIN_FAMILIES, "tiny"]
    tiny = _entry(result, "tiny")
    assert tiny["status"] == "ok" and tiny["name"] == "tiny_test" and tiny["source"] == "random"
    assert 0.0 <= tiny["prob_fake"] <= 1.0 and tiny["threshold"] == pytest.approx(0.5)
    assert tiny["label"] == ("fake" if tiny["prob_fake"] >= tiny["threshold"] else "real")
    assert tiny["summary"].startswith("likely manipulated" if tiny["label"] == "fake" else "likely real")
    assert tiny["explanations"], "every detector explains itself"
    for explanation in tiny["explanations"]:
        item = gallery[explanation["image"]]
        assert explanation["title"] in item["caption"]
        with Image.open(item["image"]) as img:
            assert min(img.size) >= 16
    ok = [d for d in result["detectors"] if d["status"] == "ok"]
    assert result["combined"]["n"] == len(ok)
    assert result["combined"]["n_fake"] == sum(d["label"] == "fake" for d in ok)
    assert result["face"]["n_faces"] == 1


@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_real_family_result(analyzed, family):
    result, _gallery = analyzed
    entry = _entry(result, family)
    if entry["status"] == "missing":
        assert entry["message"], "a missing detector says why"
        pytest.skip(f"{family}: {entry['message']}")
    assert entry["status"] == "ok", entry["message"]
    assert entry["source"] == "demo" and 0.0 <= entry["prob_fake"] <= 1.0
    assert entry["label"] in ("fake", "real") and entry["explanations"]
    for e in entry["explanations"]:  # each has a picture in the gallery or bars in the JSON, never neither
        assert e["caption"] and (e["image"] is None) == (e["chart"] is not None), e["kind"]
        if e["chart"] is not None:
            assert len(e["chart"]["labels"]) == len(e["chart"]["values"]) == len(e["chart"]["colours"]) >= 2


def test_upload_is_deleted_after_the_request(analyzed, photo, gradio_cache):
    deadline = time.monotonic() + 15
    while list(gradio_cache.rglob(photo.name)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not list(gradio_cache.rglob(photo.name)), "the upload must not stay in Gradio's cache"


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    text = tmp / "notes.png"
    text.write_text("this is not an image")
    corrupt = tmp / "corrupt.png"
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(buf, format="PNG")
    corrupt.write_bytes(buf.getvalue()[:60])
    blank = tmp / "blank.png"
    Image.fromarray(np.full((320, 320, 3), 128, np.uint8)).save(blank)
    huge = tmp / "huge.png"
    Image.new("1", (10_000, 9_000)).save(huge)  # 90 megapixels in a few kB
    return {"non-image": (text, "could not be read as an image"), "corrupt": (corrupt, "could not be read as an image"),
            "no face": (blank, "No face was found"), "huge": (huge, "too large to open safely")}


@pytest.mark.parametrize("case", ["non-image", "corrupt", "no face", "huge"])
def test_bad_input_gives_the_typed_message_and_the_app_keeps_serving(client, tmp_path, case, photo):
    path, message = _bad_inputs(tmp_path)[case]
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)), api_name="/analyze", run_lav=False, run_rffr=False,
                       run_antifake_prompt=False, run_prodet=False, run_vlffd=False)
    if case == "huge":  # after the last bad one, a good photo still goes through
        result, _ = client.predict(handle_file(str(photo)), api_name="/analyze", run_lav=False, run_rffr=False,
                                   run_antifake_prompt=False, run_prodet=False, run_vlffd=False)
        assert _entry(result, "tiny")["status"] == "ok"


def test_failing_source_falls_back_with_a_visible_message(client, photo, tmp_path):
    broken = tmp_path / "broken-checkpoint"
    broken.mkdir()
    (broken / "config.json").write_text('{"name": "tiny_test"}')
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    result, _ = client.predict(handle_file(str(photo)), api_name="/analyze", source_tiny=str(broken),
                               run_lav=False, run_rffr=False, run_antifake_prompt=False, run_prodet=False,
                               run_vlffd=False)
    tiny = _entry(result, "tiny")
    assert tiny["status"] == "ok" and tiny["source"] == "random" and tiny["requested_source"] == str(broken)
    assert "Could not load" in tiny["message"] and "CheckpointCorrupted" in tiny["message"]
    assert all(_entry(result, f)["status"] in ("off", "missing") for f in BUILTIN_FAMILIES)


def test_ui_chain_prepares_then_each_card_runs_in_the_same_session(server, photo):
    client = Client(server.url, verbose=False)
    faces, status, _combined = client.predict(handle_file(str(photo)), 1, api_name="/prepare")
    assert "Found **1 face**" in status and Path(faces).is_file()
    verdict, *rest = client.predict(1, True, "", api_name="/detect_tiny")
    assert "Probability of manipulation" in verdict and "`random`" in verdict
    values = [r.get("value") if isinstance(r, dict) else r for r in rest]
    images = [v for v in values[:len(values) // 2] if isinstance(v, str) and Path(v).is_file()]
    texts = [v for v in values[len(values) // 2:] if isinstance(v, str)]
    assert images, "the card shows at least one explanation picture"
    assert len(texts) == len(images) and all(t.startswith("**") for t in texts), "a sentence beside every picture"


def test_forgery_lab_scores_each_map_against_the_truth(server, photo):
    client = Client(server.url, verbose=False)
    forged, truth, text = client.predict(handle_file(str(photo)), ["left_eye", "mouth"], "donor blend", 1,
                                         api_name="/forge")
    assert "Donor blend of left eye, mouth" in text
    with Image.open(forged) as a, Image.open(truth) as t, Image.open(photo) as b:
        assert a.size == t.size and a.size[0] < b.size[0]  # the forged face, cut out to be seen large
        mask = np.asarray(t.convert("RGB"))
        assert (mask[..., 0] > 200).any() and (mask[..., 0] < 50).any()  # cividis: yellow forged, dark untouched
    outputs = client.predict(True, "", True, "", True, "", True, "", True, "", True, "", api_name="/lab_detect")
    table = outputs[0]
    assert "Tiny test detector" in table and "Grad-CAM" in table


def test_several_faces_the_user_picks_one(client, tmp_path, astronaut):
    import cv2

    canvas = np.full((512, 512 + 384, 3), 255, np.uint8)
    canvas[:, :512] = astronaut
    canvas[64:448, 512:] = cv2.resize(astronaut, (384, 384))
    path = tmp_path / "two-faces.png"
    Image.fromarray(canvas).save(path)
    off = dict(run_lav=False, run_rffr=False, run_antifake_prompt=False, run_prodet=False, run_vlffd=False)
    first, _ = client.predict(handle_file(str(path)), api_name="/analyze", **off)
    second, _ = client.predict(handle_file(str(path)), 2, api_name="/analyze", **off)
    assert first["face"]["n_faces"] == second["face"]["n_faces"] == 2
    assert first["face"]["index"] == 0 and second["face"]["index"] == 1
    assert first["face"]["box"][0] < 512 <= second["face"]["box"][0], "face 1 is the largest, face 2 the smaller one"


def test_every_installed_family_runs_in_the_app_with_random_weights(client, photo):
    """Independent of demo checkpoints: each family's model and explainer work through the app."""
    sources = {f"source_{f}": "random" for f in BUILTIN_FAMILIES}
    result, gallery = client.predict(handle_file(str(photo)), api_name="/analyze", run_tiny=False, **sources)
    for family in BUILTIN_FAMILIES:
        entry = _entry(result, family)
        if entry["status"] == "missing" and "not part of this build" in entry["message"]:
            continue
        assert entry["status"] == "ok", f"{family}: {entry['message']}"
        assert entry["source"] == "random" and entry["explanations"]
        for e in entry["explanations"]:
            assert e["caption"] and (e["chart"] is not None or gallery[e["image"]]["caption"].endswith(e["title"]))
