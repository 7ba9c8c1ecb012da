"""Triage flags as a Key Object Selection a PACS worklist shows: "these images of the study are of interest".

A Key Object Selection Document (PS3.3 A.35.4; content PS3.16 TID 2010, written with highdicom) references the
flagged images of one study, with the document title DCM 113000 "Of Interest", the reason in words as the key
object description (e.g. "cxreader triage: Pneumothorax 0.91 (critical)"), and the model as a device observer.
It sits in its own series of that study. The description is followed by the disclaimer
:data:`cxreader.DISCLAIMER` and, for a synthetic model, starts with "SYNTHETIC": the description is the one text
a PACS shows with the selection.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes as dicom_codes

from cxreader import DISCLAIMER
from cxreader.dicom.report import (
    MANUFACTURER,
    SYNTHETIC_MARK,
    Algorithm,
    device_observer_context,
    evidence_header,
    series_description,
)

SERIES_DESCRIPTION = "cxreader triage (decision support)"
#: The document title (PS3.16 CID 7010 "Key Object Selection Document Title").
OF_INTEREST = dicom_codes.DCM.OfInterest


def triage_selection(
    sources: Sequence[Dataset],
    *,
    algorithm: Algorithm,
    description: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int = 9903,
    instance_number: int = 1,
) -> hd.ko.KeyObjectSelectionDocument:
    """A Key Object Selection flagging images of one study as "Of Interest".

    Args:
        sources: The headers of the flagged images (SOP Class and Instance UIDs, Study and Series modules), all
            of one study.
        algorithm: The model that flagged them.
        description: Why, in one line (the key object description, PS3.16 TID 2010 row 3).
        series_instance_uid: The document's series (:func:`cxreader.dicom.identifiers.result_series_uid`).
        sop_instance_uid: The document's SOP Instance UID (:func:`~cxreader.dicom.identifiers.result_instance_uid`
            keyed by the study).

    Raises:
        ValueError: when there is no source, or the sources belong to more than one study.
    """
    if not sources:
        raise ValueError("a key object selection needs at least one image")
    studies = {str(source.StudyInstanceUID) for source in sources}
    if len(studies) != 1:
        raise ValueError(f"the images belong to {len(studies)} studies; a key object selection covers one")
    headers = [evidence_header(source) for source in sources]
    content = hd.ko.KeyObjectSelection(
        document_title=OF_INTEREST,
        referenced_objects=headers,
        observer_device_context=device_observer_context(algorithm),
        description=key_object_description(description, synthetic=algorithm.synthetic),
    )
    return hd.ko.KeyObjectSelectionDocument(
        evidence=headers,
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        series_description=series_description(SERIES_DESCRIPTION, algorithm.synthetic),
        manufacturer_model_name=algorithm.name,
        software_versions=algorithm.version,
    )


def key_object_description(description: str, *, synthetic: bool) -> str:
    """The text of the key object description: the reason, the disclaimer, and SYNTHETIC first where it applies."""
    text = f"{description.strip()} {DISCLAIMER}"
    return f"{SYNTHETIC_MARK}: {text}" if synthetic and SYNTHETIC_MARK not in description else text
