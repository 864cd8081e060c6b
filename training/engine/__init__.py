"""The training engine: recipe-driven loop (:class:`Trainer`), resumable state, logs and curves."""
from .data import build_dataset
from .loop import Progress, Trainer, predict_dataset

__all__ = ["Progress", "Trainer", "build_dataset", "predict_dataset"]
