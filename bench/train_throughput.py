"""Training throughput of a recipe: images/s over N optimizer steps (after warm-up steps).

    flock /tmp/forgerylens-heavy.lock .venv/bin/python -m bench.train_throughput \
        --detector lav_demo --recipe demo --steps 20 [--batch-size 16] [--threads 2] [--synthetic] \
        [--set train.channels_last=true]

Prints end-to-end images/s (data loading + forward + backward + optimizer step) and the share
of time spent waiting for data. ``--synthetic`` uses random tensors shaped like the detector's
input instead of the recipe's data (model speed alone); the method's loss still runs.
"""
from __future__ import annotations

import argparse
import time


def synthetic_dataset(config, n: int):
    import torch
    from torch.utils.data import Dataset

    from training.data.kinds import SENTENCE_REGIONS

    class Random(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> dict:
            g = torch.Generator().manual_seed(i)
            s = config.input_size
            label = i % 2
            mask = torch.zeros(1, s, s)
            if label:
                mask[:, s // 4: s // 2, s // 4: s // 2] = 1
            return {"image": torch.randn(3, s, s, generator=g), "label": torch.tensor(label),
                    "kind": torch.tensor(label), "mask": mask, "regions": torch.zeros(len(SENTENCE_REGIONS)),
                    "sentence": "A fake face." if label else "A real face.", "video_id": str(i)}

    return Random()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector")
    p.add_argument("--recipe", default="demo")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--stage", help="stage name (default: the last stage)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--synthetic", action="store_true")
    p.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from detectors import build_detector
    from training.engine.data import build_dataset, make_loader
    from training.engine.loop import _LossModule, count_images
    from training.engine.optim import build_optimizer, param_groups
    from training.methods import get_method
    from training.recipes import load_recipe, stage_data, stage_settings

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, args.detector, args.set)
    if args.batch_size:
        recipe["train"]["batch_size"] = args.batch_size
        for s in recipe["stages"].values():
            s.pop("batch_size", None)
    set_seed(int(recipe["train"]["seed"]))
    model = build_detector(recipe["detector"], **recipe["model"])
    method = get_method(model.family, recipe)
    stages = method.stages()
    stage = next((s for s in stages if s.name == args.stage), stages[-1])
    settings = stage_settings(recipe, stage.name)
    use_cuda = torch.cuda.is_available() and not args.cpu
    mixed = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if use_cuda and settings["amp"] else "no"
    acc = Accelerator(cpu=not use_cuda, mixed_precision=mixed)
    if settings["channels_last"]:
        model.to(memory_format=torch.channels_last)
    bs = int(settings["batch_size"])
    need = bs * (args.steps + args.warmup)
    if args.synthetic:
        data = synthetic_dataset(model.config, need)
    else:
        data_cfg = stage_data(recipe, stage.name, stage.data)
        data = build_dataset(data_cfg, model.config, "train", seed=0)
    loader, *_ = make_loader(data, bs, 0, True, int(settings["num_workers"]), True, use_cuda)
    groups = param_groups(method.trainable_parameters(model, stage), float(settings["lr"]))
    chosen = {id(q) for g in groups for q in g["params"]}
    for q in model.parameters():
        q.requires_grad_(id(q) in chosen)
    optimizer = build_optimizer(groups, settings)
    module, optimizer, loader = acc.prepare(_LossModule(model, method, stage), optimizer, loader)
    module.train()
    n_params = sum(q.numel() for q in model.parameters()) / 1e6
    n_train = sum(q.numel() for q in model.parameters() if q.requires_grad) / 1e6
    print(f"{recipe['detector']} stage {stage.name}: {n_params:.2f} M parameters ({n_train:.2f} M trained), "
          f"input {model.config.input_size}px, batch {bs}, device {acc.device}, precision {mixed}, "
          f"threads {torch.get_num_threads()}, channels_last {bool(settings['channels_last'])}, "
          f"data {'synthetic' if args.synthetic else 'recipe'} ({len(data)} items)")

    def batches():
        while True:
            yield from loader

    it = batches()
    images, wait, t0 = 0, 0.0, None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if use_cuda:
                torch.cuda.synchronize()
            t0, images, wait = time.perf_counter(), 0, 0.0
        t = time.perf_counter()
        batch = next(it)
        wait += time.perf_counter() - t
        with acc.autocast():
            loss = module(batch)["loss"]
        acc.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        images += count_images(batch)
    if use_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    print(f"{images} images in {elapsed:.2f} s over {args.steps} steps: {images / elapsed:.1f} images/s "
          f"({elapsed / args.steps * 1000:.0f} ms/step; {100 * wait / elapsed:.0f}% waiting for data)")
    if use_cuda:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
