"""One image's result as a DICOM Structured Report a PACS shows beside the image.

The document is a Comprehensive 3D SR (PS3.3 A.35.13) whose content is the DICOM PS3.16 TID 1500 "Measurement
Report", written with highdicom. It belongs to the study of the screened image (highdicom copies the Patient and
Study modules from the source header) and sits in a series of its own. Its content tree:

* **Observer context** (TID 1002): the model as a device observer (TID 1004: name "cxreader", the architecture as
  model name, manufacturer "cxreader"); procedure reported: SCT 413815006 "Chest imaging".
* **Imaging Measurements**, one measurement group per finding of the model (the 14 ChestX-ray14 findings, or the
  labels its checkpoint names), all of them, in :data:`cxreader.labels.HARMONISED_LABELS` order (a radiologist
  may want to see every probability, not only the positive ones):

  - a finding at or above its operating threshold **with a box**: TID 1410 "Planar ROI Measurements and
    Qualitative Evaluations", its region a closed POLYLINE rectangle in the source image's pixel coordinates
    (PS3.3 C.18.6.1.2: column\\row, ``0\\0`` the top left corner of the top left pixel, so the box
    ``(x, y, w, h)`` runs from ``(x, y)`` to ``(x + w, y + h)``);
  - every other finding (below its threshold, or positive without a box): TID 1501 "Measurement and Qualitative
    Evaluation Group" referencing the source image. TID 1501 carries one finding per group, so each finding has
    a group of its own rather than one group holding a row of unnamed probabilities.

  Each group names the finding (:func:`cxreader.dicom.codes.finding_code`), its finding sites with laterality
  where a grounded description gives them, the measurements (TID 300) probability and operating threshold
  (unit UCUM "1") and, where the source has a pixel spacing, the long axis of the box in millimetres, each
  carrying the algorithm identification (TID 4019: name, version, checkpoint SHA-256, synthetic or real
  training data); and a coded qualitative evaluation: at or above, or below, the operating threshold.
* **Qualitative Evaluations** (TID 1500 row 12): the disclaimer :data:`cxreader.DISCLAIMER` as a TEXT comment,
  and a SYNTHETIC notice when the model or the image is synthetic.

An image the input gate **refused** gets one TID 1501 group: the qualitative evaluation "Reading status: Not
read", one TEXT item "Reason not read" per reason (TID 1501 row 12), and the gate's out-of-distribution score
and threshold where they exist.

The report is COMPLETE, PRELIMINARY and UNVERIFIED: decision support no person has signed. Synthetic results
say SYNTHETIC in the series description too, which every PACS lists. :func:`read_report` reads a report back.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.sr.enum import GraphicTypeValues, RelationshipTypeValues, ValueTypeValues
from highdicom.sr.utils import find_content_items
from pydicom import Dataset, config
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.sr.coding import Code
from pydicom.valuerep import validate_value

from cxreader import DISCLAIMER
from cxreader.dicom import codes
from cxreader.dicom.identifiers import device_observer_uid, tracking_uid
from cxreader.labels import display_name
from cxreader.storage.records import FindingResult, ImageResult

# highdicom warns about person names with one component and quotes the name: patient names must never reach a
# log, and a one-component name is valid DICOM.
warnings.filterwarnings(
    "ignore", message=r".*unlikely to represent the intended person name", category=UserWarning
)

MANUFACTURER = "cxreader"
SERIES_DESCRIPTION = "cxreader findings (decision support)"
#: The word a PACS user sees on everything derived from synthetic data.
SYNTHETIC_MARK = "SYNTHETIC"
SYNTHETIC_TEXT = "SYNTHETIC: derived from synthetic data, not for patients."
_CHECKPOINT_PARAMETER = "checkpoint SHA-256 "
_SYNTHETIC_PARAMETER = "SYNTHETIC: trained on synthetic data"
_REAL_PARAMETER = "trained on real data"
_GATE_TRACKING_NAME = "Input gate"
#: Patient and General Study attributes highdicom copies into every object it writes (type 2 there: present,
#: possibly empty).
_PATIENT_STUDY_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_FIRST_PIXEL_TAG = 0x7FE00000


@dataclass(frozen=True)
class Algorithm:
    """What identifies the model that produced a result, as every object cxreader writes names it.

    Attributes:
        name: The architecture or model name (``densenet121``).
        version: The model or cxreader version.
        checkpoint_sha256: SHA-256 of the checkpoint file.
        synthetic: Whether the checkpoint was trained on synthetic data.
    """

    name: str
    version: str
    checkpoint_sha256: str
    synthetic: bool

    def algorithm_identification(self) -> hd.sr.AlgorithmIdentification:
        """The PS3.16 TID 4019 "Algorithm Identification" of the model."""
        return hd.sr.AlgorithmIdentification(
            name=self.name,
            version=self.version,
            parameters=[
                f"{_CHECKPOINT_PARAMETER}{self.checkpoint_sha256}",
                _SYNTHETIC_PARAMETER if self.synthetic else _REAL_PARAMETER,
            ],
        )


@dataclass(frozen=True)
class ReportedFinding:
    """One finding as a report states it.

    Attributes:
        box: ``(x, y, w, h)`` in source pixels, for a positive finding with a region.
        side: ``right``, ``left`` or ``bilateral`` where the report gives a laterality.
        size_mm: The long axis of the box, where the source had a pixel spacing.
    """

    finding: str
    probability: float
    threshold: float
    box: tuple[int, int, int, int] | None = None
    side: str | None = None
    size_mm: float | None = None

    @property
    def above_threshold(self) -> bool:
        """Whether the probability reaches the operating threshold (as :class:`FindingResult` decides)."""
        return self.probability >= self.threshold


@dataclass(frozen=True)
class ReportContents:
    """What :func:`read_report` reads from a report.

    Attributes:
        findings: The findings at or above their operating thresholds, in
            :data:`cxreader.labels.HARMONISED_LABELS` order.
        refused_reasons: Why the image was not read (empty when it was).
        checkpoint_sha256: The model's checkpoint, from the algorithm identification.
        synthetic: Whether the report says the model or the image is synthetic.
        all_findings: Every finding the report states, in the same order (all the model's findings for an image
            that was read).
    """

    findings: list[ReportedFinding]
    refused_reasons: tuple[str, ...]
    checkpoint_sha256: str | None
    synthetic: bool
    all_findings: list[ReportedFinding] = field(default_factory=list)


def measurement_report(
    source: Dataset,
    result: ImageResult,
    *,
    algorithm: Algorithm,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int = 9901,
    instance_number: int = 1,
) -> hd.sr.Comprehensive3DSR:
    """Write one image's result as a TID 1500 Measurement Report (module docstring).

    Args:
        source: The screened image's header (``stop_before_pixels=True`` is enough): Patient, Study and Series
            modules, SOP Class and Instance UIDs, Rows and Columns.
        result: The image's result: its findings (one per label of the model), or the reasons the input gate
            refused it.
        algorithm: The model that produced the result.
        series_instance_uid: The report's series (:func:`cxreader.dicom.identifiers.result_series_uid`).
        sop_instance_uid: The report's SOP Instance UID (:func:`~cxreader.dicom.identifiers.result_instance_uid`).

    Raises:
        ValueError: when the result has neither findings nor refusal reasons.
    """
    header = evidence_header(source)
    algorithm_id = algorithm.algorithm_identification()  # one for every measurement of the report
    if result.refused:
        groups = [_refusal_group(header, result, algorithm_id, sop_instance_uid)]
    elif result.findings:
        groups = [
            _finding_group(header, finding, result, algorithm_id, sop_instance_uid)
            for finding in _in_canonical_order(result.findings)
        ]
    else:
        raise ValueError("the result has neither findings nor reasons it was refused: nothing to report")
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=device_observer_context(algorithm)
        ),
        procedure_reported=codes.CHEST_IMAGING,
        imaging_measurements=groups,
    )
    content[0].ContentSequence.append(_notices(synthetic=algorithm.synthetic or result.synthetic))
    return hd.sr.Comprehensive3DSR(
        evidence=[header],
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=series_description(SERIES_DESCRIPTION, algorithm.synthetic or result.synthetic),
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
        coding_schemes=[codes.private_scheme_identification()],
    )


def read_report(dataset: Dataset) -> ReportContents:
    """Read a report written by :func:`measurement_report` back.

    Args:
        dataset: The report, as read by :func:`pydicom.dcmread`.

    Raises:
        ValueError: when the dataset is not a TID 1500 Comprehensive 3D SR.
    """
    document = hd.sr.Comprehensive3DSR.from_dataset(dataset)
    report = document.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise ValueError("the SR document is not a TID 1500 Measurement Report")
    findings = [_reported_finding(group) for group in report.get_planar_roi_measurement_groups()]
    reasons: list[str] = []
    for group in report.get_image_measurement_groups():
        if group.finding_type is not None and codes.finding_name(group.finding_type) is not None:
            findings.append(_reported_finding(group))
        reasons.extend(_texts(group[0], codes.NOT_READ_REASON))
    parameters = _texts(report[0], dicom_codes.DCM.AlgorithmParameters, recursive=True)
    ordered = sorted(findings, key=lambda item: list(codes.FINDING_CODES).index(item.finding))
    return ReportContents(
        findings=[item for item in ordered if item.above_threshold],
        all_findings=ordered,
        refused_reasons=tuple(reasons),
        checkpoint_sha256=_checkpoint_of(parameters),
        synthetic=_SYNTHETIC_PARAMETER in parameters
        or bool(_texts(report[0], codes.SYNTHETIC_NOTICE, recursive=True)),
    )


def evidence_header(source: Dataset) -> Dataset:
    """A copy of the source's header (no pixel data) in which the Patient and General Study attributes that
    highdicom copies into the objects it writes are present, empty where the source has none (they are type 2
    in PS3.3 C.7.1.1 and C.7.2.1)."""
    header = Dataset()
    for element in source:
        if element.tag < _FIRST_PIXEL_TAG and _valid_for_its_vr(element):
            header.add(copy.deepcopy(element))
    for keyword in _PATIENT_STUDY_TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def _valid_for_its_vr(element: Any) -> bool:
    """Whether an element's value is valid for its VR (PS3.5 6.2): an invalid source value (e.g. Patient's Age
    written ``62`` instead of ``062Y``) is left out rather than copied into an object that would then fail
    validation; type-2 attributes are then added back empty."""
    if element.VR in ("SQ", "UN") or element.value is None:
        return True
    values = element.value if element.VM > 1 else [element.value]
    try:
        for value in values:
            validate_value(element.VR, value, config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def device_observer_context(algorithm: Algorithm) -> hd.sr.ObserverContext:
    """The model as a device observer (PS3.16 TID 1002 / TID 1004)."""
    return hd.sr.ObserverContext(
        observer_type=dicom_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_observer_uid(algorithm.checkpoint_sha256),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=algorithm.name,
        ),
    )


def series_description(text: str, synthetic: bool) -> str:
    """A series description, marked SYNTHETIC where the result is (a PACS lists it with every series)."""
    return f"{SYNTHETIC_MARK} {text}" if synthetic else text


def _in_canonical_order(findings: Sequence[FindingResult]) -> list[FindingResult]:
    order = list(codes.FINDING_CODES)
    return sorted(
        findings, key=lambda item: order.index(item.finding) if item.finding in order else len(order)
    )


def _finding_group(
    source: Dataset,
    finding: FindingResult,
    result: ImageResult,
    algorithm_id: hd.sr.AlgorithmIdentification,
    report_uid: str,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations:
    description = finding.description_data if finding.above_threshold else None
    common: dict[str, Any] = {
        "tracking_identifier": hd.sr.TrackingIdentifier(
            uid=tracking_uid(report_uid, finding.finding), identifier=display_name(finding.finding)
        ),
        "finding_type": codes.finding_code(finding.finding),
        "finding_sites": finding_sites(description) or None,
        "measurements": _measurements(finding, description, result, algorithm_id),
        "qualitative_evaluations": [
            hd.sr.QualitativeEvaluation(
                name=codes.DECISION,
                value=codes.AT_OR_ABOVE_THRESHOLD if finding.above_threshold else codes.BELOW_THRESHOLD,
            )
        ],
    }
    if finding.above_threshold and finding.box is not None:
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=box_region(source, finding.box), **common
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)], **common
    )


def _measurements(
    finding: FindingResult,
    description: Mapping[str, Any] | None,
    result: ImageResult,
    algorithm_id: hd.sr.AlgorithmIdentification,
) -> list[hd.sr.Measurement]:
    values = [
        (codes.PROBABILITY, float(finding.probability), codes.NO_UNITS),
        (codes.THRESHOLD, float(finding.threshold), codes.NO_UNITS),
    ]
    size_cm = (description or {}).get("size_cm")
    if result.pixel_spacing is not None and size_cm is not None:
        values.append((codes.LONG_AXIS, float(size_cm) * 10.0, codes.MILLIMETRE))
    return [
        hd.sr.Measurement(name=name, value=value, unit=unit, algorithm_id=algorithm_id)
        for name, value, unit in values
    ]


def _refusal_group(
    source: Dataset, result: ImageResult, algorithm_id: hd.sr.AlgorithmIdentification, report_uid: str
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    gate_numbers = [
        (codes.OUT_OF_DISTRIBUTION_SCORE, result.gate_score),
        (codes.OUT_OF_DISTRIBUTION_THRESHOLD, result.gate_threshold),
    ]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(report_uid, _GATE_TRACKING_NAME), identifier=_GATE_TRACKING_NAME
        ),
        algorithm_id=algorithm_id,
        measurements=[
            hd.sr.Measurement(name=name, value=float(value), unit=codes.NO_UNITS)
            for name, value in gate_numbers
            if value is not None
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=codes.READING_STATUS, value=codes.NOT_READ)
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    for reason in result.refused:
        group[0].ContentSequence.append(_text(codes.NOT_READ_REASON, reason))
    return group


def finding_sites(description: Mapping[str, Any] | None) -> list[hd.sr.FindingSite]:
    """The finding sites of a grounded description (``side``, ``zone``, ``organ`` of
    :meth:`cxreader.localization.describe.FindingDescription.to_json_dict`).

    The organ (unless the lung, which a lung zone already implies), then the lung zone when the zone is upper,
    middle or lower, else the lung; each with the laterality of the side (none for ``midline``). A side with
    neither organ nor zone gives the thorax with that laterality.
    """
    if not description:
        return []
    laterality = codes.LATERALITY_CODES.get(str(description.get("side") or "").lower())
    organ = str(description.get("organ") or "").lower()
    zone = str(description.get("zone") or "").lower()
    locations: list[Code] = []
    if organ in codes.ORGAN_CODES and organ != "lung":
        locations.append(codes.ORGAN_CODES[organ])
    if zone in codes.ZONE_CODES:
        locations.append(codes.ZONE_CODES[zone])
    elif organ == "lung":
        locations.append(codes.ORGAN_CODES["lung"])
    if not locations and laterality is not None:
        locations.append(codes.THORAX)
    return [hd.sr.FindingSite(anatomic_location=location, laterality=laterality) for location in locations]


def box_region(source: Dataset, box: Sequence[int]) -> hd.sr.ImageRegion:
    """A box ``(x, y, w, h)`` in source pixels as a closed POLYLINE rectangle (PS3.3 C.18.6.1.2 coordinates)."""
    x, y, width, height = (float(value) for value in box)
    corners = [(x, y), (x + width, y), (x + width, y + height), (x, y + height), (x, y)]
    return hd.sr.ImageRegion(
        graphic_type=GraphicTypeValues.POLYLINE,
        graphic_data=np.array(corners, dtype=np.float64),
        source_image=hd.sr.SourceImageForRegion.from_source_image(source),
    )


def box_of_region(region: hd.sr.ImageRegion) -> tuple[int, int, int, int]:
    """The box ``(x, y, w, h)`` a :func:`box_region` rectangle encloses."""
    points = np.asarray(region.value, dtype=np.float64)
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    return (round(left), round(top), round(right - left), round(bottom - top))


def _notices(*, synthetic: bool) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(
        name=codes.QUALITATIVE_EVALUATIONS, relationship_type=RelationshipTypeValues.CONTAINS
    )
    items = [_text(codes.COMMENT, DISCLAIMER)]
    if synthetic:
        items.append(_text(codes.SYNTHETIC_NOTICE, SYNTHETIC_TEXT))
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS)


def _reported_finding(
    group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations,
) -> ReportedFinding:
    finding_type = group.finding_type
    name = codes.finding_name(finding_type) if finding_type is not None else None
    if name is None:
        raise ValueError(f"a measurement group names no finding cxreader knows: {finding_type}")
    region = group.roi if isinstance(group, hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations) else None
    sides = [codes.side_name(site.laterality) for site in group.finding_sites]
    return ReportedFinding(
        finding=name,
        probability=_measured(group, codes.PROBABILITY),
        threshold=_measured(group, codes.THRESHOLD),
        box=box_of_region(region) if isinstance(region, hd.sr.ImageRegion) else None,
        side=next((side for side in sides if side is not None), None),
        size_mm=_measured(group, codes.LONG_AXIS, required=False),
    )


def _measured(group: Any, name: Code, *, required: bool = True) -> Any:
    measurements = group.get_measurements(name=name)
    if not measurements:
        if required:
            raise ValueError(f"a measurement group has no {name.meaning!r}")
        return None
    return float(measurements[0].value)


def _texts(item: Dataset, name: Code, *, recursive: bool = False) -> list[str]:
    matches = find_content_items(item, name=name, value_type=ValueTypeValues.TEXT, recursive=recursive)
    return [str(match.TextValue) for match in matches]


def _checkpoint_of(parameters: Sequence[str]) -> str | None:
    for parameter in parameters:
        if parameter.startswith(_CHECKPOINT_PARAMETER):
            return parameter[len(_CHECKPOINT_PARAMETER) :]
    return None
