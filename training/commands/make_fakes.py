"""``python -m training make-fakes``: write forgeries of one kind from a pool of real faces.

Writes ``images/NNNN.png`` (the forgery), ``masks/NNNN.png`` (its ground-truth mask),
``originals/NNNN.png`` (the aligned real crop), ``fakes.json`` (file, source, kind, regions,
sentence, meta per image) and ``contact_sheet.png`` (original | forgery | mask | |difference|
per row) to look at.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "make forgeries (sbi|donor|region|ae) from a pool of real faces, with masks, sentences and a contact sheet"
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pool", default=str(ROOT.parent / "shared" / "data" / "ffhq128-real"), help="folder of real faces")
    p.add_argument("--kind", required=True, choices=["sbi", "donor", "region", "ae"])
    p.add_argument("--n", type=int, default=16, help="number of forgeries")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=256, help="aligned crop size")
    p.add_argument("--margin", type=float, default=1.3)
    p.add_argument("--regions", default="", help="comma-separated parts region forgeries may touch")
    p.add_argument("--ae-weights", default=None, help="autoencoder folder (default: the shipped one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sheet-rows", type=int, default=8, help="rows in the contact sheet")


def contact_sheet(rows: list[tuple], path: Path, title: str) -> None:
    """rows: (original, forgery, mask, caption); saved with matplotlib (cividis for masks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.7 * len(rows)), squeeze=False)
    for r, (orig, fake, mask, caption) in enumerate(rows):
        diff = np.abs(fake.astype(np.float32) - orig.astype(np.float32)).mean(-1)
        panels = [(orig, None, "real"), (fake, None, "forgery"), (mask, "cividis", "mask"),
                  (diff / max(diff.max(), 1.0), "viridis", "|difference|")]
        for c, (img, cmap, name) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
        axes[r, 0].set_ylabel("\n".join(_wrap(caption, 32)), fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from detectors.faces import CropPolicy, load_image

    from ..data.donors import nearest_neighbours
    from ..data.forgery import make_forgery
    from ..data.items import crop_face
    from ..data.landmark_cache import LandmarkCache, list_images

    out = Path(args.out)
    for sub in ("images", "masks", "originals"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    files = list_images(args.pool)
    lms = LandmarkCache().get_many(files)
    keep = [i for i, p in enumerate(lms) if p is not None]
    files, lms = [files[i] for i in keep], [lms[i] for i in keep]
    if not files:
        print(f"no faces found in {args.pool}")
        return 1
    rng = np.random.default_rng(args.seed)
    neighbours = nearest_neighbours(lms, k=20)
    policy = CropPolicy(size=args.size, margin=args.margin, align=True)
    regions = [r for r in args.regions.split(",") if r] or None
    options = {"ae_weights": args.ae_weights} if args.kind == "ae" else {}

    def aligned(i: int):
        crop, pts, _ = crop_face(load_image(files[i]), lms[i], policy)
        return crop, pts

    records, rows = [], []
    chosen = rng.choice(len(files), size=args.n, replace=args.n > len(files))
    for n, i in enumerate(chosen):
        crop, pts = aligned(int(i))
        donors = [aligned(int(j)) for j in rng.choice(neighbours[i], size=1)] if neighbours.shape[1] else None
        f = make_forgery(args.kind, crop, pts, rng, regions=regions, donors=donors, **options)
        name = f"{n:04d}.png"
        Image.fromarray(f.image).save(out / "images" / name)
        Image.fromarray((f.mask * 255 + 0.5).astype(np.uint8)).save(out / "masks" / name)
        Image.fromarray(crop).save(out / "originals" / name)
        meta = {k: v for k, v in f.meta.items() if k not in ("kind", "regions", "sentence")}
        records.append({"file": name, "source": files[i].name, "kind": f.meta["kind"], "label": f.label,
                        "regions": f.meta["regions"], "sentence": f.meta["sentence"], "meta": meta})
        if len(rows) < args.sheet_rows:
            rows.append((crop, f.image, f.mask, f.meta["sentence"]))
    (out / "fakes.json").write_text(json.dumps(records, indent=1) + "\n")
    contact_sheet(rows, out / "contact_sheet.png", f"{args.kind} forgeries from {Path(args.pool).name}")
    print(f"wrote {len(records)} {args.kind} forgeries, masks, fakes.json and contact_sheet.png to {out}")
    return 0
