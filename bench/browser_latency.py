"""Click-to-evidence latency in a real browser: what a visitor of the page waits for.

    flock /tmp/forgerylens-heavy.lock python -m bench.browser_latency [--runs 8] [--warm-up 2]

Needs Debian's chromium (``/usr/bin/chromium``) and playwright (in the test extras). Starts
``python app.py`` on loopback (1 torch thread, the app's default; the demo detectors), opens
the page headless in a viewport tall enough that no picture loads lazily, uploads the photo,
then for each run clicks Analyze and waits until every card shows new pictures (each run
writes new files, so their addresses change), all decoded, and the combined verdict counts
every detector. The cards are separate events, as in normal use; ``bench/app_latency.py``
times the one-call API. Chromium runs on the same cores as the server here (as on a laptop
that serves a workshop), so this is the pessimistic figure.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.app_server import start_app

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 300_000

SOURCES = "fs => fs.map(f => [...document.querySelectorAll('#card-' + f + ' img')].map(i => i.src).join(' '))"
DONE = """([fs, before]) => fs.every((f, k) => {
    const imgs = [...document.querySelectorAll('#card-' + f + ' img')];
    return imgs.length > 0 && imgs.map(i => i.src).join(' ') !== before[k]
        && imgs.every(i => i.complete && i.naturalWidth > 0);
}) && new RegExp('of ' + fs.length + ' (detectors|say)').test(document.querySelector('#combined')?.innerText || '')"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", default=str(ROOT / "assets" / "examples" / "astronaut.png"))
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--warm-up", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="the app's --threads")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
        return 1
    from playwright.sync_api import sync_playwright

    server = start_app("--no-warm-up", threads=args.threads)
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                            args=FLAGS, viewport={"width": 1500, "height": 7000})
            page = context.new_page()
            page.goto(server.url, timeout=TIMEOUT_MS)
            page.wait_for_selector("#analyze-btn", timeout=TIMEOUT_MS)
            families = [el.get_attribute("id").removeprefix("card-") for el in page.locator("[id^=card-]").all()]
            families = [f for f in families if "Not available" not in page.inner_text(f"#verdict-{f}")]
            page.set_input_files("#photo input[type=file]", args.photo)
            page.wait_for_selector("#faces img", timeout=TIMEOUT_MS)
            times = []
            for run in range(args.warm_up + args.runs):
                before = page.evaluate(SOURCES, families)
                started = time.perf_counter()
                page.click("#analyze-btn")
                page.wait_for_function(DONE, arg=[families, before], timeout=TIMEOUT_MS, polling=20)
                if run >= args.warm_up:
                    times.append(time.perf_counter() - started)
            context.close()
    finally:
        server.stop()
    times.sort()
    print(f"cards: {', '.join(families)}")
    print(f"click to every card's pictures loaded, {args.runs} runs after {args.warm_up} warm-up: median "
          f"{statistics.median(times):.2f} s, p90 {times[int(0.9 * (len(times) - 1))]:.2f} s, "
          f"min {times[0]:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
