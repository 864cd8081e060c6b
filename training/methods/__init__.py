"""Per-detector training methods (losses, stages, batch composition), keyed by detector family.

Each module ``training/methods/<family>.py`` defines a :class:`TrainingMethod` subclass
decorated with ``@register_method``; :func:`get_method` imports it on first use.
"""
from .base import MethodOptions, MethodOptionsError, Stage, TrainingMethod, get_method, register_method

__all__ = ["MethodOptions", "MethodOptionsError", "Stage", "TrainingMethod", "get_method", "register_method"]
