"""The typed records of the records database: what callers store, and the one shape a stored image comes back in.

:class:`ImageResult` (with its :class:`StudyInfo` and one :class:`FindingResult` per finding of the checkpoint's
labels: the 14 CheXNet findings, or the label space its contract names) is what a screening run or an
upload gives :func:`cxreader.storage.write.add_image_result`; :class:`ImageRecord` is what reading and searching
return, and what the command line and the API schemas are built from. A stored finding comes back as the same
:class:`FindingResult` it was stored as. Plain frozen dataclasses: no SQLAlchemy import, safe to use after the
session is closed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class StudyInfo:
    """What is known about the study an image belongs to (from DICOM, or nothing for a plain image file).

    ``study_instance_uid`` groups images into one study; without it every image gets a study of its own.
    """

    patient_id: str | None = None
    study_instance_uid: str | None = None
    study_date: date | None = None
    accession_number: str | None = None
    study_description: str | None = None


@dataclass(frozen=True)
class FindingResult:
    """The model's output for one finding on one image, as stored and as read back.

    ``above_threshold`` is not an input: it is derived as ``probability >= threshold``, so a result can never
    claim a side of the threshold its numbers contradict.
    """

    finding: str
    probability: float
    threshold: float
    description: str | None = None
    description_data: Mapping[str, Any] | None = None
    caption: str | None = None
    heatmap_path: str | None = None
    #: (x, y, width, height) in pixels of the image, as in ``BBox_List_2017.csv``.
    box: tuple[int, int, int, int] | None = None
    above_threshold: bool = field(init=False)

    def __post_init__(self) -> None:
        # Malformed numbers are refused where results are stored (add_image_result), not here.
        numbers = is_unit(self.probability) and is_unit(self.threshold)
        above = numbers and float(self.probability) >= float(self.threshold)
        object.__setattr__(self, "above_threshold", above)


@dataclass(frozen=True)
class ImageResult:
    """Everything stored for one image the model read (metadata and the results of all the checkpoint's findings)
    or the input gate refused (metadata and the reasons, no findings)."""

    source_path: str
    content_sha256: str
    checkpoint_id: int
    findings: Sequence[FindingResult]
    study: StudyInfo = field(default_factory=StudyInfo)
    sop_instance_uid: str | None = None
    view_position: str | None = None
    modality: str | None = None
    width: int | None = None
    height: int | None = None
    #: Millimetres per pixel as (x, y), i.e. (column spacing, row spacing).
    pixel_spacing: tuple[float, float] | None = None
    synthetic: bool = False
    #: Why the input gate refused the image (then ``findings`` is empty and the image is stored as refused).
    refused: tuple[str, ...] = ()
    #: The gate's out-of-distribution score and threshold, where the model has the detector.
    gate_score: float | None = None
    gate_threshold: float | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One stored image (a result or a failure) with its study's details and its findings.

    ``findings`` are most probable first (ties in the checkpoint's label order): all the checkpoint's findings
    when read whole, only those that matched the finding filters of a search, none for a file that failed.
    ``score`` is derived: the largest of their probabilities.
    """

    image_id: int
    study_id: int | None
    checkpoint_id: int | None
    source_path: str
    content_sha256: str
    status: str
    failure_reason: str | None
    synthetic: bool
    created_at: datetime
    patient_id: str | None
    study_instance_uid: str | None
    study_date: date | None
    accession_number: str | None
    study_description: str | None
    sop_instance_uid: str | None
    view_position: str | None
    modality: str | None
    width: int | None
    height: int | None
    #: Millimetres per pixel as (x, y), as in :class:`ImageResult`.
    pixel_spacing: tuple[float, float] | None
    #: The model that produced the result: its checkpoint file's SHA-256, architecture name, and whether it
    #: was trained on synthetic data (``None`` when unknown); all ``None`` for a failure no model was run on.
    checkpoint_sha256: str | None
    model_name: str | None
    model_synthetic: bool | None
    #: The input gate's verdict where one was stored: the reasons it refused the image (empty: accepted), its
    #: out-of-distribution score and threshold.
    gate_reasons: tuple[str, ...] | None
    gate_score: float | None
    gate_threshold: float | None
    findings: tuple[FindingResult, ...]
    score: float | None = field(init=False)

    def __post_init__(self) -> None:
        best = max((item.probability for item in self.findings), default=None)
        object.__setattr__(self, "score", best)


@dataclass(frozen=True)
class ModelRecord:
    """A model whose results are stored: its checkpoint and how many images it has results for."""

    checkpoint_id: int
    sha256: str
    model_name: str | None
    version: str | None
    synthetic: bool | None
    created_at: datetime
    images: int


@dataclass(frozen=True)
class SearchPage:
    """One page of search results and the number of matches over all pages."""

    total: int
    limit: int
    offset: int
    rows: list[ImageRecord]


def is_unit(value: Any) -> bool:
    """Whether ``value`` is a finite number in [0, 1] (a probability or a threshold)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and 0.0 <= number <= 1.0


def as_date(value: date | None) -> date | None:
    """The date of a date or datetime.

    A datetime is a date too, but compares as a timestamp against DATE columns on some backends.
    """
    return value.date() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class DicomObjectRecord:
    """A DICOM object written for a stored result: its kind (``sr``, ``overlay``, ``kos``), UIDs, and the file
    it was written to (``None`` when it was only sent to a PACS)."""

    image_id: int
    kind: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    path: str | None
