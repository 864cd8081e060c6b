"""What a Forgery Lens checkpoint folder holds: its file names and format version.

The bottom of the loading layers (timm's order): file format < hub I/O (:mod:`detectors.hub`)
< registry (:mod:`detectors.registry`) < factory (:mod:`detectors.factory`) < the detector base.
Anything that reads or writes a checkpoint takes these names from here.
"""
from __future__ import annotations

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
#: Weight files that would unpickle on load: refused, never read.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".tar")
