"""A small DeepFakes-style face autoencoder: one shared encoder, one decoder per up-sampling kind.

DeepFakes trains a shared encoder with a decoder per identity and swaps decoders at test time.
With one pool of unrelated faces we keep the shared encoder and give every decoder the same
job (reconstruct the face) but a different up-sampling operator: transposed convolution,
nearest-neighbour + conv and pixel shuffle. Each leaves its own generative trace (checkerboard,
blockiness, sub-pixel periodicity), which is what the ``ae`` forgery kind is for; a narrow
spatial bottleneck makes the decoders synthesise rather than copy detail. The decoded face is
blended back into the target by :mod:`training.data.forgery`.

Weights ship as ``assets/forgery/autoencoder/{config.json, model.safetensors}``; train them with
``python -m training train-ae``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "assets" / "forgery" / "autoencoder"
UPSAMPLERS = ("transpose", "nearest", "pixelshuffle", "bilinear")


@dataclass
class AutoencoderConfig:
    size: int = 128  # side of the aligned crop it reads and writes
    crop_margin: float = 1.3
    width: int = 24
    latent: int = 16  # channels of the 16x16 bottleneck (narrow: the decoder must synthesise)
    decoders: tuple[str, ...] = ("transpose", "nearest", "pixelshuffle")
    extra: dict = field(default_factory=dict)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


def _up(kind: str, cin: int, cout: int) -> nn.Module:
    if kind == "transpose":
        return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), _act())
    if kind in ("nearest", "bilinear"):
        up = nn.Upsample(scale_factor=2, mode=kind, **({} if kind == "nearest" else {"align_corners": False}))
        return nn.Sequential(up, nn.Conv2d(cin, cout, 3, padding=1), _act())
    if kind == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.PixelShuffle(2), _act())
    raise ValueError(f"unknown up-sampling kind {kind!r}; choose from {UPSAMPLERS}")


class Decoder(nn.Module):
    def __init__(self, kind: str, width: int, latent: int) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(latent, 4 * w, 3, padding=1), _act(),
            _up(kind, 4 * w, 2 * w), nn.Conv2d(2 * w, 2 * w, 3, padding=1), _act(),  # 32
            _up(kind, 2 * w, w), nn.Conv2d(w, w, 3, padding=1), _act(),  # 64
            _up(kind, w, w // 2),  # 128
            nn.Conv2d(w // 2, 3, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(z))


class FaceAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AutoencoderConfig()
        w, z = self.config.width, self.config.latent
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w // 2, 3, padding=1), _act(),
            nn.Conv2d(w // 2, w, 4, stride=2, padding=1), _act(),  # 64
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), _act(),  # 32
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), _act(),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), _act(),  # 16
            nn.Conv2d(4 * w, z, 3, padding=1),
        )
        self.decoders = nn.ModuleDict({k: Decoder(k, w, z) for k in self.config.decoders})

    def forward(self, x: torch.Tensor, decoder: str) -> torch.Tensor:
        """``x`` (B, 3, size, size) in [0, 1] -> reconstruction in [0, 1] by ``decoder``."""
        return self.decoders[decoder](self.encoder(x))

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))

    @classmethod
    def load(cls, folder: str | Path = DEFAULT_DIR) -> FaceAutoencoder:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"no autoencoder weights in {folder}; train them with `python -m training train-ae --out {folder}`")
        data = json.loads((folder / "config.json").read_text())
        data["decoders"] = tuple(data.get("decoders", AutoencoderConfig.decoders))
        model = cls(AutoencoderConfig(**data))
        model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        return model.eval()


_LOADED: dict[str, FaceAutoencoder] = {}


def get_autoencoder(folder: str | Path | None = None) -> FaceAutoencoder:
    """The autoencoder in ``folder`` (default: the shipped one), loaded once per process."""
    key = str(Path(folder or DEFAULT_DIR).resolve())
    if key not in _LOADED:
        _LOADED[key] = FaceAutoencoder.load(key)
    return _LOADED[key]
