"""ProDet's Oriented Progressive Regularizer (OPR), as the authors' code realizes it.

One stage, all loss weights 1 (the paper's):

* each batch is sorted by kind into the anchors real | SBI | donor blend (the paper's CBI) |
  autoencoder deepfake. The recipes' data builder (:func:`build_anchor_dataset`) makes every
  training item one face in all four anchors, so the quarters are equal and pair up face by
  face, as the authors' batches pair a real frame with its SBI, its CBI and a deepfake of the
  same video; with plain mixed batches the method bridges the first ``min(count)`` of each kind;
* soft cross-entropy on the three attribute heads with targets blending = any forgery,
  identity inconsistency = donor blend or deepfake, generative artifact = deepfake;
* feature bridging: latent mixup of adjacent anchors (real<->SBI, SBI<->donor, donor<->deepfake)
  with lambda ~ Beta(a, a), a ~ U(0.5, 2) per sample, appended to the batch with soft labels
  (lambda on the attribute the pair differs in); they also pass through the attention and
  the final classifier;
* transition loss: MSE between each transition block's output on one anchor's feature maps and
  the next anchor's actual feature maps (no stop-gradient, as in the authors' code);
* soft cross-entropy of the final classifier against the blending label.

Other kinds (e.g. ``region`` forgeries) join the head losses with blending = 1, identity = 0,
generative = 0, but not the bridging or transitions.

GAN faces (kind ``gan``, whole faces a GAN made elsewhere, e.g. ``../shared/data/gan-train``) are
deepfakes in the paper's sense: generated, with nothing of the real face left. They stand in
the deepfake anchor (:data:`ANCHOR_OF`), so they take its attribute targets (blending,
identity inconsistency and generative artifact all 1), its bridges and its transition. A
recipe mixes them in with ``data.deepfake_anchor: {ae: W, gan: W}`` (training items only:
:func:`build_anchor_dataset`), so validation stays the project's own four kinds.

The explanation's path plot needs the anchors' feature centres. During training the method keeps
an exponential moving average of each anchor's pooled-feature centre (``anchor_momentum``) in the
detector's buffers, so every checkpoint the engine writes has a usable path. After training,
:func:`fit_anchors` recomputes them exactly with the final model in eval mode on the training
split (no augmentation) and stores them with a 2-D PCA projection: the engine runs it on
``OUT/best`` when training ends (:meth:`ProDetMethod.after_training`), and the command runs it
on any checkpoint::

    python -m training.methods.prodet fit-anchors runs/prodet/best --recipe demo

(both rewrite the folder's weights, ``model.safetensors`` or its shards, and ``config.json``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.data import kinds as K

from .base import MethodOptions, MethodOptionsError, Stage, TrainingMethod, register_method

ANCHOR_KINDS = (K.REAL, K.SBI, K.DONOR, K.DEEPFAKE)
#: Kinds that stand in another kind's anchor: a GAN face is a deepfake anchor.
ANCHOR_OF = {K.GAN: K.DEEPFAKE}
#: (from kind, to kind, transition block name, which attribute the pair's lambda softens)
BRIDGES = ((K.REAL, K.SBI, "real_to_sbi", "blend"),
           (K.SBI, K.DONOR, "sbi_to_donor", "identity"),
           (K.DONOR, K.DEEPFAKE, "donor_to_deepfake", "deepfake"))


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Two-class cross-entropy against a soft probability ``target`` of class 1."""
    target = target.float().clamp(0, 1)
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(torch.stack([1 - target, target], dim=1) * log_p).sum(1).mean()


def anchor_kinds(kind: torch.Tensor) -> torch.Tensor:
    """``kind`` with every stand-in kind (:data:`ANCHOR_OF`) replaced by the anchor it stands in."""
    out = kind.clone()
    for src, dst in ANCHOR_OF.items():
        out[kind == src] = dst
    return out


