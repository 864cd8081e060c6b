"""Files the app receives and serves: upload paths, the janitor that deletes them, picture files.

Uploads are deleted ``grace`` seconds after the request that used them, and never while a
queued request still refers to them (identical files share one cache path, see
:class:`Janitor`). Pictures the app makes are written as files of their own (:class:`Pictures`).
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np
from PIL import Image

from detectors.faces import FaceError

log = logging.getLogger("forgery_lens.app")

#: Seconds the app keeps its own copy of a picture it made (Gradio serves its cached copy).
PICTURE_GRACE = 120.0


def upload_path(payload: Any) -> str | None:
    """The file behind a raw ``gr.Image`` payload (events run with ``preprocess=False``)."""
    if payload is None:
        return None
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "path", None)


def display_image(image, min_side: int = 256):
    """Small crops (a 64 px test model's) are enlarged so they read on the page."""
    h, w = image.shape[:2]
    if max(h, w) >= min_side:
        return image
    scale = min_side / max(h, w)
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)


def existing_upload(path: str | None, missing: str) -> str:
    """The upload's path, or a clear error when none was sent or it was already deleted."""
    if path is None:
        raise FaceError(missing)
    if not Path(path).is_file():
        raise FaceError("This photo is no longer on the server: uploads are deleted shortly after they are "
                        "analysed. Please upload it again.")
    return path


class Janitor:
    """Deletes uploads and the app's own picture files ``grace`` seconds after their last use.

    Gradio stores uploads by content hash, so two visitors sending the same file share one
    path: deleting it could pull it from under a queued identical request. So a due file that a
    request still waiting in the queue (or running) refers to (``busy()``) waits another grace
    period. Examples and files outside the upload cache are never touched by :meth:`used`.
    Only the files themselves are deleted, and an upload's own content-hash folder once empty;
    never a folder the app keeps writing into. Tests inject ``clock`` and ``upload_root`` and
    call :meth:`sweep` themselves (``background=False``).
    """

    def __init__(self, keep: Callable[[], set[str]], grace: float, busy: Callable[[], set[str]] = lambda: set(),
                 clock: Callable[[], float] = time.monotonic, upload_root: Callable[[], str] | None = None,
                 background: bool = True) -> None:
        self._keep = keep
        self._background = background
        self._busy = busy
        self._grace = grace
        self._clock = clock
        self._upload_root = upload_root or gr.utils.get_upload_folder
        self._seen: dict[Path, float] = {}  # path -> when to delete it
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._seen)

    def used(self, path: str | None) -> None:
        """An upload was used: delete it after the grace period (only if it is in the upload cache)."""
        if not path:
            return
        p = Path(path).resolve()
        if self._root() not in p.parents or str(path) in self._keep() or str(p) in self._keep():
            return
        self.later(p)

    def later(self, p: Path, grace: float | None = None) -> None:
        with self._lock:
            self._seen[Path(p)] = self._clock() + (grace if grace is not None else self._grace)
            if self._background and self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="upload-janitor", daemon=True)
                self._thread.start()

    def sweep(self, now: float | None = None) -> int:
        """Delete every file whose time has come; returns how many were deleted."""
        now = self._clock() if now is None else now
        with self._lock:
            due = [p for p, deadline in self._seen.items() if now >= deadline]
        if due:
            busy = {Path(b).resolve() for b in self._busy()}
            waiting = [p for p in due if p in busy]
            due = [p for p in due if p not in busy]
            with self._lock:
                for p in due:
                    del self._seen[p]
                for p in waiting:
                    self._seen[p] = now + self._grace
        root = self._root()
        for p in due:
            try:
                p.unlink(missing_ok=True)
                if p.parent.parent == root:  # Gradio's per-upload content-hash folder
                    p.parent.rmdir()
            except OSError:
                pass
        return len(due)

    def _root(self) -> Path:
        return Path(self._upload_root()).resolve()

    def _loop(self) -> None:
        while True:
            time.sleep(max(0.5, min(10.0, self._grace / 4)))
            try:
                self.sweep()
            except Exception:  # the janitor must outlive any one bad file
                log.exception("janitor sweep failed")


class Pictures:
    """Output pictures as files of their own (PNG, unique names), deleted after ``grace`` seconds.

    Gradio copies returned files into its cache atomically; arrays it would write itself into
    one content-hashed path, which identical results of concurrent requests (a room clicking
    the same example) overwrite while another request is still downloading it. The folder is
    (re)made on every write, so nothing that empties or removes it (a tmp cleaner) stops the app.
    """

    def __init__(self, janitor: Janitor, grace: float = PICTURE_GRACE) -> None:
        self.janitor = janitor
        self.grace = grace
        self.folder = Path(tempfile.mkdtemp(prefix="forgery-lens-pictures-"))

    def __call__(self, image: np.ndarray | None, min_side: int = 0) -> str | None:
        if image is None:
            return None
        if min_side:
            image = display_image(image, min_side)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{uuid.uuid4().hex}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path, compress_level=1)
        self.janitor.later(path, self.grace)  # Gradio has copied it into its cache long before
        return str(path)


def queued_files(demo: gr.Blocks) -> set[str]:
    """Paths of the files that requests waiting in (or running from) Gradio's queue refer to.

    Reads the queue's internals (``Blocks._queue``); if they change shape, nothing is reported
    and the janitor falls back to its grace period alone.
    """
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("path"), str):
                found.add(value["path"])
            for v in value.values():
                collect(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    try:
        queue = demo._queue
        events = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
        events += [e for job in list(queue.active_jobs) if job for e in job]
        for event in events:
            body = getattr(event, "data", None)
            collect(getattr(body, "data", None))
    except (AttributeError, TypeError, RuntimeError):
        return set()
    return found


def keep_set(demo: gr.Blocks) -> set[str]:
    """Files Gradio keeps in its cache on purpose (examples, default values)."""
    keep: set[str] = set()
    for block in list(demo.blocks.values()):
        keep.update(getattr(block, "keep_in_cache", set()))
    return keep
