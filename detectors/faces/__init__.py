"""The face pipeline: read an upload, find faces and landmarks, align crops, region masks."""
from .align import AlignedFace, CropPolicy, align_face
from .errors import FaceError, ImageTooLarge, ImageUnreadable, NoFaceFound
from .io import load_image
from .landmarks import Face, detect_faces
from .regions import FLIP_PAIRS, REGIONS, flipped_name, region_mask, region_masks

__all__ = [
    "FLIP_PAIRS",
    "REGIONS",
    "AlignedFace",
    "CropPolicy",
    "Face",
    "FaceError",
    "ImageTooLarge",
    "ImageUnreadable",
    "NoFaceFound",
    "align_face",
    "detect_faces",
    "flipped_name",
    "load_image",
    "region_mask",
    "region_masks",
]
