"""End-to-end latency of the app: one photo, every demo detector with all its explanations.

    flock /tmp/forgerylens-heavy.lock python -m bench.app_latency [--runs 10] [--warm-up 3]

Starts ``python app.py`` on loopback (1 torch thread, the app's default), measures how long
until it serves (``/config`` answers) and until the first ``analyze`` call returns, then times
``--runs`` calls of ``analyze`` after ``--warm-up`` calls. The headline is what a browser user
waits for: the JSON with links to the pictures, then the pictures over 6 parallel connections
(a browser's per-host limit). Also printed: gradio_client with its default downloads (one file
at a time, a new connection and a hash each: client-side cost, the server sends all 15 pictures
in ~0.1 s), the time inside the server, each detector's median time, and the server's peak
resident memory (VmHWM). ``bench/browser_latency.py`` times the page itself in Chromium.
Targets (issue 10): median <= 1.5 s, ready <= 20 s, peak <= 3 GB.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from tests.app_server import start_app

ROOT = Path(__file__).resolve().parent.parent


def proc_memory(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def fetch_all(urls: list[str], connections: int = 6) -> int:
    """Download every URL over ``connections`` parallel connections (a browser's per-host limit);
    returns the bytes read."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def fetch(url: str) -> int:
        with urllib.request.urlopen(url, timeout=60) as response:
            return len(response.read())

    with ThreadPoolExecutor(connections) as pool:
        return sum(pool.map(fetch, urls))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", default=str(ROOT / "assets" / "examples" / "astronaut.png"))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warm-up", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="the app's --threads")
    p.add_argument("--families", default="", help="comma-separated families (default: all in the build)")
    p.add_argument("--with-test-detector", action="store_true")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    from gradio_client import Client, handle_file

    extra = ["--no-warm-up"] + (["--families", args.families] if args.families else [])
    extra += ["--with-test-detector"] if args.with_test_detector else []
    server = start_app(*extra, threads=args.threads)
    try:
        client = Client(server.url, verbose=False)
        t0 = time.perf_counter()
        result, _ = client.predict(handle_file(args.photo), api_name="/analyze")
        first = time.perf_counter() - t0
        ran = [d for d in result["detectors"] if d["status"] == "ok"]
        missing = [f"{d['family']} ({d['status']}: {d['message']})" for d in result["detectors"] if d["status"] != "ok"]
        for _ in range(max(0, args.warm_up - 1)):
            client.predict(handle_file(args.photo), api_name="/analyze")
        # As a browser sees it: the JSON with image links, then the pictures over 6 parallel connections.
        links = Client(server.url, verbose=False, download_files=False)
        browser_like, no_download, server_times, per = [], [], [], {d["family"]: [] for d in ran}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result, linked = links.predict(handle_file(args.photo), api_name="/analyze")
            no_download.append(time.perf_counter() - t0)
            fetch_all([item["image"]["url"] for item in linked])
            browser_like.append(time.perf_counter() - t0)
            server_times.append(result.get("seconds", float("nan")))
            for d in result["detectors"]:
                if d["family"] in per:
                    per[d["family"]].append(d["seconds"])
        python_client = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            _, gallery = client.predict(handle_file(args.photo), api_name="/analyze")
            python_client.append(time.perf_counter() - t0)
        peak = proc_memory(server.process.pid, "VmHWM")
        rss = proc_memory(server.process.pid, "VmRSS")
    finally:
        server.stop()
    browser_like.sort()
    figures = {
        "detectors": [d["family"] for d in ran], "missing": missing, "runs": args.runs, "threads": args.threads,
        "ready_s": round(server.ready_seconds, 2), "first_analyze_s": round(first, 2),
        "median_browser_like_s": round(statistics.median(browser_like), 3),
        "p90_browser_like_s": round(browser_like[int(0.9 * (len(browser_like) - 1))], 3),
        "median_without_image_downloads_s": round(statistics.median(no_download), 3),
        "median_python_client_s": round(statistics.median(python_client), 3),
        "median_server_s": round(statistics.median(server_times), 3),
        "per_detector_median_s": {k: round(statistics.median(v), 3) for k, v in per.items()},
        "explanation_images": len(gallery), "peak_rss_mb": round(peak / 2**20), "rss_after_mb": round(rss / 2**20),
    }
    print(f"detectors run: {', '.join(figures['detectors']) or 'none'}")
    for m in missing:
        print(f"  not run: {m}")
    print(f"app ready (HTTP) after start: {figures['ready_s']:.1f} s; first analyze returned after "
          f"{figures['first_analyze_s']:.1f} s")
    print(f"analyze latency as a browser sees it, {args.runs} runs after {args.warm_up} warm-up: median "
          f"{figures['median_browser_like_s']:.2f} s, p90 {figures['p90_browser_like_s']:.2f} s (JSON with links "
          f"{figures['median_without_image_downloads_s']:.2f} s, then {figures['explanation_images']} pictures over "
          f"6 connections)")
    print(f"  inside the server: median {figures['median_server_s']:.2f} s; gradio_client downloading the pictures "
          f"one by one: median {figures['median_python_client_s']:.2f} s")
    for k, v in figures["per_detector_median_s"].items():
        print(f"  {k}: {v:.3f} s (model + explanations)")
    print(f"server peak memory (VmHWM): {figures['peak_rss_mb']} MiB; after: {figures['rss_after_mb']} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
