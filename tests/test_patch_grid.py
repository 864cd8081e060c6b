"""The one patch similarity, and that every user goes through it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors.patch_grid import patch_similarity, patch_similarity_row


def test_patch_similarity_is_the_cosine():
    g = torch.Generator().manual_seed(0)
    emb, ref = torch.randn(2, 6, 3, 3, generator=g), torch.randn(2, 6, generator=g)
    want = torch.nn.functional.cosine_similarity(emb, ref[:, :, None, None], dim=1)
    assert torch.allclose(patch_similarity(emb, ref), want, atol=1e-6)
    row = patch_similarity_row(emb[1].numpy(), 4)
    assert isinstance(row, np.ndarray) and row.shape == (3, 3) and row[1, 1] == pytest.approx(1.0)
    assert np.allclose(row, patch_similarity(emb[1:], emb[1:, :, 1, 1])[0].numpy(), atol=1e-6)


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
