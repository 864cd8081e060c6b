"""The training loop: stages of a recipe, Accelerate for devices/AMP/multi-GPU, resumable state.

Layout of ``--out`` (``OUT``)::

    OUT/best/               the final detector: best validation AUC of the last stage (Hub format)
    OUT/last/               latest weights (Hub format) + training_state/ to resume from
    OUT/stages/<stage>/     weights at the end of each stage of a multi-stage recipe
    OUT/metrics.jsonl       one JSON object per log line (type train | val | stage)
    OUT/loss.png, OUT/val_metrics.png
    OUT/recipe.yaml         the completed recipe the run used; OUT/command.txt the command line

Resume (``--resume``) restores weights, optimizer, scheduler, AMP scaler and every random
generator from ``OUT/last``, the stage and the position inside the epoch; the data order
depends only on (seed, epoch), so the resumed run takes the same steps as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from training import metrics as M
from training.methods import Stage, get_method
from training.recipes import repo_relative, stage_data, stage_settings

from . import state as S
from .data import build_dataset, make_loader
from .logs import MetricsLog, plot_curves
from .optim import build_optimizer, build_scheduler, param_groups


class _LossModule(nn.Module):
    """Runs the method's loss inside one ``forward``, so DDP sees the whole computation and the
    method receives the plain detector (attribute access works on any number of GPUs)."""

    def __init__(self, model: nn.Module, method, stage: Stage) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.stage = stage

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.method.loss(self.model, batch, self.stage)


@dataclass
class Progress:
    """Where a run stands; saved as JSON with every resumable checkpoint."""

    stage_index: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    step: int = 0  # optimizer steps in this stage
    total_step: int = 0  # optimizer steps over all stages
    best_auc: float | None = None
    best_step: int | None = None
    finished: bool = False
    log_lines: int = 0


class Trainer:
    """Trains ``model`` by ``recipe`` into ``out_dir``. One instance per run."""

    def __init__(self, model, recipe: dict[str, Any], out_dir: str | Path, *, cpu: bool = False,
                 stop_after: int = 0, command: str | None = None, progress_bar: bool = True) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.model = model
        self.recipe = recipe
        self.out = Path(out_dir)
        self.stop_after = int(stop_after or 0)
        self.command = command or " ".join(shlex.quote(a) for a in ["python", "-m", "training", *sys.argv[1:]])
        self.progress_bar = progress_bar
        train = recipe["train"]
        use_cuda = torch.cuda.is_available() and not cpu
        mixed = "no"
        if train.get("amp", True) and use_cuda:
            mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=mixed,
                                       kwargs_handlers=[DistributedDataParallelKwargs(
                                           find_unused_parameters=bool(train.get("find_unused_parameters", True)))])
        if train.get("channels_last"):
            # Convolutions follow their weights' memory format, so the inputs need no conversion;
            # saving makes every tensor contiguous again (detectors.base, engine.state).
            self.model.to(memory_format=torch.channels_last)
        if train.get("deterministic"):
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        self.method = get_method(model.family, recipe)
        self.stages = self.method.stages()
        self.log = MetricsLog(self.out, enabled=self.accelerator.is_main_process)
        self.progress = Progress()
        self._requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        # ``model.init`` (training/pretrained_init.py): what the tower started from, for training info
        self.init_record = (model.config.extra or {}).pop("init", None)
        self.last_val: dict[str, Any] | None = None
        self._final_optim: tuple[Any, Any] = (None, None)
        self._run_steps = 0  # optimizer steps taken by this invocation (for --stop-after)

    # ---- public --------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> Progress:
        acc = self.accelerator
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = None
        if resume:
            if not S.has_state(self.out / "last"):
                raise FileNotFoundError(f"nothing to resume: {self.out / 'last' / S.STATE_DIR} does not exist")
            resumed = self._load_resume()
            if self.progress.finished:
                acc.print(f"{self.out}: this run already finished (step {self.progress.total_step})")
                return self.progress
            self.log.truncate(self.progress.log_lines)
        else:
            from accelerate.utils import set_seed

            set_seed(int(self.recipe["train"]["seed"]))
            if acc.is_main_process:
                if self.log.path.exists():
                    self.log.path.unlink()
                (self.out / "recipe.yaml").write_text(yaml.safe_dump(self.recipe, sort_keys=False))
                (self.out / "command.txt").write_text(self.command + "\n")
        self.model.to(acc.device)
        for index in range(self.progress.stage_index, len(self.stages)):
            self.progress.stage_index = index
            finished = self._run_stage(self.stages[index], resumed if index == self.progress.stage_index else None)
            resumed = None
            if not finished:
                return self.progress  # stopped early (--stop-after): OUT/last holds the state
            if index + 1 < len(self.stages):
                self._save_model(self.out / "stages" / self.stages[index].name)
                self.progress.epoch = self.progress.batch_in_epoch = self.progress.step = 0
        self.progress.finished = True
        if self.progress.best_auc is None:  # no validation: the final weights are the result
            self._save_model(self.out / "best")
        self._save_last(*self._final_optim)
        self._after_training()
        self._plot()
        acc.print(f"done: best checkpoint {self.out / 'best'}"
                  + (f" (val AUC {self.progress.best_auc:.4f} at step {self.progress.best_step})"
                     if self.progress.best_auc is not None else ""))
        return self.progress

    def _after_training(self) -> None:
        """The method's post-training step on the final checkpoint (e.g. ProDet's anchors), once."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            done = self.method.after_training(self.out / "best")
            if done:
                self.log.write({"type": "after_training", **done})
                acc.print(f"after training: {done}")
        acc.wait_for_everyone()

    # ---- one stage -----------------------------------------------------------------------------
    def _run_stage(self, stage: Stage, resumed: dict | None) -> bool:
        acc = self.accelerator
        settings = stage_settings(self.recipe, stage.name)
        seed = int(settings["seed"])
        is_last_stage = stage is self.stages[-1]
        cfg = self.model.config
        train_set = build_dataset(stage_data(self.recipe, stage.name, stage.data), cfg, "train", seed=seed)
        val_set = None
        if stage.data != "real_only":
            try:
                val_set = build_dataset(stage_data(self.recipe, stage.name, stage.data, validation=True), cfg, "val",
                                        seed=seed)
            except (ValueError, FileNotFoundError) as exc:
                acc.print(f"no validation data for stage {stage.name}: {exc}")
            if val_set is not None and len(val_set) == 0:
                val_set = None
        bs = int(settings["batch_size"])
        # An ``ordered`` data set (cycle_kinds) shuffles its images itself and keeps its kind order.
        shuffle = not getattr(train_set, "ordered", False)
        loader, sampler, seeder, generator = make_loader(train_set, bs, seed, shuffle, int(settings["num_workers"]),
                                                         bool(settings["drop_last"]), acc.device.type == "cuda")
        groups = self._stage_parameters(stage, float(settings["lr"]))
        raw_optimizer = build_optimizer(groups, settings)
        module = _LossModule(self.model, self.method, stage)
        module, optimizer, loader = acc.prepare(module, raw_optimizer, loader)
        accum = max(1, int(settings["grad_accum"]))
        if len(loader) == 0:
            raise ValueError(f"stage {stage.name}: {len(train_set)} training items make no batch of {bs}")
        steps_per_epoch = max(1, math.ceil(len(loader) / accum))
        max_steps = int(settings["max_steps"])
        epochs = math.ceil(max_steps / steps_per_epoch) if max_steps > 0 else int(settings["epochs"])
        total_steps = max_steps if max_steps > 0 else epochs * steps_per_epoch
        scheduler = build_scheduler(raw_optimizer, settings, total_steps)
        if resumed is not None:
            self._restore_optimizer(optimizer, scheduler, resumed)
        val_every = int(settings["val_every"]) or steps_per_epoch
        save_every = int(settings["save_every"]) or val_every
        log_every = max(1, int(settings["log_every"]))
        p = self.progress
        acc.print(f"stage {stage.name} ({stage.data}): {len(train_set)} training items, "
                  f"{len(val_set) if val_set is not None else 0} validation items, {total_steps} steps "
                  f"({steps_per_epoch}/epoch, batch {bs}x{accum}x{acc.num_processes}), device {acc.device}, "
                  f"precision {acc.mixed_precision}")
        if resumed is not None:
            S.set_rng_state(*resumed["rng"])
        bar = self._bar(total_steps, p.step, stage.name)
        window_images, window_start = 0, time.perf_counter()
        running: dict[str, float] = {}
        module.train()
        while p.step < total_steps and p.epoch < epochs:
            # Accelerate's loader re-applies its own epoch counter to the sampler at each
            # iteration, so set that counter too (a resumed run has not counted earlier epochs).
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(p.epoch)
            sampler.set_epoch(p.epoch)
            seeder.epoch = p.epoch
            generator.manual_seed(seed * 7919 + p.epoch)
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(p.epoch)
            n_batches = len(loader)
            epoch_loader = loader
            if p.batch_in_epoch:
                from accelerate import skip_first_batches

                epoch_loader = skip_first_batches(loader, p.batch_in_epoch)
                if hasattr(epoch_loader, "set_epoch"):
                    epoch_loader.set_epoch(p.epoch)
            for batch in epoch_loader:
                index = p.batch_in_epoch  # micro-batch index within the epoch
                group_start = index - index % accum
                group_size = min(accum, n_batches - group_start)
                boundary = index + 1 == group_start + group_size
                ctx = acc.no_sync(module) if not boundary and acc.num_processes > 1 else _null()
                with ctx, acc.autocast():
                    parts = module(batch)
                    loss = parts["loss"]
                    acc.backward(loss / group_size)
                for k, v in parts.items():
                    if isinstance(v, torch.Tensor) and v.numel() == 1:
                        running[k] = running.get(k, 0.0) + float(v.detach()) / group_size
                window_images += count_images(batch) * acc.num_processes
                p.batch_in_epoch += 1
                if not boundary:
                    continue
                if float(settings["grad_clip"]) > 0:
                    acc.clip_grad_norm_([q for g in optimizer.param_groups for q in g["params"]],
                                        float(settings["grad_clip"]))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                p.step += 1
                p.total_step += 1
                self._run_steps += 1
                if p.step % log_every == 0 or p.step == total_steps:
                    elapsed = max(1e-9, time.perf_counter() - window_start)
                    rate = window_images / elapsed
                    n = log_every if p.step % log_every == 0 else (p.step % log_every)
                    record = {"type": "train", "stage": stage.name, "epoch": p.epoch, "step": p.step,
                              "total_step": p.total_step, "lr": optimizer.param_groups[0]["lr"],
                              "images_per_s": rate, **{k: v / n for k, v in running.items()}}
                    self.log.write(record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{rate:.1f}")
                    running, window_images, window_start = {}, 0, time.perf_counter()
                if bar is not None:
                    bar.update(1)
                done = p.step >= total_steps
                if p.batch_in_epoch >= n_batches:
                    p.epoch += 1
                    p.batch_in_epoch = 0
                validated = False
                if val_set is not None and (p.step % val_every == 0 or done):
                    self._validate(val_set, settings, stage, is_last_stage)
                    validated = True
                    module.train()
                    window_images, window_start = 0, time.perf_counter()
                stopping = self.stop_after and self._run_steps >= self.stop_after and not done
                if p.step % save_every == 0 or done or stopping or validated:
                    self._save_last(optimizer, scheduler)
                if done or stopping:
                    break
            else:
                if p.batch_in_epoch:  # an epoch ended inside an accumulation group (not expected)
                    p.epoch += 1
                    p.batch_in_epoch = 0
            if self.stop_after and self._run_steps >= self.stop_after and p.step < total_steps:
                if bar is not None:
                    bar.close()
                acc.print(f"stopped after {self._run_steps} steps (stage {stage.name}, step {p.step}); resume with --resume")
                self._plot()
                return False
        if bar is not None:
            bar.close()
        self._final_optim = (optimizer, scheduler)
        self.log.write({"type": "stage", "stage": stage.name, "steps": p.step, "total_step": p.total_step})
        self.progress.log_lines = self.log.count() if acc.is_main_process else 0
        self._restore_requires_grad()
        return True

    # ---- parts ---------------------------------------------------------------------------------
    def _stage_parameters(self, stage: Stage, lr: float) -> list[dict[str, Any]]:
        self._restore_requires_grad()
        groups = param_groups(self.method.trainable_parameters(self.model, stage), lr)
        chosen = {id(q) for g in groups for q in g["params"]}
        for q in self.model.parameters():
            q.requires_grad_(id(q) in chosen)
        if not chosen:
            raise ValueError(f"stage {stage.name!r} has no trainable parameters")
        return groups

    def _restore_requires_grad(self) -> None:
        for n, q in self.model.named_parameters():
            q.requires_grad_(self._requires_grad.get(n, True))

    @torch.no_grad()
    def _validate(self, val_set, settings: dict[str, Any], stage: Stage, is_last_stage: bool) -> dict[str, Any]:
        acc = self.accelerator
        scorer = self.method.validation_model(self.model, stage)
        result = predict_dataset(scorer, val_set, int(settings["eval_batch_size"] or settings["batch_size"]),
                                 accelerator=acc, num_workers=int(settings["num_workers"]))
        p = self.progress
        record = M.detection_metrics(result["scores"], result["labels"], result["video_ids"],
                                     threshold=float(self.model.config.threshold))
        record.update({"type": "val", "stage": stage.name, "epoch": p.epoch, "step": p.step,
                       "total_step": p.total_step})
        self.log.write(record)
        self.last_val = record
        auc = record["auc"]
        acc.print(f"[val] stage {stage.name} step {p.step}: AUC {_fmt(auc)} video AUC {_fmt(record['video_auc'])} "
                  f"EER {_fmt(record['eer'])} AP {_fmt(record['ap'])} ACC {_fmt(record['acc'])} "
                  f"({record['n_real']} real, {record['n_fake']} fake)")
        if is_last_stage and auc is not None and (p.best_auc is None or auc > p.best_auc):
            p.best_auc, p.best_step = auc, p.total_step
            self._save_model(self.out / "best", metrics=record)
        self.model.train()
        return record

    def _training_info(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        p = self.progress
        stage = self.stages[p.stage_index].name
        settings = stage_settings(self.recipe, stage)  # the stage's own steps and lr, not the recipe's defaults
        info = {"recipe": repo_relative(self.recipe.get("source", "")), "command": self.command, "data": self.recipe.get("data", {}),
                "stage": stage, "total_steps": p.total_step,
                "train": {k: settings[k] for k in ("optimizer", "lr", "batch_size", "grad_accum", "epochs",
                                                   "max_steps", "seed")}}
        if self.init_record:
            info["init"] = self.init_record
        if metrics:
            info["validation"] = {k: metrics.get(k) for k in ("auc", "video_auc", "eer", "ap", "acc", "n_real",
                                                              "n_fake")}
        return info

    def _save_model(self, folder: Path, metrics: dict[str, Any] | None = None) -> None:
        """Every process calls this (it waits for all); the main process writes."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            self._write_model(folder, metrics)

    def _write_model(self, folder: Path, metrics: dict[str, Any] | None = None) -> None:
        model = self.model
        extra = dict(model.config.extra or {})
        extra["training"] = self._training_info(metrics)
        model.config.extra = extra
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp)
        (tmp / "README.md").unlink(missing_ok=True)  # the model card is written by `export`
        S.replace_dir(tmp, folder)

    def _save_last(self, optimizer, scheduler) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        self.progress.log_lines = self.log.count()
        folder = self.out / "last"
        tmp = folder.with_name("last.tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        self._write_model(tmp)
        extra: dict[str, Any] = {"recipe_source": self.recipe.get("source", "")}
        if scheduler is not None:
            sd = scheduler.state_dict()
            extra["scheduler"] = {k: sd[k] for k in ("last_epoch", "_step_count", "base_lrs", "_last_lr") if k in sd}
        scaler = getattr(acc, "scaler", None)
        if scaler is not None:
            extra["scaler"] = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in scaler.state_dict().items()}
        S.save_state(tmp, self.progress.__dict__, optimizer.state_dict() if optimizer is not None else None, extra)
        S.replace_dir(tmp, folder)
        self._plot()

    def _load_resume(self) -> dict[str, Any]:
        from detectors.hub import load_weights

        folder = self.out / "last"
        tensors, meta = S.load_state(folder)
        load_weights(self.model, folder)  # model.safetensors or its shards
        self.progress = Progress(**meta["progress"])
        cfg_extra = json.loads((folder / "config.json").read_text()).get("extra", {})
        self.model.config.extra = cfg_extra
        self.init_record = self.init_record or (cfg_extra.get("training") or {}).get("init")
        self.accelerator.print(f"resuming {self.out} at stage {self.stages[self.progress.stage_index].name}, "
                               f"epoch {self.progress.epoch}, step {self.progress.step}")
        rng_t = {k: v for k, v in tensors.items() if k.startswith("rng.")}
        return {"tensors": tensors, "meta": meta, "rng": (rng_t, meta["rng"])}

    def _restore_optimizer(self, optimizer, scheduler, resumed: dict[str, Any]) -> None:
        meta = resumed["meta"]
        if "optimizer" in meta:
            sd = S.unflatten_optimizer(resumed["tensors"], meta["optimizer"])
            optimizer.load_state_dict(sd)
        if "scheduler" in meta:
            sd = dict(meta["scheduler"])
            sd["lr_lambdas"] = [None] * len(optimizer.param_groups)
            scheduler.load_state_dict(sd)
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and "scaler" in meta:
            scaler.load_state_dict(meta["scaler"])

    def _bar(self, total: int, initial: int, name: str):
        if not (self.progress_bar and self.accelerator.is_local_main_process):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=f"train {name}", unit="step", dynamic_ncols=True,
                    mininterval=1.0)

    def _plot(self) -> None:
        if self.accelerator.is_main_process and self.log.path.is_file():
            try:
                plot_curves(self.log.path, self.out)
            except Exception as exc:  # noqa: BLE001 - plotting never stops training
                self.accelerator.print(f"could not draw curves: {exc}")


@torch.no_grad()
def predict_dataset(model, dataset, batch_size: int, accelerator=None, num_workers: int = 0,
                    progress: bool = False) -> dict[str, Any]:
    """``prob_fake`` of every item (in dataset order), with labels, kinds and video ids."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    if accelerator is not None and accelerator.num_processes > 1:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    was_training = model.training
    model.eval()
    scores, labels, kinds, videos, masked = [], [], [], [], []
    iterator = loader
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc="evaluate", unit="batch", mininterval=1.0)
    for batch in iterator:
        x = batch["image"].to(device)
        ctx = accelerator.autocast() if accelerator is not None else _null()
        with ctx:
            prob = model(x)["prob_fake"].float()
        y = batch["label"].to(device)
        k = batch.get("kind", torch.full_like(batch["label"], -1)).to(device)
        vid = list(batch.get("video_id", [str(i) for i in range(len(y))]))
        m = batch["mask"].flatten(1).amax(1).to(device) > 0.5 if "mask" in batch else torch.zeros_like(y, dtype=torch.bool)
        if accelerator is not None and accelerator.num_processes > 1:
            prob, y, k, m = accelerator.gather_for_metrics((prob, y, k, m))
            vid = accelerator.gather_for_metrics(vid, use_gather_object=True)
        scores.append(prob.cpu().numpy())
        labels.append(y.cpu().numpy())
        kinds.append(k.cpu().numpy())
        masked.append(m.cpu().numpy())
        videos.extend(str(v) for v in vid)
    model.train(was_training)
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
    return {"scores": cat(scores), "labels": cat(labels).astype(np.int64), "kinds": cat(kinds).astype(np.int64),
            "video_ids": videos, "has_mask": cat(masked).astype(bool)}


def count_images(batch: dict[str, Any]) -> int:
    """Images in a batch: ``image`` may stack several per item (ProDet: one face in four anchors)."""
    image = batch["image"]
    return int(image.numel() // max(1, math.prod(image.shape[-3:])))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
