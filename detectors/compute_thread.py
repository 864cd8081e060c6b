"""One thread for every model call of a server process.

PyTorch's CPU kernels run on OpenMP (libgomp), which gives each thread that starts a parallel
region a team of worker threads of its own. Once a second thread has a team, the teams together
outnumber the cores and libgomp stops spin-waiting: every parallel op then pays a sleep and a
wake-up. On a 2-core machine the same model ran 2-3x slower from a Gradio worker thread than
from the thread that used torch first (`bench/thread_teams.py` shows it on single ops,
`bench/app_latency.py` on the app). Sending all model work to one long-lived thread keeps a
single team, whichever request thread asks.

:func:`start` turns it on (the app does, before loading models); until then :func:`run` calls
the function in place, which is what scripts and tests that use torch from one thread want.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_local = threading.local()


def _mark_compute_thread() -> None:
    _local.is_compute_thread = True


def start() -> None:
    """Route :func:`run` through the compute thread from now on (idempotent)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compute",
                                           initializer=_mark_compute_thread)


def stop() -> None:
    """Back to calling in place (after the work already sent has finished)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)


def started() -> bool:
    return _executor is not None


def run(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` on the compute thread once :func:`start` was called (in place
    before, or when already on it); its exception is raised here."""
    executor = _executor
    if executor is None or getattr(_local, "is_compute_thread", False):
        return fn(*args, **kwargs)
    return executor.submit(fn, *args, **kwargs).result()
