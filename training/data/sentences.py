"""Sentences and region label vectors of VLFFD's Prompt Forgery Image Generator (PFIG).

The grammar (part names, "both eyes", the region, whole-face and real sentences, and
:func:`parse_sentence`, which inverts :func:`region_sentence`) lives in
:mod:`detectors.sentences`, the one home the detector's vocabulary is built from; it is
re-exported here. This module adds what only the engine needs: a sentence per forgery kind and
the multi-hot region vectors (also after a flip swaps left and right).
"""
from __future__ import annotations

import numpy as np

from detectors.sentences import (  # noqa: F401
    BOTH,
    DONOR_SENTENCE,
    GENERATED_SENTENCE,
    PART_NAMES,
    REAL_SENTENCE,
    SELF_BLEND_SENTENCE,
    WHOLE_FACE_SENTENCE,
    parse_sentence,
    region_sentence,
)

from . import kinds

#: Whole-face sentences per kind (their region vector marks ``face``).
WHOLE_FACE_SENTENCES = {
    kinds.SBI: SELF_BLEND_SENTENCE,
    kinds.DONOR: DONOR_SENTENCE,
    kinds.DEEPFAKE: GENERATED_SENTENCE,
    kinds.REGION: WHOLE_FACE_SENTENCE,
}


def sentence_for(kind: int, regions) -> str:
    if kind == kinds.REAL:
        return REAL_SENTENCE
    if kind == kinds.REGION:
        return region_sentence(regions)
    return WHOLE_FACE_SENTENCES[kind]


def region_vector(regions) -> np.ndarray:
    """Multi-hot float32 vector over :data:`kinds.SENTENCE_REGIONS`."""
    s = set(regions)
    return np.array([1.0 if r in s else 0.0 for r in kinds.SENTENCE_REGIONS], np.float32)


def regions_of(vector) -> list[str]:
    return [r for r, v in zip(kinds.SENTENCE_REGIONS, np.asarray(vector)) if v > 0.5]


_FLIP_INDEX = None


def flip_vector(vector: np.ndarray) -> np.ndarray:
    """Swap left/right entries of a region vector (what a horizontal flip does to the labels)."""
    from detectors.faces import flipped_name

    global _FLIP_INDEX
    if _FLIP_INDEX is None:
        _FLIP_INDEX = np.array([kinds.SENTENCE_REGIONS.index(flipped_name(r)) for r in kinds.SENTENCE_REGIONS])
    return np.asarray(vector)[_FLIP_INDEX].copy()
