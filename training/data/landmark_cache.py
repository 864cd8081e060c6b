"""Landmarks of every image in a pool, computed once and cached on disk by file content.

Face mesh costs ~30 ms per image on two cores; training epochs must not pay it again. The
cache holds one ``.npy`` per file content hash (sha1 of the bytes) with the 478 landmarks of
the largest face in the coordinates of :func:`detectors.faces.load_image`'s output, or an
empty ``(0, 2)`` array when no face was found (so misses are not retried either).

Cache folder: ``$FORGERY_LENS_CACHE`` or ``~/.cache/forgery-lens``, sub-folder ``landmarks``.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def cache_dir() -> Path:
    root = os.environ.get("FORGERY_LENS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "forgery-lens")
    return Path(root)


def file_hash(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class LandmarkCache:
    """Disk cache ``content hash -> (478, 2) float32 landmarks`` (``None`` when no face)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "landmarks"

    def _file(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.npy"

    def lookup(self, digest: str) -> tuple[bool, np.ndarray | None]:
        """``(known, landmarks)``: known is False when this content was never analysed."""
        f = self._file(digest)
        if not f.is_file():
            return False, None
        pts = np.load(f)
        return True, (pts.astype(np.float32) if len(pts) else None)

    def store(self, digest: str, landmarks: np.ndarray | None) -> None:
        f = self._file(digest)
        f.parent.mkdir(parents=True, exist_ok=True)
        arr = np.zeros((0, 2), np.float32) if landmarks is None else np.asarray(landmarks, np.float32)
        tmp = f.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        os.replace(tmp, f)

    def get(self, path: str | Path, image: np.ndarray | None = None) -> np.ndarray | None:
        """Landmarks of the largest face in ``path`` (detected now and cached if unknown)."""
        digest = file_hash(path)
        known, pts = self.lookup(digest)
        if known:
            return pts
        pts = detect_landmarks(image if image is not None else _load(path))
        self.store(digest, pts)
        return pts

    def get_many(self, paths: Iterable[str | Path], desc: str = "face landmarks") -> list[np.ndarray | None]:
        """Landmarks for all ``paths``; unknown files go through face mesh with a progress bar."""
        paths = [Path(p) for p in paths]
        digests = [file_hash(p) for p in paths]
        found: dict[str, np.ndarray | None] = {}
        todo: dict[str, Path] = {}  # one face-mesh run per distinct content
        for p, d in zip(paths, digests):
            if d in found or d in todo:
                continue
            known, pts = self.lookup(d)
            if known:
                found[d] = pts
            else:
                todo[d] = p
        if todo:
            from tqdm import tqdm

            for d, p in tqdm(todo.items(), desc=f"{desc} (cached in {self.root})", unit="img"):
                found[d] = detect_landmarks(_load(p))
                self.store(d, found[d])
        out = [found[d] for d in digests]
        return out


def _load(path: str | Path) -> np.ndarray:
    from detectors.faces import load_image

    return load_image(path)


def detect_landmarks(image: np.ndarray) -> np.ndarray | None:
    """Landmarks of the largest face, or ``None``."""
    from detectors.faces import NoFaceFound, detect_faces

    try:
        return detect_faces(image)[0].landmarks.astype(np.float32)
    except NoFaceFound:
        return None


if __name__ == "__main__":  # warm the cache for a folder: python -m training.data.landmark_cache DIR
    import sys

    import torch

    torch.set_num_threads(2)
    folder = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[2].parent / "shared/data/ffhq128-real")
    res = LandmarkCache().get_many(list_images(folder))
    print(f"{sum(r is not None for r in res)}/{len(res)} faces found")
