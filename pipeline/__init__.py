"""The analysis pipeline, free of UI types: load detectors, run them on a face, combine, report.

Shared by the app (``app.py`` and :mod:`ui`), the Python API and a command line::

    from pipeline import Analyzer, prepare, report
    analyzer = Analyzer()
    image = prepare("photo.jpg")
    data, gallery = report(list(analyzer.run(image)), image)

- :mod:`pipeline.slots`: which detector families exist (a slot per family, installed or not).
- :mod:`pipeline.loading`: models loaded once per ``(family, source)`` under the source policy.
- :mod:`pipeline.images`: an upload decoded and its faces found.
- :mod:`pipeline.running`: one detector on one face (crop, decide, explain); :class:`Analyzer`.
- :mod:`pipeline.results`: what one detector found, and its JSON.
- :mod:`pipeline.verdicts`: the verdict across detectors and the API's report.
- :mod:`pipeline.probe`: the clickable patch-similarity grid (LAV).
- :mod:`pipeline.video`: a clip sampled, its face followed, every detector per frame
  (:func:`analyze_video` -> :class:`VideoReport`; see docs/video.md).
- :mod:`pipeline.batch`: ``python -m pipeline analyze PATH... --out results.jsonl`` (docs/batch.md).
"""
from .images import PreparedImage, faces_picture, prepare
from .loading import LoadedDetector, ModelCache
from .probe import PatchProbe, patch_probe
from .results import DetectorResult, jsonable, measured_json
from .running import Analyzer, Choice, run_detector
from .slots import DetectorSlot, detector_slots
from .verdicts import Combined, combine, report
from .video import PreparedVideo, VideoDetectorResult, VideoReport, analyze_video, frame_evidence, prepare_video

__all__ = [
    "Analyzer",
    "Choice",
    "Combined",
    "DetectorResult",
    "DetectorSlot",
    "LoadedDetector",
    "ModelCache",
    "PatchProbe",
    "PreparedImage",
    "PreparedVideo",
    "VideoDetectorResult",
    "VideoReport",
    "analyze_video",
    "combine",
    "detector_slots",
    "faces_picture",
    "frame_evidence",
    "jsonable",
    "measured_json",
    "patch_probe",
    "prepare",
    "prepare_video",
    "report",
    "run_detector",
]
