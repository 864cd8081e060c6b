"""Typed, plain-spoken errors of the face pipeline.

Each message is written for a workshop participant, not for a developer: it says what went
wrong with *their* picture and what to try instead.
"""
from __future__ import annotations


class FaceError(ValueError):
    """Base of every error the face pipeline raises on bad input."""


class ImageUnreadable(FaceError):
    def __init__(self, detail: str = "") -> None:
        msg = "This file could not be read as an image. Please upload a JPEG, PNG, WebP, BMP, GIF or TIFF photo."
        super().__init__(f"{msg} ({detail})" if detail else msg)


class ImageTooLarge(FaceError):
    def __init__(self, pixels: int, limit: int) -> None:
        super().__init__(
            f"This image is too large to open safely ({pixels / 1e6:.0f} megapixels; the limit is "
            f"{limit / 1e6:.0f}). Please upload a smaller photo."
        )
        self.pixels, self.limit = pixels, limit


class NoFaceFound(FaceError):
    def __init__(self, detail: str = "") -> None:
        msg = "No face was found in this picture. Try a photo where one face looks towards the camera, well lit and not too small."
        super().__init__(f"{msg} ({detail})" if detail else msg)
