"""Read any image a user may upload into an RGB ``uint8`` array of a workable size."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, ImageUnreadable

#: Images above this many pixels are refused before decoding (decompression-bomb guard).
MAX_PIXELS = 80_000_000
#: Longest side kept for face analysis; larger photos are downscaled to it.
WORKING_SIZE = 1600

ImageSource = str | Path | bytes | np.ndarray | Image.Image


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    try:
        if isinstance(source, bytes):
            data = source
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageUnreadable(f"no file at {path.name!r}")
            data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_size(img.size)
            img.load()
        return img
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(_pixels_from_message(str(exc)), MAX_PIXELS) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, ImageUnreadable):
            raise
        raise ImageUnreadable(type(exc).__name__) from None


def _pixels_from_message(message: str) -> int:
    digits = [int(t) for t in message.replace("(", " ").replace(")", " ").split() if t.isdigit()]
    return max(digits) if digits else MAX_PIXELS + 1


def _check_size(size: tuple[int, int]) -> None:
    pixels = int(size[0]) * int(size[1])
    if pixels > MAX_PIXELS:
        raise ImageTooLarge(pixels, MAX_PIXELS)


def _from_array(array: np.ndarray) -> Image.Image:
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageUnreadable(f"array of shape {arr.shape}")
    _check_size((arr.shape[1], arr.shape[0]))
    if arr.dtype != np.uint8:
        arr = _to_uint8(arr)
    return Image.fromarray(arr)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if np.issubdtype(arr.dtype, np.floating):
        scale = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0 / 255.0
        return (np.clip(np.nan_to_num(arr) * scale, 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.dtype == np.uint16 or arr.max(initial=0) > 255:
        return (arr.astype(np.float64) / 65535.0 * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return arr.clip(0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return np.stack([_to_uint8(np.asarray(img))] * 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def load_image(source: ImageSource, working_size: int = WORKING_SIZE) -> np.ndarray:
    """Decode ``source`` into an ``(H, W, 3)`` RGB ``uint8`` array.

    Applies the EXIF orientation, takes the first frame of animations, composites transparency
    on white, maps 16-bit and CMYK to 8-bit RGB, and downscales the longest side to
    ``working_size``. Raises :class:`ImageUnreadable` or :class:`ImageTooLarge`.
    """
    img = _open(source)
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        img = ImageOps.exif_transpose(img) or img
        rgb = _to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageUnreadable(type(exc).__name__) from None
    h, w = rgb.shape[:2]
    if max(h, w) > working_size:
        scale = working_size / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    return np.ascontiguousarray(rgb)
