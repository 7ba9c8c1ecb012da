"""The report vocabulary and the MeSH annotation grammar: parsing, finding mapping, token round trips."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from cxreader.labels import FINDINGS, ORGAN_OF
from cxreader.vocabulary import (
    DESCRIPTORS,
    FINDING_HEADINGS,
    KNOWN_HEADINGS,
    LOCATIONS,
    MESH_ORGANS,
    MESH_SEVERITIES,
    NUMBERS,
    ORGANS,
    SEVERITIES,
    SIDES,
    SIZES,
    SPECIAL_ZONES,
    ZONE_LOCATIONS,
    ZONES,
    MeshAnnotation,
    annotation_tokens,
    finding_annotation,
    heading_finding,
    is_known_heading,
    is_known_modifier,
    parse_mesh,
    size_word,
    to_mesh_string,
    to_token,
    tokens_to_annotation,
    zone_of,
)

M = MeshAnnotation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Opacity/lung/upper lobe/right/streaky",
            M(
                "Opacity",
                "lung",
                ("upper lobe",),
                "right",
                other_modifiers=("streaky",),
                finding="Infiltration",
            ),
        ),
        (
            "Calcified Granuloma/lung/bilateral/scattered/multiple",
            M(
                "Calcified Granuloma",
                "lung",
                (),
                "bilateral",
                number="multiple",
                other_modifiers=("scattered",),
            ),
        ),
        ("normal", M("normal")),
        ("Cardiomegaly/mild", M("Cardiomegaly", severity="mild", finding="Cardiomegaly")),
        (
            "Pulmonary Atelectasis/base/left",
            M("Pulmonary Atelectasis", None, ("base",), "left", finding="Atelectasis"),
        ),
        (
            "Pleural Effusion/right/moderate",
            M("Pleural Effusion", side="right", severity="moderate", finding="Effusion"),
        ),
        ("Hernia, Hiatal/large", M("Hernia, Hiatal", size="large", finding="Hernia")),
        ("Cardiomegaly/borderline", M("Cardiomegaly", severity="borderline", finding="Cardiomegaly")),
        # Odd strings of the real file: trailing and doubled spaces, capitals in a modifier.
        (
            "Pneumonectomy/lung/upper lobe/right ",
            M("Pneumonectomy", "lung", ("upper lobe",), "right"),
        ),
        ("Subcutaneous  Emphysema/right", M("Subcutaneous Emphysema", side="right")),
        ("Technical Quality of Image Unsatisfactory ", M("Technical Quality of Image Unsatisfactory")),
        ("Fractures, Bone/Thoracic Vertebrae", M("Fractures, Bone", "thoracic vertebrae")),
        ("Thoracic vertebrae/degenerative", M("Thoracic Vertebrae", other_modifiers=("degenerative",))),
        (
            "Mediastinum/paratracheal/enlarged ",
            M("Mediastinum", None, ("paratracheal",), other_modifiers=("enlarged",)),
        ),
        # A second anatomical word is part of the location.
        ("Calcinosis/lung/hilum/lymph nodes/left", M("Calcinosis", "lung", ("hilum", "lymph nodes"), "left")),
        # Mappings that depend on the organ.
        ("Opacity/ribs/anterior", M("Opacity", "ribs", ("anterior",))),
        ("Density/lung/lingula", M("Density", "lung", ("lingula",), finding="Infiltration")),
        (
            "Cicatrix/lung/base/left/mild",
            M("Cicatrix", "lung", ("base",), "left", "mild", finding="Fibrosis"),
        ),
        (
            "Cicatrix/cardiophrenic angle/left/small",
            M("Cicatrix", None, ("cardiophrenic angle",), "left", size="small"),
        ),
        (
            "Thickening/pleura/apex/bilateral/mild",
            M("Thickening", "pleura", ("apex",), "bilateral", "mild", finding="Pleural_Thickening"),
        ),
        ("Thickening/bronchovascular", M("Thickening", other_modifiers=("bronchovascular",))),
        (
            "Airspace Disease/lung/base/pulmonary alveoli/right",
            M("Airspace Disease", "lung", ("base", "pulmonary alveoli"), "right", finding="Consolidation"),
        ),
        (
            "Hydropneumothorax/left/large",
            M("Hydropneumothorax", side="left", size="large", finding="Pneumothorax"),
        ),
        ("Pulmonary Congestion/mild", M("Pulmonary Congestion", severity="mild")),
        ("Lung/hyperdistention/mild", M("Lung", other_modifiers=("hyperdistention",), severity="mild")),
        ("Opacity//lung/", M("Opacity", "lung", finding="Infiltration")),
    ],
)
def test_parse_mesh(text: str, expected: MeshAnnotation) -> None:
    assert parse_mesh(text) == expected


def test_unknown_heading_and_modifier_are_kept() -> None:
    annotation = parse_mesh("Wobbly Lung/lung/right/right/sparkly/mild/severe")
    assert annotation.heading == "Wobbly Lung" and annotation.finding is None
    assert not is_known_heading(annotation.heading)
    # A repeated single-valued slot keeps its first word; the rest joins the other modifiers.
    assert (annotation.side, annotation.severity) == ("right", "mild")
    assert annotation.other_modifiers == ("right", "sparkly", "severe")
    assert not is_known_modifier("sparkly") and is_known_modifier(" Upper  Lobe ")
    assert is_known_heading("subcutaneous  emphysema")


@pytest.mark.parametrize("text", ["", "   ", "/", " / / "])
def test_empty_term_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="empty MeSH term"):
        parse_mesh(text)


def test_slot_vocabularies_are_disjoint() -> None:
    words = [*SIDES, *MESH_SEVERITIES, *SIZES, *NUMBERS, *MESH_ORGANS, *LOCATIONS, *DESCRIPTORS]
    assert len(words) == len(set(words))
    tokens = [to_token(word) for word in words]
    assert len(tokens) == len(set(tokens))  # each token reads back to one word
    heading_tokens = [to_token(heading) for heading in KNOWN_HEADINGS]
    assert len(heading_tokens) == len(set(heading_tokens))


def test_heading_tokens_never_pose_as_another_finding() -> None:
    # The first token of an unmapped heading must not read back as one of the 14 findings.
    finding_tokens = {to_token(finding): finding for finding in FINDINGS}
    for heading in KNOWN_HEADINGS:
        token = to_token(heading)
        if token in finding_tokens:
            assert heading_finding(heading, organ=None) == finding_tokens[token], heading


def test_finding_headings_map_back() -> None:
    assert set(FINDING_HEADINGS) == set(FINDINGS)
    organs = {"Pleural_Thickening": "pleura"}
    for finding, heading in FINDING_HEADINGS.items():
        assert heading in KNOWN_HEADINGS
        assert heading_finding(heading, organs.get(finding, "lung")) == finding


def test_annotation_tokens_slot_order() -> None:
    annotation = parse_mesh("Opacity/lung/base/left/streaky/mild/small/multiple")
    assert annotation_tokens(annotation) == [
        "infiltration", "lung", "left", "base", "mild", "small", "multiple", "streaky"
    ]  # fmt: skip
    assert annotation_tokens(parse_mesh("Aorta, Thoracic/tortuous")) == ["aorta_thoracic", "tortuous"]
    assert annotation_tokens(parse_mesh("normal")) == ["normal"]


def test_tokens_to_annotation() -> None:
    # A finding token gives the finding's heading; unmapped headings and words come back as written.
    assert tokens_to_annotation(["infiltration", "lung", "base", "left"]) == M(
        "Infiltrate", "lung", ("base",), "left", finding="Infiltration"
    )
    assert tokens_to_annotation(["catheters_indwelling", "right"]) == M("Catheters, Indwelling", side="right")
    # Out of slot order and with an unknown word, as a decoder might write it.
    assert tokens_to_annotation(["effusion", "moderate", "right", "sparkly_thing"]) == M(
        "Pleural Effusion",
        side="right",
        severity="moderate",
        other_modifiers=("sparkly thing",),
        finding="Effusion",
    )
    # A non-canonical first token still gets its finding from the heading rule.
    assert tokens_to_annotation(["opacity", "lung"]).finding == "Infiltration"
    assert tokens_to_annotation(["new_heading", "left"]) == M("new heading", side="left")
    with pytest.raises(ValueError, match="at least one token"):
        tokens_to_annotation([])


def test_to_mesh_string() -> None:
    assert (
        to_mesh_string(parse_mesh("Pulmonary Atelectasis/base/left/mild"))
        == "Pulmonary Atelectasis/left/base/mild"
    )
    assert parse_mesh(to_mesh_string(parse_mesh("Calcinosis/lung/hilum/lymph nodes/left"))) == parse_mesh(
        "Calcinosis/lung/hilum/lymph nodes/left"
    )


def test_round_trip_on_every_real_term(shared_data: Path) -> None:
    from cxreader.data.openi import iter_openi_reports

    terms = {
        term
        for report in iter_openi_reports(shared_data / "meta/NLMCXR_reports.tgz")
        for term in report.mesh_major
    }
    assert len(terms) == 1719
    for term in terms:
        annotation = parse_mesh(term)
        back = tokens_to_annotation(annotation_tokens(annotation))
        if annotation.finding is None:
            assert back == annotation, term
        else:  # the heading becomes the finding's heading (Opacity -> Infiltrate), all else survives
            assert back == M(**{**vars(annotation), "heading": FINDING_HEADINGS[annotation.finding]}), term
        assert annotation_tokens(back) == annotation_tokens(annotation), term


def test_finding_annotation_example() -> None:
    annotation = finding_annotation("Effusion", "right", "lower", "pleura", "moderate")
    assert annotation == M(
        "Pleural Effusion", "pleura", ("lower lobe",), "right", "moderate", finding="Effusion"
    )
    assert annotation_tokens(annotation) == ["effusion", "pleura", "right", "lower_lobe", "moderate"]
    assert zone_of(annotation) == "lower"


def test_finding_annotations_round_trip_exactly() -> None:
    zones = (*ZONE_LOCATIONS, None)
    for finding, side, zone, organ, severity, size_cm in itertools.product(
        FINDINGS, (*SIDES, None), zones, ORGANS, (*SEVERITIES, None), (None, 1.2, 4.0)
    ):
        annotation = finding_annotation(finding, side, zone, organ, severity, size_cm)
        assert annotation.finding == finding and annotation.side == side and annotation.severity == severity
        assert zone_of(annotation) == zone
        assert tokens_to_annotation(annotation_tokens(annotation)) == annotation


def test_finding_annotation_location_words() -> None:
    assert finding_annotation("Nodule", "left", "lingula", "lung", "mild", 0.8).location == ("lingula",)
    assert zone_of(finding_annotation("Nodule", "left", "lingula", "lung", None)) == "middle"
    assert finding_annotation("Edema", "bilateral", None, "lung", None).location == ()


def test_size_word() -> None:
    assert [size_word(value) for value in (None, 0.0, 2.99, 3.0, 12)] == [
        None, "small", "small", "large", "large"
    ]  # fmt: skip


def test_report_words_fit_the_mesh_grammar() -> None:
    # Every word a description or the generator writes is a MeSH word of its slot, or a zone with a location.
    assert set(ORGAN_OF.values()) <= set(ORGANS) and MESH_ORGANS[: len(ORGANS)] == ORGANS
    assert MESH_SEVERITIES[1:] == SEVERITIES
    assert set(ZONES) <= set(ZONE_LOCATIONS)
    assert all(zone in ZONE_LOCATIONS or zone in LOCATIONS or zone == "cardiac" for zone in SPECIAL_ZONES)
