"""Grounded descriptions of the findings of the harmonised label space (Lung Opacity, Lung Lesion, Enlarged
Cardiomediastinum, Fracture, Support Devices): the words the rules can ground, and no claim where they cannot."""

from __future__ import annotations

import numpy as np
import pytest

from cxreader.data.io import LoadedImage
from cxreader.labels import EXTRA_FINDINGS, HARMONISED_LABELS, ORGAN_OF
from cxreader.localization.describe import NOUN_OF, describe_findings
from cxreader.synthetic.findings import FindingRequest, draw_chest
from cxreader.vocabulary import ORGANS, SEVERITIES, ZONES


def _case(side: str, seed: int = 4, size: int = 128) -> tuple[LoadedImage, np.ndarray]:
    """A phantom with a mass on the patient's ``side`` and the map of exactly what it drew (in [0, 1])."""
    drawn = draw_chest(seed, size=size, findings=[FindingRequest("Mass", side=side)])
    clean = draw_chest(seed, size=size, findings=())
    difference = np.abs(drawn.pixels.astype(np.float32) - clean.pixels.astype(np.float32))
    image = LoadedImage(
        pixels=drawn.pixels / np.float32(255), path="phantom.png", format="png", bits_stored=8
    )
    return image, difference / difference.max()


def _describe(finding: str, side: str = "right", spacing=(0.5, 0.5)):
    image, heatmap = _case(side)
    probabilities = dict.fromkeys(HARMONISED_LABELS, 0.1) | {finding: 0.9}
    thresholds = [0.5] * len(HARMONISED_LABELS)
    (description,) = describe_findings(
        probabilities,
        {finding: heatmap},
        image,
        thresholds,
        pixel_spacing_mm=spacing,
        labels=HARMONISED_LABELS,
    )
    return description


def test_every_finding_has_a_noun_and_an_organ_of_the_vocabulary():
    assert set(NOUN_OF) == set(HARMONISED_LABELS)
    assert {ORGAN_OF[name] for name in EXTRA_FINDINGS} <= set(ORGANS)


@pytest.mark.parametrize("side", ["right", "left"])
def test_lung_opacity_and_lung_lesion_are_described_like_lung_findings(side):
    opacity = _describe("Lung_Opacity", side)
    assert opacity.organ == "lung" and opacity.side == side and opacity.zone in ZONES
    assert opacity.severity in SEVERITIES and "lung opacity" in opacity.sentence
    lesion = _describe("Lung_Lesion", side)
    assert lesion.organ == "lung" and lesion.side == side and lesion.size_cm is not None
    assert f"about {lesion.size_cm:.1f} cm" in lesion.sentence and "nodule-sized" not in lesion.sentence


def test_an_enlarged_cardiomediastinum_is_midline_without_a_zone():
    description = _describe("Enlarged_Cardiomediastinum")
    assert (description.side, description.zone, description.organ) == ("midline", None, "mediastinum")
    assert description.severity in SEVERITIES
    assert description.sentence.endswith("enlarged cardiomediastinal silhouette.")


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_fracture_has_a_side_but_no_zone_size_or_severity(side):
    description = _describe("Fracture", side)
    assert description.organ == "bone" and description.side == side
    assert description.zone is None and description.size_cm is None and description.severity is None
    assert description.sentence == f"{side.capitalize()}-sided fracture."
    assert description.box is not None  # where the map points, for the page's overlay
    data = description.to_json_dict()
    assert data["severity"] is None and data["zone"] is None


def test_support_devices_make_no_claim_of_place_size_or_severity():
    description = _describe("Support_Devices")
    assert description.organ == "device"
    assert (description.side, description.zone, description.size_cm, description.severity) == (None,) * 4
    assert description.sentence == "Support devices present."


def test_a_sequence_of_thresholds_is_read_in_the_given_label_order():
    image, heatmap = _case("right")
    labels = ("Fracture", "Effusion")
    probabilities = {"Fracture": 0.6, "Effusion": 0.6}
    # Fracture's threshold is 0.5, Effusion's 0.7: only the fracture is positive.
    (description,) = describe_findings(probabilities, {"Fracture": heatmap}, image, [0.5, 0.7], labels=labels)
    assert description.finding == "Fracture"
