"""Screening at scale: folders of chest radiographs read, classified, stored and triaged by urgency.

``engine`` runs the pipeline (walk, read and hash in a thread pool, batched inference, atomic storage,
resume by content hash), ``backend`` wraps the model (PyTorch checkpoint or ONNX Runtime export), ``explain``
adds heatmaps and grounded descriptions where :mod:`cxreader.localization` is available, and ``triage``
orders the results by urgency. The same functions serve ``cxreader screen`` and the web service.
"""

from __future__ import annotations

from cxreader.screening.backend import ModelBackend, OnnxBackend, TorchBackend, load_backend, model_summary
from cxreader.screening.engine import (
    RADIOGRAPH_MODALITIES,
    DiscoveredFiles,
    PreparedImage,
    ScreeningReport,
    discover_files,
    prepare_image,
    screen,
)
from cxreader.screening.triage import (
    URGENCY_ORDER,
    TriageEntry,
    build_triage,
    format_triage,
    triage_from_database,
    write_triage_csv,
)

__all__ = [
    "RADIOGRAPH_MODALITIES",
    "URGENCY_ORDER",
    "DiscoveredFiles",
    "ModelBackend",
    "OnnxBackend",
    "PreparedImage",
    "ScreeningReport",
    "TorchBackend",
    "TriageEntry",
    "build_triage",
    "discover_files",
    "format_triage",
    "load_backend",
    "model_summary",
    "prepare_image",
    "screen",
    "triage_from_database",
    "write_triage_csv",
]
