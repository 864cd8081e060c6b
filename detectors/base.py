"""The contract every detector follows: config in, dict out, Hub save/load for free.

A detector is an ``nn.Module`` and a ``PyTorchModelHubMixin``. Subclasses set ``family``,
``display_name``, ``paper`` (and ``serial`` when it must run alone) and ``config_class``, build
layers from their config in ``__init__``, and implement :meth:`forward` returning at least
``logits`` (B, 2), ``prob_fake`` (B,), ``features`` (B, D) and an ``aux`` dict of
method-specific artifacts for the explainers. Defining a subclass with a ``family`` registers
that family's facts (:func:`detectors.registry.register_family`): the class is their one home.
Optional hooks (``reshape_transform``, ``side_files`` / :meth:`Detector.load_side_files`) are
declared here with do-nothing defaults.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .config import DetectorConfig
from .faces import AlignedFace, Face, align_face, detect_faces, load_image
from .faces.io import ImageSource
from .factory import load_checkpoint
from .file_format import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE
from .registry import register_family
from .verdict import Verdict
from .weight_files import write_state

__all__ = ["CONFIG_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "Decision", "Detector"]  # file names: file_format's


class Decision(NamedTuple):
    """One face through a detector (:meth:`Detector.decide_face`): the crop, the model input, the
    forward output (which the explainers read) and the verdict."""

    aligned: AlignedFace
    x: torch.Tensor
    out: dict[str, Any]
    verdict: Verdict


class Detector(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="forgery-lens",
    tags=["deepfake-detection", "face-forgery-detection", "forgery-lens"],
    pipeline_tag="image-classification",
):
    family: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: Runs one request at a time (a model too large to share the CPU with the others).
    serial: ClassVar[bool] = False
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: Files saved beside the weights (e.g. a tokenizer); the loader fetches them from the same
    #: source and hands their folder to :meth:`load_side_files`.
    side_files: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("family"):  # the class that declares a family, not its subclasses
            register_family(cls)

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.source = "random"

    # ---- the model -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def target_layers(self) -> list[nn.Module]:
        """Layers Grad-CAM should hook (the last spatial block of the deciding stream)."""
        raise NotImplementedError

    #: Turns a hooked layer's activations into (B, C, H, W); ViTs set a token-to-grid reshape.
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def load_side_files(self, folder: Path) -> None:
        """Read this family's :attr:`side_files` from ``folder`` (nothing to read by default)."""

    @staticmethod
    def outputs(logits: torch.Tensor, features: torch.Tensor, **aux: Any) -> dict[str, Any]:
        """The standard forward dict from two-class logits."""
        return {"logits": logits, "prob_fake": logits.float().softmax(-1)[:, 1], "features": features, "aux": aux}

    # ---- faces in, verdicts out --------------------------------------------------------------
    def crop(self, image: np.ndarray, face: Face) -> AlignedFace:
        return align_face(image, face, self.config.crop_policy)

    def preprocess(self, face: AlignedFace | np.ndarray) -> torch.Tensor:
        """A (1, 3, S, S) float tensor, resized to the input size and normalised."""
        crop = face.image if isinstance(face, AlignedFace) else np.asarray(face)
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255.0
        size = self.config.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.config.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.config.std).view(1, -1, 1, 1)
        return ((x - mean) / std).to(self._device())

    def _device(self) -> torch.device:
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def fake_probability(self, x: torch.Tensor) -> torch.Tensor:
        """P(fake) for a batch, when nothing will be explained (video frames, batch runs). The
        same values as ``forward``'s ``prob_fake``; a detector may skip work done only for its
        explanations."""
        return self(x)["prob_fake"]

    @torch.no_grad()
    def decide_face(self, rgb: np.ndarray, face: Face, face_index: int = 0, n_faces: int = 1) -> Decision:
        """Crop ``face`` by this detector's policy, run the model in eval mode, build the
        :class:`Verdict`: the one inference path, shared by :meth:`predict` and the app's pipeline
        (which explains the same forward output instead of running the model twice)."""
        aligned = self.crop(rgb, face)
        x = self.preprocess(aligned)
        was_training = self.training
        self.eval()
        try:
            out = self(x)
        finally:
            self.train(was_training)
        verdict = Verdict(self.config.name, float(out["prob_fake"][0]), float(self.config.threshold), self.source,
                          aligned.image, face_index=face_index, n_faces=n_faces)
        return Decision(aligned, x, out, verdict)

    def predict(self, image: ImageSource, face: Face | None = None, faces: list[Face] | None = None) -> Verdict:
        """Find the largest face (or use ``face``), crop it by this detector's policy, decide."""
        rgb = load_image(image)
        if face is None:
            faces = faces or detect_faces(rgb)
            face = faces[0]
        n = len(faces) if faces else 1
        index = faces.index(face) if faces and face in faces else 0
        return self.decide_face(rgb, face, index, n).verdict

    # ---- Hub format --------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        """``config.json`` and the weights: ``model.safetensors``, or shards + index past
        :data:`~detectors.file_format.MAX_SHARD_BYTES` (:func:`~detectors.weight_files.write_state`);
        shared tensors are stored once each."""
        state = {k: v.detach().contiguous().clone() for k, v in self.state_dict().items()}
        write_state(state, save_directory, metadata={"format": "pt"})
        meta = {"detector_family": self.family, "format_version": FORMAT_VERSION}
        (save_directory / CONFIG_FILE).write_text(json.dumps({**meta, **self.config.to_dict()}, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        **_: Any) -> Detector:
        """Load a checkpoint of this family from a folder or ``org/repo`` (safetensors only)."""
        source = str(pretrained_model_name_or_path)
        if revision and not Path(source).exists():
            source = f"{source}@{revision}"
        return load_checkpoint(source, expected_family=cls.family or None)
