"""Model calls go to one thread once the app turns it on."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from detectors import compute_thread


@pytest.fixture
def started():
    compute_thread.start()
    yield
    compute_thread.stop()


def test_runs_in_place_until_started():
    assert not compute_thread.started()
    assert compute_thread.run(threading.get_ident) == threading.get_ident()


def test_calls_from_many_threads_share_one_thread(started):
    with ThreadPoolExecutor(4) as pool:
        idents = set(pool.map(lambda _: compute_thread.run(threading.get_ident), range(16)))
    assert len(idents) == 1 and threading.get_ident() not in idents


def test_errors_reach_the_caller_and_the_thread_keeps_serving(started):
    def fail():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        compute_thread.run(fail)
    assert compute_thread.run(lambda a, b=0: a + b, 2, b=3) == 5


def test_a_call_made_on_the_compute_thread_does_not_wait_for_itself(started):
    def outer():
        return compute_thread.run(threading.get_ident) == threading.get_ident()

    assert compute_thread.run(outer) is True


def test_the_app_analyses_on_the_compute_thread(started, astronaut, monkeypatch):
    import pipeline
    from pipeline import running

    seen = []
    original = running._decide
    monkeypatch.setattr(running, "_decide", lambda *a: (seen.append(threading.get_ident()), original(*a))[1])
    analyzer = pipeline.Analyzer(include_test=True, families=["tiny"])
    result = analyzer.run_one("tiny", pipeline.prepare(astronaut))
    assert result.ok, result.message
    assert seen and seen[0] != threading.get_ident()
