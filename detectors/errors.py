"""Errors raised while resolving and loading detector checkpoints."""
from __future__ import annotations


class CheckpointError(RuntimeError):
    """Base of every checkpoint problem; the message names the source and what is wrong."""


class UnknownDetector(CheckpointError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class CheckpointNotFound(CheckpointError):
    pass


class UnsafeCheckpoint(CheckpointError):
    """The source holds only pickle weights, which could run code when loaded."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint belongs to another detector, or its tensors do not fit the model."""


class CheckpointCorrupted(CheckpointError):
    pass
