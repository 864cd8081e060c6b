"""``python -m training.commands.make_examples``: the app's example photos.

The public-domain ``skimage.data.astronaut()`` portrait and forgeries this project makes of it
with the forgery lab (:mod:`training.lab`), each labelled with what was done, written to
``assets/examples/`` with an ``examples.json`` index the app reads. Deterministic (fixed seeds).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "write the app's example photos (astronaut portrait and forgeries made of it)"
ROOT = Path(__file__).resolve().parents[2]
SOURCE = "skimage.data.astronaut() (NASA portrait of Eileen Collins, public domain)"

#: (file, method, regions, seed, label) of each forgery; the real photo comes first.
FORGERIES = (
    ("astronaut_selfblend.png", "self-blend", ["face"], 3, "Forged: self-blend of the whole face (SBI-style)"),
    ("astronaut_donor_eyes_mouth.png", "donor blend", ["left_eye", "right_eye", "mouth"], 5,
     "Forged: donor blend of both eyes and the mouth"),
    ("astronaut_selfblend_nose.png", "self-blend", ["nose", "left_cheek", "right_cheek"], 7,
     "Forged: self-blend of the nose and both cheeks"),
    ("astronaut_autoencoder.png", "autoencoder deepfake", ["face"], 11,
     "Forged: autoencoder deepfake of the whole face"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=str(ROOT / "assets" / "examples"))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import skimage.data
    from PIL import Image

    from detectors.faces import detect_faces
    from training import lab

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = np.ascontiguousarray(skimage.data.astronaut())
    face = detect_faces(photo)[0]
    items = [{"file": "astronaut.png", "label": "Real: the astronaut portrait, untouched", "kind": "real",
              "source": SOURCE}]
    Image.fromarray(photo).save(out / "astronaut.png", optimize=True)
    for name, method, regions, seed, label in FORGERIES:
        if lab.METHODS[method] == "ae" and not lab.autoencoder_available():
            print(f"skipped {name}: no autoencoder weights in this build")
            continue
        made = lab.make_lab_forgery(photo, face, method, regions, seed)
        Image.fromarray(made.image).save(out / name, optimize=True)
        items.append({"file": name, "label": label, "kind": lab.METHODS[method], "regions": made.regions,
                      "seed": seed, "source": f"made from {SOURCE} by training.lab ({made.description})"})
        print(f"wrote {out / name}: {made.description}")
    (out / "examples.json").write_text(json.dumps(items, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=HELP)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
