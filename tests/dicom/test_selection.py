"""The triage Key Object Selection: the flagged images of one study, titled "Of Interest"."""

from __future__ import annotations

import io

import highdicom as hd
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sr.codedict import codes as dicom_codes
from tests.dicom.test_report import ALGORITHM, source_header

from cxreader import DISCLAIMER
from cxreader.dicom.identifiers import result_instance_uid, result_series_uid
from cxreader.dicom.report import Algorithm
from cxreader.dicom.selection import triage_selection

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
KEY_OBJECT_DESCRIPTION = dicom_codes.DCM.KeyObjectDescription
DESCRIPTION = "cxreader triage: Pneumothorax 0.91 (critical)"


def selection_of(sources: list[Dataset], algorithm: Algorithm = ALGORITHM) -> Dataset:
    study = sources[0].StudyInstanceUID
    document = triage_selection(
        sources,
        algorithm=algorithm,
        description=DESCRIPTION,
        series_instance_uid=result_series_uid(study, algorithm.checkpoint_sha256, "kos"),
        sop_instance_uid=result_instance_uid(study, algorithm.checkpoint_sha256, "kos"),
    )
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, document, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def one_study(count: int = 2) -> list[Dataset]:
    first = source_header()
    return [first] + [source_header(study_uid=first.StudyInstanceUID, seed=seed) for seed in range(1, count)]


def test_selection_references_the_flagged_images() -> None:
    sources = one_study()
    document = selection_of(sources)

    references = hd.sr.utils.find_content_items(document, value_type=hd.sr.ValueTypeValues.IMAGE)
    assert {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in references} == {
        source.SOPInstanceUID for source in sources
    }
    evidence = document.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == sources[0].StudyInstanceUID


def test_selection_is_of_interest_in_the_study_with_the_reason() -> None:
    sources = one_study()
    document = selection_of(sources)

    assert document.SOPClassUID == KEY_OBJECT_SELECTION
    assert document.Modality == "KO"
    assert document.StudyInstanceUID == sources[0].StudyInstanceUID
    assert document.PatientID == sources[0].PatientID
    title = document.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113000", "DCM")
    [text] = hd.sr.utils.find_content_items(document, name=KEY_OBJECT_DESCRIPTION)
    assert text.TextValue.startswith(DESCRIPTION)
    assert DISCLAIMER in text.TextValue


def test_selection_of_a_synthetic_model_says_so() -> None:
    synthetic = Algorithm("densenet121", "0.9.0", "ab" * 32, synthetic=True)
    document = selection_of(one_study(1), synthetic)

    [text] = hd.sr.utils.find_content_items(document, name=KEY_OBJECT_DESCRIPTION)
    assert text.TextValue.startswith("SYNTHETIC")
    assert document.SeriesDescription.startswith("SYNTHETIC")


def test_images_of_two_studies_are_refused() -> None:
    with pytest.raises(ValueError, match="2 studies"):
        selection_of([source_header(), source_header(seed=1)])


def test_no_image_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        triage_selection(
            [],
            algorithm=ALGORITHM,
            description=DESCRIPTION,
            series_instance_uid="1.2.3",
            sop_instance_uid="1.2.4",
        )