def attribute_targets(kind: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hard attribute targets of real samples: blending, identity inconsistency, generative."""
    kind = anchor_kinds(kind)
    blend = (label > 0).float()
    identity = ((kind == K.DONOR) | (kind == K.DEEPFAKE)).float()
    deepfake = (kind == K.DEEPFAKE).float()
    return {"blend": blend, "identity": identity, "deepfake": deepfake}


def sample_ratios(n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """lambda ~ Beta(a, a) with a ~ U(0.5, 2), one per sample."""
    alpha = torch.rand(n, generator=generator) * 1.5 + 0.5
    return torch.distributions.Beta(alpha, alpha).sample().to(device)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def flat_batch(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(image, kind, label)`` with anchor groups (B, 4, ...) from :class:`AnchorQuadruples`
    flattened to (4B, ...); plain batches pass through."""
    image, kind, label = batch["image"], batch["kind"], batch["label"]
    if image.dim() == 5:
        image, kind, label = image.flatten(0, 1), kind.flatten(), label.flatten()
    return image, kind.to(image.device), label.to(image.device)


LOSS_PARTS = ("blend", "identity", "deepfake", "final", "transition")


class AnchorKindsMissing(ValueError):
    """The data lacks one of the four anchor kinds, so the anchors cannot be fitted on it."""


@dataclass
class ProDetOptions(MethodOptions):
    bridging: bool = True  # mix neighbouring anchors' features (the progressive bridges)
    transition: bool = True  # train the transition blocks between anchors
    weights: dict[str, float] = field(default_factory=dict)  # per loss part (LOSS_PARTS), 1.0 when unset
    anchor_momentum: float = 0.98  # EMA of the anchor centres while training (0 = off)
    anchor_batches: int = 8  # training batches the anchors are fitted on after training (0 = keep the EMA ones)
    anchor_batch_size: int = 32  # items per such batch (an item holds one face in all four kinds)

    def check(self, where: str) -> None:
        unknown = sorted(set(self.weights) - set(LOSS_PARTS))
        if unknown:
            raise MethodOptionsError(f"{where}.weights has unknown part(s) {unknown}; choose from {list(LOSS_PARTS)}")


@register_method
class ProDetMethod(TrainingMethod):
    """ProDet's progressive training; its recipe options are :class:`ProDetOptions`. After
    training, the path anchors of the final checkpoint are fitted exactly (:meth:`after_training`)."""

    family = "prodet"
    options_class = ProDetOptions

    def __init__(self, recipe: dict[str, Any] | None = None) -> None:
        super().__init__(recipe)
        self.bridging = self.options.bridging
        self.use_transition = self.options.transition
        self.weights = {**{name: 1.0 for name in LOSS_PARTS}, **self.options.weights}
        self.anchor_momentum = self.options.anchor_momentum

    def stages(self) -> list[Stage]:
        return [Stage("main", data="mixed")]

    def loss(self, model: nn.Module, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        net = _unwrap(model)
        image, kind, label = flat_batch(batch)
        kind = anchor_kinds(kind)  # GAN faces stand in the deepfake anchor
        order = torch.argsort(kind, stable=True)  # real | SBI | donor | deepfake | others
        image, kind, label = image[order], kind[order], label[order]
        fmap = net.feature_map(image)
        targets = attribute_targets(kind, label)

        groups = {k: (kind == k).nonzero(as_tuple=True)[0] for k in ANCHOR_KINDS}
        quarter = min(len(g) for g in groups.values())
        anchors = {k: fmap[g[:quarter]] for k, g in groups.items()}

        maps, extra = [fmap], {name: [t] for name, t in targets.items()}
        if self.bridging and quarter > 0:
            for src, dst, _, softened in BRIDGES:
                lam = sample_ratios(quarter, fmap.device)
                mixed = lam.view(-1, 1, 1, 1) * anchors[dst] + (1 - lam.view(-1, 1, 1, 1)) * anchors[src]
                maps.append(mixed)
                soft = _bridge_targets(src, softened, lam)
                for name in extra:
                    extra[name].append(soft[name])
        out = net.decide(torch.cat(maps, dim=0))
        goal = {name: torch.cat(parts) for name, parts in extra.items()}

        parts = {
            "blend": soft_cross_entropy(out["blend_logits"], goal["blend"]),
            "identity": soft_cross_entropy(out["identity_logits"], goal["identity"]),
            "deepfake": soft_cross_entropy(out["deepfake_logits"], goal["deepfake"]),
            "final": soft_cross_entropy(out["logits"], goal["blend"]),
        }
        if self.use_transition and quarter > 0 and net.transition is not None:
            parts["transition"] = sum(F.mse_loss(net.transition[name](anchors[src]).float(), anchors[dst].float())
                                      for src, dst, name, _ in BRIDGES)
        total = sum(self.weights[name] * value for name, value in parts.items())
        self._track_anchors(net, fmap, kind)
        return {"loss": total, **{f"loss_{k}": v.detach() for k, v in parts.items()}}

    @torch.no_grad()
    def _track_anchors(self, net: nn.Module, fmap: torch.Tensor, kind: torch.Tensor) -> None:
        """EMA of the anchors' pooled-feature centres while training (refined by ``fit_anchors``)."""
        if not self.anchor_momentum:
            return
        pooled = fmap.detach().float().mean((2, 3))
        centres = net.anchor_centres
        for i, k in enumerate(ANCHOR_KINDS):
            sel = kind == k
            if sel.any():
                mean = pooled[sel].mean(0)
                seen = bool(centres[i].abs().sum() > 0)
                centres[i] = self.anchor_momentum * centres[i] + (1 - self.anchor_momentum) * mean if seen else mean
        if bool((centres.abs().sum(1) > 0).all()):
            net.set_anchors(centres.clone(), fitted=1.0)

    def after_training(self, checkpoint: Path) -> dict[str, Any] | None:
        """Fit the final checkpoint's path anchors exactly (eval mode, training split without
        augmentation) and write it back: what ``fit-anchors`` does, run by the engine. Data without
        all four anchor kinds (a stand-in set) keeps the anchors tracked while training, and says so."""
        if self.options.anchor_batches <= 0:
            return None
        try:
            counts = fit_checkpoint(checkpoint, self.recipe, self.options.anchor_batches,
                                    self.options.anchor_batch_size,
                                    seed=int((self.recipe.get("train") or {}).get("seed", 0)))
        except AnchorKindsMissing as exc:
            return {"anchors_not_fitted": str(exc)}
        return {"anchors": counts}


def _bridge_targets(src: int, softened: str, lam: torch.Tensor) -> dict[str, torch.Tensor]:
    """Soft attribute targets of a mixed pair: the source's targets, ``lam`` on the softened one."""
    base = {"blend": float(src != K.REAL), "identity": float(src in (K.DONOR, K.DEEPFAKE)),
            "deepfake": float(src == K.DEEPFAKE)}
    return {name: (lam if name == softened else torch.full_like(lam, value)) for name, value in base.items()}


@torch.no_grad()
def fit_anchors(model: nn.Module, batches: Iterable[dict[str, Any]], max_batches: int = 40) -> dict[str, int]:
    """Set the detector's path anchors from data: per-kind mean pooled features (eval mode),
    their 2-D PCA axes and spreads. Returns how many samples each anchor saw."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats: dict[int, list[torch.Tensor]] = {k: [] for k in ANCHOR_KINDS}
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        image, kind, _ = flat_batch(batch)
        pooled = model.feature_map(image.to(device)).float().mean((2, 3))
        kind = anchor_kinds(kind.to(device))
        for k in ANCHOR_KINDS:
            if (kind == k).any():
                feats[k].append(pooled[kind == k].cpu())
    model.train(was_training)
    counts = {K.KIND_NAMES[k]: sum(len(f) for f in v) for k, v in feats.items()}
    missing = [name for name, n in counts.items() if n == 0]
    if missing:
        raise AnchorKindsMissing(f"fit_anchors saw no samples of {', '.join(missing)}; "
                                 "the data needs all four anchor kinds")
    stacked = [torch.cat(feats[k]) for k in ANCHOR_KINDS]
    model.set_anchors(torch.stack([f.mean(0) for f in stacked]), spread_features=stacked)
    return counts


class AnchorQuadruples(torch.utils.data.Dataset):
    """Training items that are one face in all four anchors: its real crop, its self-blend, a donor
    blended onto it and its autoencoder re-rendering, stacked as (4, ...) tensors.

    The authors' batches take the SBI and CBI from the real frame and the deepfake from the same
    video, so the bridging pairs and the transition targets differ only by the forgery. Our
    synthetic data set draws one kind per item from different faces; this wrapper keeps four
    single-kind data sets over the same files in step (same seed, epoch and permutation)."""

    def __init__(self, parts: list[torch.utils.data.Dataset]) -> None:
        if len({len(p) for p in parts}) != 1:
            raise ValueError("the anchor data sets must hold the same faces")
        self.parts = parts

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        items = [part[index] for part in self.parts]
        out = {k: torch.stack([it[k] for it in items]) for k in ("image", "label", "kind", "mask", "regions")}
        out["sentence"] = " | ".join(it["sentence"] for it in items)
        out["video_id"] = items[0]["video_id"]
        return out


def build_anchor_dataset(cfg: dict[str, Any], detector_config: Any, split: str, seed: int = 0):
    """``data.builder`` for ProDet recipes: :class:`AnchorQuadruples` of the synthetic pool for
    training; the recipe's plain mix (``kinds``) for validation and evaluation.

    ``data.deepfake_anchor`` (training only; default ``{ae: 1}``) is the mix the deepfake anchor
    draws from, per item: ``{ae: 1, gan: 1}`` makes it the face's autoencoder re-rendering or a
    GAN face from ``data.gan_pool``, half each."""
    from training.data.build import build_dataset

    cfg = dict(cfg)
    deepfake_mix = dict(cfg.pop("deepfake_anchor", None) or {K.KIND_NAMES[K.DEEPFAKE]: 1})
    if split != "train":
        return build_dataset(cfg, detector_config, split, seed=seed)
    stray = sorted(set(deepfake_mix) - {K.KIND_NAMES[K.DEEPFAKE], K.KIND_NAMES[K.GAN]})
    if stray:
        raise ValueError(f"data.deepfake_anchor: {stray} cannot stand in the deepfake anchor (ae, gan)")
    parts = [build_dataset({**cfg, "kinds": ({K.KIND_NAMES[k]: 1} if k != K.DEEPFAKE else deepfake_mix),
                            "cycle_kinds": False}, detector_config, split, seed=seed) for k in ANCHOR_KINDS]
    return AnchorQuadruples(parts)


def fit_checkpoint(folder: str | Path, recipe: str | dict[str, Any] = "demo",
                   batches: int = ProDetOptions.anchor_batches, batch_size: int = ProDetOptions.anchor_batch_size,
                   seed: int = 0) -> dict[str, int]:
    """Load a ProDet checkpoint folder, fit its anchors on the recipe's training split (no
    augmentation), and write the folder back (weights and config only). ``recipe`` is a loaded
    recipe or a spec for :func:`training.recipes.load_recipe`."""
    from detectors.factory import load_checkpoint
    from training.engine.data import build_dataset
    from training.recipes import load_recipe, stage_data

    folder = Path(folder)
    model = load_checkpoint(str(folder), expected_family="prodet")
    if not isinstance(recipe, dict):
        recipe = load_recipe(recipe, model.config.name)
    data = {**stage_data(recipe, "main", "mixed"), "augment": False}
    dataset = build_dataset(data, model.config, "train", seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    counts = fit_anchors(model, loader, max_batches=batches)
    model.config.extra = {**(model.config.extra or {}),
                          "anchors": {"fitted_on": "training split, no augmentation, eval mode", "counts": counts}}
    had_card = (folder / "README.md").exists()
    model.save_pretrained(folder)
    if not had_card:
        (folder / "README.md").unlink(missing_ok=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.methods.prodet",
                                     description="ProDet post-training step: fit the path anchors of a checkpoint.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit-anchors", help="fit the four anchors' centres and 2-D projection, write them back")
    fit.add_argument("checkpoint", help="a checkpoint folder (config.json + model.safetensors or its shards), "
                                        "e.g. runs/prodet/best")
    fit.add_argument("--recipe", default="demo", help="recipe whose training data to use (default demo)")
    fit.add_argument("--batches", type=int, default=ProDetOptions.anchor_batches,
                     help=f"batches to read (default {ProDetOptions.anchor_batches})")
    fit.add_argument("--batch-size", type=int, default=ProDetOptions.anchor_batch_size,
                     help="items per batch (a training item holds 4 images; "
                          f"default {ProDetOptions.anchor_batch_size})")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    counts = fit_checkpoint(args.checkpoint, args.recipe, args.batches, args.batch_size)
    print(f"anchors fitted on {counts} samples; written to {args.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
