"""Imports point down the layers only: a package never imports one that builds on it.

Read from the source (every ``import``, including function-local and type-only ones), so a
late import cannot hide an upward arrow.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_imported_modules_reads_relative_and_local_imports():
    assert "pipeline.results" in imported_modules(ROOT / "ui" / "texts.py")
    assert "explain.summary.escape" in imported_modules(ROOT / "ui" / "texts.py")


@pytest.mark.parametrize("path", sorted((ROOT / "explain").glob("*.py")), ids=lambda p: p.name)
def test_explain_imports_neither_the_pipeline_nor_training(path):
    upward = {m for m in imported_modules(path) if m.split(".")[0] in ("pipeline", "training", "ui")}
    assert not upward, f"{path.name} imports {sorted(upward)}"


#: The loading layers, lowest first (timm's order): each may import only the ones before it.
LOADING_LAYERS = ("errors", "file_format", "weight_files", "hub", "registry", "factory", "base")


@pytest.mark.parametrize("layer", LOADING_LAYERS)
def test_the_loading_layers_import_only_downward(layer):
    path = ROOT / "detectors" / f"{layer}.py"
    mine = {m.split(".")[1] for m in imported_modules(path) if m.startswith("detectors.") and m.count(".") >= 1}
    above = set(LOADING_LAYERS[LOADING_LAYERS.index(layer) + 1:])
    assert not mine & above, f"detectors/{layer}.py imports {sorted(mine & above)}, a layer above it"
