"""The coded concepts cxreader's DICOM results are written with.

Source: DICOM PS3.16 (Content Mapping Resource) as shipped in pydicom's code dictionary
(:data:`pydicom.sr.codedict.codes`): SNOMED CT (``SCT``) wherever the dictionary holds a concept that means the
radiological finding, DICOM (``DCM``) where PS3.16 defines a chest radiography concept of its own (the Chest CAD
context groups CID 6102 and CID 6104: Infiltrate, Opacity), UCUM for units. A concept the dictionary lacks gets
a code of cxreader's own in the private coding scheme :data:`PRIVATE_SCHEME` (``99CXREADER``; PS3.3 Section 8.2.2
reserves designators beginning with ``99`` for private schemes). Private code values never change once written:
a PACS or a later cxreader reads them back.

Every object that uses a private code declares the scheme in its Coding Scheme Identification Sequence
(:func:`private_scheme_identification`, PS3.3 C.12.1.1.2).
"""

from __future__ import annotations

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from cxreader.labels import UnknownFindingError, canonical_finding

#: The private coding scheme designator of cxreader's own concepts.
PRIVATE_SCHEME = "99CXREADER"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


#: Every finding cxreader can report, by its canonical name, as a coded concept:
#:
#: ====================== ====================================== ===================================
#: Finding                Code                                   Why
#: ====================== ====================================== ===================================
#: Atelectasis            99CXREADER CX-ATELECTASIS              only plate-like/discoid subtypes
#: Cardiomegaly           SCT 287272002 Cardiomegaly
#: Effusion               SCT 60046008 Pleural effusion          NIH "Effusion" is pleural
#: Infiltration           DCM 112121 Infiltrate                  PS3.16 CID 6104 (Chest CAD)
#: Mass                   SCT 4147007 Mass
#: Nodule                 SCT 27925004 Nodule
#: Pneumonia              99CXREADER CX-PNEUMONIA                not in the dictionary
#: Pneumothorax           SCT 36118008 Pneumothorax
#: Consolidation          99CXREADER CX-CONSOLIDATION            not in the dictionary
#: Edema                  SCT 19242006 Pulmonary edema
#: Emphysema              99CXREADER CX-EMPHYSEMA                only mediastinal emphysema
#: Fibrosis               SCT 112674009 Fibrosis                 no pulmonary fibrosis; site = lung
#: Pleural_Thickening     99CXREADER CX-PLEURAL-THICK            not in the dictionary
#: Hernia                 99CXREADER CX-HIATAL-HERNIA            NIH means hiatal hernia
#: Lung Opacity           DCM 112001 Opacity                     PS3.16 CID 6104 (Chest CAD)
#: Lung Lesion            SCT 52988006 Lesion                    site = lung
#: Enlarged Cardiomed.    99CXREADER CX-ENLARGED-CM              not in the dictionary
#: Fracture               99CXREADER CX-FRACTURE                 only fracture of lower limb
#: Support Devices        99CXREADER CX-SUPPORT-DEV              only single device types
#: ====================== ====================================== ===================================
#:
#: The last five are CheXpert observations (:data:`cxreader.labels.EXTRA_FINDINGS`), for models trained on those
#: labels. The keys are the canonical names (:data:`cxreader.labels.HARMONISED_LABELS`, in its order).
FINDING_CODES: dict[str, Code] = {
    "Atelectasis": _private("CX-ATELECTASIS", "Atelectasis"),
    "Cardiomegaly": codes.SCT.Cardiomegaly,
    "Effusion": codes.SCT.PleuralEffusion,
    "Infiltration": codes.DCM.Infiltrate,
    "Mass": codes.SCT.Mass,
    "Nodule": codes.SCT.Nodule,
    "Pneumonia": _private("CX-PNEUMONIA", "Pneumonia"),
    "Pneumothorax": codes.SCT.Pneumothorax,
    "Consolidation": _private("CX-CONSOLIDATION", "Consolidation of lung"),
    "Edema": codes.SCT.PulmonaryEdema,
    "Emphysema": _private("CX-EMPHYSEMA", "Pulmonary emphysema"),
    "Fibrosis": codes.SCT.Fibrosis,
    "Pleural_Thickening": _private("CX-PLEURAL-THICK", "Pleural thickening"),
    "Hernia": _private("CX-HIATAL-HERNIA", "Hiatal hernia"),
    "Lung_Opacity": codes.DCM.Opacity,
    "Lung_Lesion": codes.SCT.Lesion,
    "Enlarged_Cardiomediastinum": _private("CX-ENLARGED-CM", "Enlarged cardiomediastinum"),
    "Fracture": _private("CX-FRACTURE", "Fracture"),
    "Support_Devices": _private("CX-SUPPORT-DEV", "Support devices"),
}

