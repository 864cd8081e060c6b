"""The one token-to-grid reshape and the one patch similarity, and that every user goes through them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors.patch_grid import patch_similarity, patch_similarity_row, tokens_to_grid


def test_tokens_to_grid_puts_each_patch_in_its_cell():
    b, g, c = 2, 3, 4
    patches = torch.randn(b, g * g, c)
    tokens = torch.cat([torch.full((b, 2, c), 99.0), patches], dim=1)  # two prefix tokens
    grid = tokens_to_grid(tokens, g, prefix_tokens=2)
    assert grid.shape == (b, c, g, g)
    for k in range(g * g):
        assert torch.equal(grid[:, :, k // g, k % g], patches[:, k])
    with pytest.raises(ValueError, match="do not fill"):
        tokens_to_grid(tokens, g, prefix_tokens=1)


def test_tokens_to_grid_leaves_unseen_patches_zero():
    tokens = torch.randn(1, 1 + 2, 5)
    grid = tokens_to_grid(tokens, 2, patch_ids=torch.tensor([3, 0]))
    assert torch.equal(grid[0, :, 1, 1], tokens[0, 1]) and torch.equal(grid[0, :, 0, 0], tokens[0, 2])
    assert not grid[0, :, 0, 1].any() and not grid[0, :, 1, 0].any()
    with pytest.raises(ValueError, match="patch ids"):
        tokens_to_grid(tokens, 2, patch_ids=torch.tensor([0]))


def test_patch_similarity_is_the_cosine():
    g = torch.Generator().manual_seed(0)
    emb, ref = torch.randn(2, 6, 3, 3, generator=g), torch.randn(2, 6, generator=g)
    want = torch.nn.functional.cosine_similarity(emb, ref[:, :, None, None], dim=1)
    assert torch.allclose(patch_similarity(emb, ref), want, atol=1e-6)
    row = patch_similarity_row(emb[1].numpy(), 4)
    assert isinstance(row, np.ndarray) and row.shape == (3, 3) and row[1, 1] == pytest.approx(1.0)
    assert np.allclose(row, patch_similarity(emb[1:], emb[1:, :, 1, 1])[0].numpy(), atol=1e-6)


def test_each_vit_reshape_is_the_shared_one(monkeypatch):
    """VLFFD (both towers), AntifakePrompt and RFFR turn tokens into grids through ``tokens_to_grid``."""
    import detectors.antifake_prompt as afp
    import detectors.rffr as rffr
    import detectors.towers as towers
    import detectors.vlffd as vlffd

    calls: list[int] = []

    def spy(tokens: torch.Tensor, grid: int, prefix_tokens: int = 1, patch_ids=None) -> torch.Tensor:
        calls.append(grid)
        return tokens_to_grid(tokens, grid, prefix_tokens, patch_ids)

    for module in (afp, rffr, towers, vlffd):
        monkeypatch.setattr(module, "tokens_to_grid", spy)
    tower = towers.VitTower.__new__(towers.VitTower)
    torch.nn.Module.__init__(tower)
    tower.vit, tower.grid = type("Vit", (), {"num_prefix_tokens": 1})(), 2
    assert tower.tokens_to_grid(torch.randn(1, 5, 3)).shape == (1, 3, 2, 2) and calls == [2]
    holder = type("Holder", (), {"config": type("C", (), {"input_size": 8, "patch_size": 4, "vision_tower": "clip"})()})()
    for cls in (vlffd.VlffdDetector, afp.AntifakePromptDetector):
        assert cls.reshape_transform(holder, torch.randn(1, 5, 3)).shape == (1, 3, 2, 2)
    rffr_holder = type("R", (), {"config": type("C", (), {"grid": 2})(), "_last_patch_ids": torch.tensor([1])})()
    assert rffr.RFFRDetector.reshape_transform(rffr_holder, torch.randn(1, 2, 3)).shape == (1, 3, 2, 2)
    assert calls == [2, 2, 2, 2]


def test_every_patch_similarity_reader_uses_the_shared_one(monkeypatch):
    """LAV's forward, its explanation, the app's patch probe and training's pseudo labels."""
    import detectors.lav as lav
    import explain.lav as explain_lav
    import pipeline.probe as probe
    import training.methods.lav as method

    assert explain_lav.patch_similarity_row is patch_similarity_row is probe.patch_similarity_row
    calls: list[tuple[int, ...]] = []

    def spy(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(embeddings.shape))
        return patch_similarity(embeddings, reference)

    monkeypatch.setattr(lav, "patch_similarity", spy)
    monkeypatch.setattr(method, "patch_similarity", spy)
    emb = torch.randn(3, 4, 2, 2)
    lav.similarity_to_peak(emb, torch.rand(3, 2, 2))
    method.sspsl_pseudo_labels(emb, torch.tensor([0, 1, 1]), torch.ones(2, 2))
    assert calls == [(3, 4, 2, 2), (2, 4, 2, 2), (2, 4, 2, 2)]
