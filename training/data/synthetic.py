"""The synthetic-forgery data set: real faces from a pool plus forgeries drawn on the fly.

- Split: a file is in ``val`` when a hash of its name falls below ``val_fraction``; ``all``
  takes every file.
- Determinism: ``val``/``all`` items are fixed per ``(seed, index)`` so validation AUC is
  comparable between epochs; ``train`` items are fresh per epoch, seeded by
  ``(seed, epoch, index)`` (call :meth:`set_epoch` before each epoch).
- Kinds: ``kinds`` is a mix ratio (``{real: 0.5, sbi: 0.25, donor: 0.25}``). With
  ``cycle_kinds`` item ``i`` gets ``kinds[i % K]``: any run of ``K * n`` consecutive items
  (a batch with ``shuffle=False``) holds ``n`` of each kind; the data set shuffles the images
  itself per epoch, so use ``shuffle=False`` then (:attr:`ordered` is True).
- Pairs: with ``paired`` (training split only) each face of an epoch gives two adjacent items,
  itself (even index) and one forgery of it (odd index, its kind drawn from the mix without
  ``real``, or cycled with ``cycle_kinds``), so a batch holds faces beside their own forgeries
  as SBI's and ProDet's training batches do; ``real``'s share of the mix is then one half.
  Validation keeps one item per face, so its AUC stays comparable across recipes.
- Forgery options: ``forgery_options`` passes keyword options to one kind's generator
  (``{ae: {whole_frame_p: 0.5}}``, see :mod:`training.data.forgery`).
- GAN faces: the ``gan`` kind is not made here but read from ``gan_pool`` (a folder of whole
  faces a GAN made elsewhere, e.g. ``../shared/data/gan-train``), split by the same file-name
  hash as the real pool and aligned with the same crop policy; mask all ones (every pixel was
  generated). Item ``i`` of kind ``gan`` takes a GAN face drawn by the item's own rng.
- Faces are aligned with the detector's crop policy from cached landmarks; files without a face
  are left out of the pool (counted in :attr:`no_face_count`).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.faces import load_image

from . import kinds
from .augment import AugmentConfig
from .donors import nearest_neighbours
from .forgery import DEFAULT_REGIONS, GENERATORS, Forgery, make_forgery
from .items import crop_face, in_val_split, make_item
from .landmark_cache import LandmarkCache, list_images
from .sentences import WHOLE_FACE_SENTENCES, region_vector

_VAL_STREAM = 0x7A11  # separates val/all draws from train draws of epoch 0


def check_forgery_options(options: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Per-kind keyword options for the forgery generators (e.g. ``{"ae": {"whole_frame_p": 0.5}}``),
    checked against each generator's signature so a typo fails before training starts."""
    options = {str(k): dict(v or {}) for k, v in (options or {}).items()}
    for kind, opts in options.items():
        if kind not in GENERATORS:
            raise ValueError(f"forgery_options: unknown kind {kind!r}; choose from {sorted(GENERATORS)}")
        accepted = [n for n, p in inspect.signature(GENERATORS[kind]).parameters.items()
                    if p.kind is p.POSITIONAL_OR_KEYWORD and n not in ("image", "landmarks", "rng", "regions",
                                                                      "donors", "model", "ae_weights")]
        unknown = sorted(set(opts) - set(accepted))
        if unknown:
            raise ValueError(f"forgery_options.{kind}: unknown option(s) {unknown}; "
                             f"accepted: {accepted or 'none'}")
    return options