#: The model's probability of a finding (TID 300 measurement, unit :data:`NO_UNITS`).
PROBABILITY = codes.DCM.Probability
#: The operating threshold the probability is compared with (TID 300 measurement, unit :data:`NO_UNITS`).
THRESHOLD = codes.DCM.ThresholdValue
#: The unit of a probability or a threshold: UCUM "1".
NO_UNITS = codes.UCUM.NoUnits
#: The longer side of a finding's box (TID 300 measurement, unit :data:`MILLIMETRE`; PS3.16 CID 7470).
LONG_AXIS = codes.SCT.LongAxis
MILLIMETRE = codes.UCUM.Millimeter

#: Whether the probability reached the threshold (a qualitative evaluation, TID 1501 row 11).
DECISION = _private("CX-DECISION", "Model decision")
AT_OR_ABOVE_THRESHOLD = _private("CX-POSITIVE", "At or above operating threshold")
BELOW_THRESHOLD = _private("CX-NEGATIVE", "Below operating threshold")

#: Whether the model read the image at all (a qualitative evaluation), and why not (TEXT, TID 1501 row 12).
READING_STATUS = _private("CX-READ-STATUS", "Reading status")
NOT_READ = _private("CX-NOT-READ", "Not read")
NOT_READ_REASON = _private("CX-NOT-READ-WHY", "Reason not read")
#: The input gate's out-of-distribution score and its threshold (TID 300 measurements, :data:`NO_UNITS`).
OUT_OF_DISTRIBUTION_SCORE = _private("CX-OOD-SCORE", "Out-of-distribution score")
OUT_OF_DISTRIBUTION_THRESHOLD = _private("CX-OOD-THRESHOLD", "Out-of-distribution threshold")

#: Document-level notices (TEXT items of TID 1500's "Qualitative Evaluations").
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = codes.DCM.Comment
SYNTHETIC_NOTICE = _private("CX-SYNTHETIC", "Synthetic data notice")

#: The procedure a report is about (TID 1500 "Procedure reported", extensible CID 100).
CHEST_IMAGING = codes.SCT.ChestImaging

#: Laterality (PS3.16 CID 244) by the ``side`` of a grounded description; ``midline`` has none.
LATERALITY_CODES: dict[str, Code] = {
    "right": codes.SCT.Right,
    "left": codes.SCT.Left,
    "bilateral": codes.SCT.Bilateral,
}

#: Lung zones (PS3.16 CID 6171) by the ``zone`` of a grounded description.
ZONE_CODES: dict[str, Code] = {
    "upper": codes.SCT.UpperZoneOfLung,
    "middle": codes.SCT.MiddleZoneOfLung,
    "lower": codes.SCT.LowerZoneOfLung,
}

#: Anatomic sites by the ``organ`` of a grounded description.
ORGAN_CODES: dict[str, Code] = {
    "lung": codes.SCT.Lung,
    "pleura": codes.SCT.Pleura,
    "heart": codes.SCT.Heart,
    "mediastinum": codes.SCT.Mediastinum,
    "diaphragm": codes.SCT.Diaphragm,
    # A fracture on a chest radiograph is of a rib, a clavicle, a scapula or a vertebra: the bones of the thorax.
    "bone": codes.SCT.BoneOfThorax,
    # "device" (support devices) is no anatomic site: such a finding has no finding site.
}
THORAX = codes.SCT.Thorax

_NAME_BY_CODE = {(code.value, code.scheme_designator): name for name, code in FINDING_CODES.items()}


def finding_code(name: str) -> Code:
    """The coded concept of a finding.

    Args:
        name: A finding of :data:`cxreader.labels.HARMONISED_LABELS` (the 14 ChestX-ray14 findings and the
            CheXpert observations) in any spelling :func:`~cxreader.labels.canonical_finding` knows.

    Raises:
        ValueError: when the name is no finding cxreader has a code for.
    """
    if name in FINDING_CODES:
        return FINDING_CODES[name]
    try:
        return FINDING_CODES[canonical_finding(name)]
    except (UnknownFindingError, KeyError):
        raise ValueError(
            f"no code for finding {name!r}; expected one of: {', '.join(FINDING_CODES)}"
        ) from None


def finding_name(code: Code | hd.sr.CodedConcept) -> str | None:
    """The finding a coded concept stands for, canonically spelled (the inverse of :func:`finding_code`),
    ``None`` if none."""
    return _NAME_BY_CODE.get((str(code.value), str(code.scheme_designator)))


def side_name(code: Code | hd.sr.CodedConcept | None) -> str | None:
    """The ``side`` word of a laterality code (``right``/``left``/``bilateral``), ``None`` if none."""
    if code is None:
        return None
    for side, known in LATERALITY_CODES.items():
        if (known.value, known.scheme_designator) == (str(code.value), str(code.scheme_designator)):
            return side
    return None


def same_code(first: Code | hd.sr.CodedConcept, second: Code | hd.sr.CodedConcept) -> bool:
    """Whether two coded concepts are the same concept (value and scheme; the meaning is only a label)."""
    return (str(first.value), str(first.scheme_designator)) == (
        str(second.value),
        str(second.scheme_designator),
    )


def private_scheme_identification() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification item (PS3.3 C.12.1.1.2) that declares :data:`PRIVATE_SCHEME`."""
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name="cxreader private concepts",
        responsible_organization="cxreader",
    )
