"""Codes shared by the forgery engine, the data sets and the training methods."""
from __future__ import annotations

REAL = 0
SBI = 1  # self-blended image (SBI-style blendfake)
DONOR = 2  # donor blend (Face X-ray-style blendfake, "CBI" in ProDet)
DEEPFAKE = 3  # autoencoder deepfake (generative up-sampling artifacts)
REGION = 4  # region forgery with a sentence (VLFFD's PFIG)
KIND_NAMES = {REAL: "real", SBI: "sbi", DONOR: "donor", DEEPFAKE: "ae", REGION: "region"}
KIND_CODES = {v: k for k, v in KIND_NAMES.items()}

#: Facial parts a region forgery may touch, in the order of the multi-hot ``regions`` vector.
#: Names are the person's left/right (see ``detectors.faces.regions``).
SENTENCE_REGIONS = ("left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth",
                    "left_cheek", "right_cheek", "forehead", "face")