class SyntheticForgeries(torch.utils.data.Dataset):
    def __init__(self, pool: str | Path, detector_config: Any, split: str = "train", seed: int = 0,
                 kinds_mix: dict[str, float] | None = None, cycle_kinds: bool = False,
                 regions: list[str] | None = None, augment: Any = None, ae_weights: str | None = None,
                 limit: int | None = None, val_fraction: float = 0.1, donor_k: int = 20,
                 forgery_options: dict[str, dict[str, Any]] | None = None,
                 gan_pool: str | Path | None = None, paired: bool = False) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be train, val or all, not {split!r}")
        self.config = detector_config
        self.policy = detector_config.crop_policy
        self.split, self.seed, self.epoch = split, int(seed), 0
        mix = {k: float(v) for k, v in (kinds_mix or {"real": 0.5, "sbi": 0.25, "donor": 0.25}).items() if float(v) > 0}
        unknown = sorted(set(mix) - set(kinds.KIND_CODES))
        if unknown:
            raise ValueError(f"unknown kind(s) {unknown}; choose from {sorted(kinds.KIND_CODES)}")
        self.kind_names = list(mix)
        total = sum(mix.values())
        self.kind_probs = np.array([mix[k] / total for k in self.kind_names])
        self.cycle_kinds = bool(cycle_kinds)
        self.paired = bool(paired) and split == "train"
        self.fake_kinds = [k for k in self.kind_names if k != "real"]
        if self.paired and not self.fake_kinds:
            raise ValueError("paired needs at least one forgery kind in the mix besides real")
        fake_total = sum(mix[k] for k in self.fake_kinds)
        self.fake_probs = np.array([mix[k] / fake_total for k in self.fake_kinds]) if self.fake_kinds else None
        #: True when item order carries meaning (the kind cycle, the pairs): loaders should not
        #: shuffle, the data set already shuffles its images per epoch.
        self.ordered = self.cycle_kinds or self.paired
        self.regions = list(regions) if regions else list(DEFAULT_REGIONS)
        self.aug = AugmentConfig.from_cfg(augment)
        self.ae_weights = ae_weights
        self._ae = None
        self.forgery_options = check_forgery_options(forgery_options)

        files = list_images(pool)
        if limit:
            files = files[: int(limit)]
        if split != "all":
            files = [f for f in files if in_val_split(f.name, val_fraction) == (split == "val")]
        landmarks = LandmarkCache().get_many(files, desc=f"face landmarks of {Path(pool).name}")
        keep = [i for i, p in enumerate(landmarks) if p is not None]
        self.no_face_count = len(files) - len(keep)
        self.files = [files[i] for i in keep]
        self.landmarks = [landmarks[i] for i in keep]
        if not self.files:
            raise ValueError(f"no usable faces in {pool} for split {split!r}")
        self.neighbours = nearest_neighbours(self.landmarks, k=donor_k)
        self._images: dict[int, np.ndarray] = {}
        self.gan_files: list[Path] = []
        self.gan_landmarks: list[np.ndarray] = []
        if "gan" in self.kind_names:
            self._load_gan_pool(gan_pool, split, val_fraction)
        if "ae" in self.kind_names:
            self._autoencoder()  # fail early if the weights are missing

    def _load_gan_pool(self, gan_pool: str | Path | None, split: str, val_fraction: float) -> None:
        if not gan_pool:
            raise ValueError("kind 'gan' needs data.gan_pool: a folder of GAN-made faces (e.g. ../shared/data/gan-train)")
        files = list_images(gan_pool)
        if split != "all":
            files = [f for f in files if in_val_split(f.name, val_fraction) == (split == "val")]
        landmarks = LandmarkCache().get_many(files, desc=f"face landmarks of {Path(gan_pool).name}")
        keep = [i for i, p in enumerate(landmarks) if p is not None]
        self.gan_files = [files[i] for i in keep]
        self.gan_landmarks = [landmarks[i] for i in keep]
        if not self.gan_files:
            raise ValueError(f"no usable faces in the GAN pool {gan_pool} for split {split!r}")
        self._gan_images: dict[int, np.ndarray] = {}

    def gan_face(self, rng: np.random.Generator) -> tuple[np.ndarray, Path]:
        """One GAN face, aligned with the detector's crop policy, drawn by ``rng``."""
        g = int(rng.integers(len(self.gan_files)))
        img = self._gan_images.get(g)
        if img is None:
            img = self._gan_images[g] = load_image(self.gan_files[g])
        crop, _, _ = crop_face(img, self.gan_landmarks[g], self.policy)
        return crop, self.gan_files[g]

    # -- epochs and seeds ------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return 2 * len(self.files) if self.paired else len(self.files)

    def _rng(self, index: int) -> np.random.Generator:
        if self.split == "train":
            return np.random.default_rng([self.seed, self.epoch, index])
        return np.random.default_rng([self.seed, _VAL_STREAM, index])

    def _file_index(self, index: int) -> int:
        if self.split != "train":
            return index
        perm = np.random.default_rng([self.seed, self.epoch, 0x5EED]).permutation(len(self.files))
        return int(perm[index // 2 if self.paired else index])

    def kind_of(self, index: int, rng: np.random.Generator | None = None) -> str:
        if self.paired:
            if index % 2 == 0:
                return "real"
            if self.cycle_kinds:
                return self.fake_kinds[(index // 2) % len(self.fake_kinds)]
            rng = rng if rng is not None else self._rng(index)
            return self.fake_kinds[int(rng.choice(len(self.fake_kinds), p=self.fake_probs))]
        if self.cycle_kinds:
            return self.kind_names[index % len(self.kind_names)]
        rng = rng if rng is not None else self._rng(index)
        return self.kind_names[int(rng.choice(len(self.kind_names), p=self.kind_probs))]

    # -- faces ------------------------------------------------------------------------------
    def _image(self, i: int) -> np.ndarray:
        img = self._images.get(i)
        if img is None:
            img = self._images[i] = load_image(self.files[i])
        return img

    def aligned(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Aligned crop and crop landmarks of pool file ``i`` under the detector's policy."""
        crop, pts, _ = crop_face(self._image(i), self.landmarks[i], self.policy)
        return crop, pts

    def _autoencoder(self):
        if self._ae is None:
            from .autoencoder import get_autoencoder

            self._ae = get_autoencoder(self.ae_weights)
        return self._ae

    # -- items ------------------------------------------------------------------------------
    def forgery(self, index: int):
        """The un-augmented :class:`~training.data.forgery.Forgery` of item ``index`` and its rng."""
        rng = self._rng(index)
        kind = self.kind_of(index, rng)
        if kind == "gan":
            crop, path = self.gan_face(rng)
            size = crop.shape[0]
            f = Forgery(crop, np.ones((size, size), np.float32), 1,
                        meta={"kind": "gan", "regions": ["face"], "file": path.name})
            return f, rng
        j = self._file_index(index)
        crop, pts = self.aligned(j)
        donors = None
        if kind in ("donor", "region") and self.neighbours.shape[1]:
            d = int(self.neighbours[j][int(rng.integers(self.neighbours.shape[1]))])
            donors = [self.aligned(d)]
        options = {**self.forgery_options.get(kind, {}), **({"model": self._autoencoder()} if kind == "ae" else {})}
        f = make_forgery(kind, crop, pts, rng, regions=self.regions, donors=donors, **options)
        f.meta["file"] = self.files[j].name
        return f, rng

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0 or index >= len(self):
            raise IndexError(index)
        f, rng = self.forgery(index)
        code = kinds.KIND_CODES[f.meta["kind"]]
        # a GAN face's sentence is the generated deepfake's ("generated by a neural network")
        sentence = WHOLE_FACE_SENTENCES[kinds.DEEPFAKE] if code == kinds.GAN else None
        return make_item(f.image, f.mask, f.label, code, region_vector(f.meta["regions"]),
                         Path(f.meta["file"]).stem, self.config, rng=rng, aug=self.aug, sentence=sentence)
