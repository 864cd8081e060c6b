"""Start ``python app.py`` on a free loopback port in a subprocess and wait until it serves.

Used by the app, browser and load tests and by ``bench/app_latency.py``.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    process: subprocess.Popen
    url: str
    ready_seconds: float
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_app(*args: str, env: dict[str, str] | None = None, timeout: float = 180.0, log_path: Path | None = None,
              threads: int = 1) -> AppServer:
    """Run ``app.py --host 127.0.0.1 --port <free> *args``; return once ``/config`` answers."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1",
                **(env or {})}
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"forgery-lens-app-{port}.log"
    started = time.perf_counter()
    with open(log_path, "w") as out:  # the app writes to its own copy of the file descriptor
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                                 "--threads", str(threads), *args], cwd=ROOT, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = AppServer(proc, url, 0.0, log_path)
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/config", timeout=2) as response:
                if response.status == 200:
                    server.ready_seconds = time.perf_counter() - started
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"app not ready after {timeout} s:\n{server.log()[-3000:]}")
