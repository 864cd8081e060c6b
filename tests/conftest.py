"""Shared fixtures: quiet offline environment, small thread count, the shared face data."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
REAL_POOL = SHARED_DATA / "ffhq128-real"


def pytest_collection_modifyitems(config, items):
    if not REAL_POOL.is_dir():
        skip = pytest.mark.skip(reason=f"needs the shared face data at {SHARED_DATA}")
        for item in items:
            if "needs_data" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A public-domain portrait (skimage), 512x512 RGB."""
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def real_faces() -> list[Path]:
    """The first 24 files of the shared real pool (tests marked ``needs_data`` only)."""
    return sorted(REAL_POOL.glob("*.png"))[:24]
