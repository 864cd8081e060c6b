"""``python -m training make-fakes`` on a one-face pool (the skimage astronaut)."""
from __future__ import annotations

import json

from PIL import Image

from training.cli import main


def test_make_fakes_writes_images_masks_sentences_and_a_sheet(tmp_path, astronaut, monkeypatch):
    monkeypatch.setenv("FORGERY_LENS_CACHE", str(tmp_path / "cache"))
    pool = tmp_path / "pool"
    pool.mkdir()
    Image.fromarray(astronaut).resize((256, 256)).save(pool / "astronaut.png")
    out = tmp_path / "out"
    assert main(["make-fakes", "--pool", str(pool), "--kind", "region", "--n", "3", "--out", str(out),
                 "--size", "128", "--sheet-rows", "2"]) == 0
    records = json.loads((out / "fakes.json").read_text())
    assert len(records) == 3
    for r in records:
        assert r["kind"] == "region" and r["label"] == 1 and r["sentence"].endswith("forged.")
        assert Image.open(out / "images" / r["file"]).size == (128, 128)
        assert Image.open(out / "masks" / r["file"]).mode == "L"
        # A one-face pool has no neighbours: donor parts must use (and name) a self-derived donor.
        assert all(m == "self-blend" or "self-derived" in m for m in r["meta"]["methods"].values())
    assert (out / "contact_sheet.png").stat().st_size > 10_000
