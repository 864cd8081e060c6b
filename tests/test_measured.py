"""What the app, the About tab and the README say about each checkpoint's accuracy comes from
the figures its ``config.json`` records, never typed by hand."""
from __future__ import annotations

from pathlib import Path

import pytest

from detectors.hub import demo_checkpoint_dir, read_config
from detectors.measured import measured_of
from detectors.registry import BUILTIN_FAMILIES
from training.commands import measured as measured_cmd

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("family", BUILTIN_FAMILIES)
def test_every_shipped_checkpoint_records_how_well_it_detects_by_kind(family):
    config = read_config(demo_checkpoint_dir(family))
    records = config["extra"]["measured"]
    assert {"heldout", "stylegan2"} <= set(records), "record both with `python -m training evaluate ... --record`"
    for name, record in records.items():
        assert record["command"].startswith(f"python -m training evaluate --detector {family}_demo"), name
        assert record["threshold"] == pytest.approx(config["threshold"], abs=1e-4), f"{name}: measured at another threshold"
        assert record["kinds"] and all(0.0 <= k["auc"] <= 1.0 for k in record["kinds"].values())
    assert records["heldout"]["draws"] == 6 and records["heldout"]["split"] == "val"
    m = measured_of(config)
    assert 0.0 <= m.skill <= 1.0 and m.sentence().startswith("It ")


def test_the_readme_table_is_the_one_the_checkpoints_record():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = measured_cmd.with_table(readme, measured_cmd.table(list(BUILTIN_FAMILIES)))
    assert readme == expected, "run `python -m training measured --readme README.md`"


def test_the_table_reads_each_row_in_one_sentence():
    rows = measured_cmd.table(list(BUILTIN_FAMILIES)).splitlines()[2:]
    assert len(rows) == len(BUILTIN_FAMILIES)
    for row in rows:
        sentence = row.rstrip(" |").rsplit(" | ", 1)[1]
        assert sentence.startswith("It ") and sentence.count(". ") == 0 and sentence.endswith(").")
