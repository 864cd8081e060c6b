"""A real browser: Debian's chromium, headless, driven by playwright against the served app.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``; the test setup installs it) and
the playwright Python package (never ``playwright install``: no browser download here). Saves
screenshots under ``test-artifacts/``.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from detectors.registry import BUILTIN_FAMILIES

from .app_server import start_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
EXAMPLE = ROOT / "assets" / "examples" / "astronaut_selfblend.png"
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def server():
    app = start_app("--with-test-detector")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def page(server):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                        viewport={"width": 1500, "height": 1200})
        page = context.new_page()
        page.goto(server.url, timeout=TIMEOUT_MS)
        page.wait_for_selector("#analyze-btn", timeout=TIMEOUT_MS)
        yield page
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def _available_families(page) -> list[str]:
    """Cards whose detector loaded (the others say why they are missing)."""
    families = []
    for family in [*BUILTIN_FAMILIES, "tiny"]:
        text = page.inner_text(f"#verdict-{family}")
        if "Not available" not in text:
            families.append(family)
    return families


def test_upload_shows_every_card_with_verdicts_and_pictures(page):
    ARTIFACTS.mkdir(exist_ok=True)
    available = _available_families(page)
    assert "tiny" in available
    for family in set(BUILTIN_FAMILIES) - set(available):
        assert "No demo checkpoint yet" in page.inner_text(f"#verdict-{family}") or \
            "not part of this build" in page.inner_text(f"#verdict-{family}")
    page.set_input_files("#photo input[type=file]", str(EXAMPLE))
    page.wait_for_selector("#faces img", timeout=TIMEOUT_MS)
    page.click("#analyze-btn")
    for family in available:
        page.wait_for_function(
            "f => /Likely (manipulated|real)/.test(document.querySelector('#verdict-' + f)?.innerText || '')",
            arg=family, timeout=TIMEOUT_MS)
        verdict = page.inner_text(f"#verdict-{family}")
        assert "Probability of manipulation" in verdict and "decision threshold" in verdict
        # Every evidence picture has loaded (they load lazily: scroll each into view), with a sentence beside it.
        page.wait_for_selector(f"#card-{family} img", timeout=TIMEOUT_MS)
        for img in page.locator(f"#card-{family} img").all():
            img.scroll_into_view_if_needed()
        page.wait_for_function(
            "f => { const imgs = [...document.querySelectorAll('#card-' + f + ' img')];"
            " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
            arg=family, timeout=TIMEOUT_MS)
        # Charts of a few numbers are drawn by the browser: each shown plot has its bars on a canvas.
        plots = page.locator(f"#card-{family} [id^=plot-{family}-]:visible")
        for plot in plots.all():
            plot.scroll_into_view_if_needed()
            plot.locator("canvas, svg").first.wait_for(timeout=TIMEOUT_MS)
        n_slots = page.locator(f"#card-{family} img").count() + plots.count()
        for i in range(n_slots):
            assert page.inner_text(f"#text-{family}-{i}").strip(), f"{family}: evidence {i} has no sentence"
    n = len(available)
    page.wait_for_function(
        "n => new RegExp('of ' + n + ' (detectors|say)').test(document.querySelector('#combined')?.innerText || '')",
        arg=n, timeout=TIMEOUT_MS)
    combined = page.inner_text("#combined")
    assert sum(line.count("likely") for line in combined.splitlines()[1:]) >= n, combined
    assert "unanimous" not in combined and "Weight" in combined
    page.wait_for_function("() => /detectors are done/.test(document.querySelector('#status')?.innerText || '')",
                           timeout=TIMEOUT_MS)
    for family in set(available) & set(BUILTIN_FAMILIES):  # the demo checkpoints carry measured figures
        assert "How well it detects (measured)" in page.inner_text(f"#verdict-{family}"), family
    boxes = [page.locator(f"#card-{f}").bounding_box() for f in available]
    assert len({round(b["x"]) for b in boxes}) == 1 and len({round(b["width"]) for b in boxes}) == 1, \
        "one detector per row: every card starts at the same x and is as wide as the others (no orphan card)"
    assert len({round(b["y"]) for b in boxes}) == len(boxes)
    page.screenshot(path=str(ARTIFACTS / "app-analyze.png"), full_page=True)
    for family in available:
        page.locator(f"#card-{family}").screenshot(path=str(ARTIFACTS / f"card-{family}.png"))


def test_non_image_upload_shows_the_error_text(page, tmp_path):
    bogus = tmp_path / "holiday.jpg"
    bogus.write_text("this is a text file, not a photo")
    page.set_input_files("#photo input[type=file]", str(bogus))
    page.click("#analyze-btn")
    page.wait_for_function(
        "() => /could not be read as an image/.test(document.querySelector('#status')?.innerText || '')",
        timeout=TIMEOUT_MS)
    assert "Could not analyse this picture" in page.inner_text("#status")
    page.screenshot(path=str(ARTIFACTS / "app-error.png"), full_page=False)
    # ... and the app keeps serving: an example still goes through.
    page.set_input_files("#photo input[type=file]", str(EXAMPLE))
    page.wait_for_selector("#faces img", timeout=TIMEOUT_MS)
    page.click("#analyze-btn")
    page.wait_for_function("() => /Found \\*?\\*?1 face/.test(document.querySelector('#status')?.innerText || '')",
                           timeout=TIMEOUT_MS)


def test_forgery_lab_shows_truth_beside_each_map(page):
    page.get_by_role("tab", name="Forgery lab").click()
    page.set_input_files("#lab-photo input[type=file]", str(ROOT / "assets" / "examples" / "astronaut.png"))
    page.wait_for_timeout(1500)
    page.click("#forge-btn")
    page.wait_for_function("() => /pixel AUC/.test(document.querySelector('#lab-table')?.innerText || '')",
                           timeout=TIMEOUT_MS)
    page.locator("#lab-text-tiny").scroll_into_view_if_needed()  # pictures load lazily, one detector per row
    page.wait_for_function(
        "() => { const i = document.querySelector('#lab-tiny img'); return i && i.complete && i.naturalWidth > 0; }",
        timeout=TIMEOUT_MS)
    assert "pixel AUC" in page.inner_text("#lab-text-tiny")
    page.wait_for_selector("#truth img", timeout=TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "app-lab.png"), full_page=True)


def test_clicking_a_patch_redraws_the_similarity_grid(page):
    """LAV's interactive evidence (random weights, so it does not wait for the demo checkpoint)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout  # the page fixture made sure it exists

    # A fresh session: with the earlier tests' photo still shown, "#faces img" would be found
    # before the new upload is processed and the Analyze click could run on the old state.
    page.goto(page.url, timeout=TIMEOUT_MS)
    page.wait_for_selector("#analyze-btn", timeout=TIMEOUT_MS)
    box_input = page.locator("#source-lav textarea, #source-lav input")
    if box_input.count() == 0:
        pytest.skip("LAV is not part of this build")
    box_input.first.fill("random")
    page.set_input_files("#photo input[type=file]", str(EXAMPLE))
    page.wait_for_selector("#faces img", timeout=TIMEOUT_MS)
    page.click("#analyze-btn")
    page.wait_for_function("() => /Checkpoint: random/.test(document.querySelector('#verdict-lav')?.innerText || '')",
                           timeout=TIMEOUT_MS)
    # Cards above LAV's (the combined verdict) grow as the other detectors answer: click once all are in.
    page.wait_for_function("() => /detectors are done/.test(document.querySelector('#status')?.innerText || '')",
                           timeout=TIMEOUT_MS)
    target = page.locator("#img-lav-0 img")
    target.scroll_into_view_if_needed()
    page.wait_for_function("() => { const i = document.querySelector('#img-lav-0 img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=TIMEOUT_MS)
    clicked = "() => /patch you clicked \\(row \\d+, column \\d+\\)/.test(document.querySelector('#text-lav-1')?.innerText || '')"
    # A click landing while the card re-renders is lost, so click again as a user would (a few times at most).
    for attempt in range(4):
        box = target.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.8)
        try:
            page.wait_for_function(clicked, timeout=TIMEOUT_MS // 8)
            break
        except PlaywrightTimeout:
            if attempt == 3:
                raise
    text = page.inner_text("#text-lav-1")
    row = int(text.split("(row ")[1].split(",")[0])
    assert row > 1, "a click low on the face picks a patch in a lower row"
    page.locator("#card-lav").screenshot(path=str(ARTIFACTS / "app-lav-click.png"))


def test_a_clip_shows_each_detectors_timeline_verdict_and_key_frame(page, tmp_path, astronaut):
    """Upload a clip made here (the portrait sliding across, four frames forged), see the timelines."""
    from .test_video import _forged_portrait, _frame, write_clip

    forged = _forged_portrait(astronaut)
    clip = write_clip(tmp_path / "moving-face.webm",  # VP8 WebM: a clip the browser can play, as a webcam records
                      [_frame(forged if 3 <= i < 6 else astronaut, 10 + 20 * i) for i in range(10)], fps=5,
                      fourcc="VP80")
    page.goto(page.url, timeout=TIMEOUT_MS)  # a fresh session: the Analyze tab's boxes as they start
    page.wait_for_selector("#analyze-btn", timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Video").click()
    page.set_input_files("#video input[type=file]", str(clip))
    page.wait_for_selector("#video video", timeout=TIMEOUT_MS)
    page.locator("#video-frames input[type=number]").fill("10")
    page.click("#video-btn")
    page.wait_for_function("() => /Done in/.test(document.querySelector('#video-status')?.innerText || '')",
                           timeout=TIMEOUT_MS)
    assert "10 frames sampled evenly" in page.inner_text("#video-status")
    families = [f for f in [*BUILTIN_FAMILIES, "tiny"] if page.locator(f"#video-verdict-{f}").count()
                and "Not available" not in page.inner_text(f"#video-verdict-{f}")]
    assert "tiny" in families
    for family in families:
        verdict = page.inner_text(f"#video-verdict-{family}")
        assert "Video score" in verdict and "Most suspicious frame" in verdict, family
        page.locator(f"#video-plot-{family}").scroll_into_view_if_needed()
        page.wait_for_selector(f"#video-plot-{family} canvas, #video-plot-{family} svg", timeout=TIMEOUT_MS)
        page.wait_for_function("f => { const i = document.querySelector('#video-evidence-' + f + ' img');"
                               " return i && i.complete && i.naturalWidth > 0; }", arg=family, timeout=TIMEOUT_MS)
        if family in ("antifake_prompt", "prodet", "vlffd"):  # their numbers come as a chart beside the pictures
            page.locator(f"#video-chart-{family}").scroll_into_view_if_needed()
            page.wait_for_selector(f"#video-chart-{family} canvas, #video-chart-{family} svg", timeout=TIMEOUT_MS)
    assert "Combined verdict" in page.inner_text("#video-combined")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#video").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "video-tab.png"), full_page=True)
    page.locator(f"#video-card-{families[0]}").screenshot(path=str(ARTIFACTS / f"video-card-{families[0]}.png"))
    # Another frame, chosen in the strip: every detector's evidence moves there.
    page.locator("#video-strip").scroll_into_view_if_needed()
    page.locator('#video-strip button[aria-label="Thumbnail 2 of 10"]').click()
    page.wait_for_function("() => /Evidence on frame 2 of 10/.test(document.querySelector('#video-frame')?.innerText"
                           " || '')", timeout=TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "video-frame-2.png"), full_page=True)


def test_a_bad_clip_shows_the_error_on_the_video_tab(page, tmp_path):
    bogus = tmp_path / "holiday.mp4"
    bogus.write_text("this is a text file, not a video")
    page.goto(page.url, timeout=TIMEOUT_MS)  # a fresh session: the video box empty again
    page.wait_for_selector("#analyze-btn", timeout=TIMEOUT_MS)
    page.get_by_role("tab", name="Video").click()
    page.set_input_files("#video input[type=file]", str(bogus))
    page.wait_for_timeout(1000)
    page.click("#video-btn")
    page.wait_for_function("() => /not a video/.test(document.querySelector('#video-status')?.innerText || '')",
                           timeout=TIMEOUT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "video-error.png"), full_page=False)
