"""Forgery Lens detectors: the shared base, the registry, checkpoint loading and the faces.

Detector modules are imported on first use of the registry, not here, so ``import detectors``
stays cheap.
"""
from .base import Detector
from .config import DetectorConfig
from .errors import (
    CheckpointCorrupted,
    CheckpointError,
    CheckpointMismatch,
    CheckpointNotFound,
    UnknownDetector,
    UnsafeCheckpoint,
)
from .factory import build_detector, create_detector
from .registry import get_entry, get_family, list_detectors, list_families, register_detector
from .verdict import Verdict

__all__ = [
    "CheckpointCorrupted", "CheckpointError", "CheckpointMismatch", "CheckpointNotFound", "Detector",
    "DetectorConfig", "UnknownDetector", "UnsafeCheckpoint", "Verdict", "build_detector", "create_detector",
    "get_entry", "get_family", "list_detectors", "list_families", "register_detector",
]
