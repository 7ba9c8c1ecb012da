import pytest

from cxreader.labels import (
    FINDINGS,
    NO_FINDING,
    UnknownFindingError,
    canonical_finding,
    finding_index,
    format_finding_labels,
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
    with pytest.raises(UnknownFindingError):
        finding_index("No Finding")


def test_parse_and_format_round_trip():
    vector = parse_finding_labels("Effusion|Infiltration")
    assert vector[2] == 1 and vector[3] == 1 and sum(vector) == 2
    assert parse_finding_labels("No Finding") == [0] * 14
    assert format_finding_labels(vector) == "Effusion|Infiltration"
    assert format_finding_labels([0] * 14) == NO_FINDING
