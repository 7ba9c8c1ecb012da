import pytest

from cxreader.errors import CXReaderError
from cxreader.labels import (
    FINDINGS,
    NO_FINDING,
    UnknownFindingError,
    canonical_finding,
    parse_finding_labels,
)


def test_canonical_order_is_chexnet_order():
    assert FINDINGS[:4] == ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration")
    assert FINDINGS[-2:] == ("Pleural_Thickening", "Hernia")
    assert len(FINDINGS) == 14 and len(set(FINDINGS)) == 14


@pytest.mark.parametrize(
    "alias, expected",
    [
        ("Pleural Thickening", "Pleural_Thickening"),
        ("Infiltrate", "Infiltration"),
        ("effusion", "Effusion"),
        ("No Finding", NO_FINDING),
    ],
)
def test_aliases(alias, expected):
    assert canonical_finding(alias) == expected


def test_unknown_finding_is_refused_with_the_choices():
    with pytest.raises(UnknownFindingError, match="Atelectasis"):
        canonical_finding("Tuberculosis")


def test_unknown_finding_is_a_project_error_and_a_value_error():
    # The CLI prints project errors as one line; callers that validate values catch ValueError.
    assert issubclass(UnknownFindingError, CXReaderError) and issubclass(UnknownFindingError, ValueError)


def test_parse_finding_labels():
    vector = parse_finding_labels("Effusion|Infiltration")
    assert vector[2] == 1 and vector[3] == 1 and sum(vector) == 2
    assert parse_finding_labels("No Finding") == [0] * 14
