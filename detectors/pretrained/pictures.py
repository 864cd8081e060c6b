"""The check pictures: skimage's public-domain photos through timm's eval transform."""
from __future__ import annotations

import numpy as np
import torch


def preprocess_picture(picture: np.ndarray, preprocess: dict) -> torch.Tensor:
    """timm's eval transform: shorter side to size/crop_pct, centre crop, normalise -> (3, S, S)."""
    from PIL import Image

    size = int(preprocess["input_size"])
    scale = int(size / float(preprocess.get("crop_pct", 1.0)))
    img = Image.fromarray(picture).convert("RGB")
    w, h = img.size
    new = (scale, max(scale, int(round(h * scale / w)))) if w <= h else (max(scale, int(round(w * scale / h))), scale)
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[preprocess.get("interpolation", "bicubic")]
    img = img.resize(new, resample)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(preprocess["mean"]).view(3, 1, 1)
    std = torch.tensor(preprocess["std"]).view(3, 1, 1)
    return (x - mean) / std


def chelsea_input(size: int, mean, std) -> torch.Tensor:
    """skimage's public-domain cat photo, resized (bicubic) and centre-cropped to ``size``, normalised."""
    import skimage.data

    return preprocess_picture(skimage.data.chelsea(), {"input_size": size, "crop_pct": 1.0,
                                                       "interpolation": "bicubic", "mean": mean, "std": std})
