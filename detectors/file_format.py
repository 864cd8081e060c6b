"""What a Forgery Lens checkpoint folder holds: its file names and format version.

The bottom of the loading layers (timm's order): file format < weight files
(:mod:`detectors.weight_files`) < hub I/O (:mod:`detectors.hub`) < registry
(:mod:`detectors.registry`) < factory (:mod:`detectors.factory`) < the detector base.
Anything that reads or writes a checkpoint takes these names from here.
"""
from __future__ import annotations

CONFIG_FILE = "config.json"
#: The weights in one file, or (sharded, as the Hub and transformers write them) the index below
#: plus ``model-00001-of-0000N.safetensors`` ... that it names.
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
#: Largest weight file written: shards stay under the repo's 20 MB per-file rule (headers included).
MAX_SHARD_BYTES = 16 * 2**20
FORMAT_VERSION = 1
#: Weight files that would unpickle on load: refused, never read.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".tar")
