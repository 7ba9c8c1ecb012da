"""Grounded descriptions: the patient's side, zones, views, sizes, severity and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cxreader.data.io import LoadedImage, load_image
from cxreader.data.nih_tables import read_data_entry
from cxreader.errors import ConfigError
from cxreader.labels import FINDINGS
from cxreader.localization.cam import heatmaps
from cxreader.localization.describe import (
    DEFAULT_VIEW,
    describe_finding,
    describe_findings,
    normalise_view,
    patient_side,
)
from cxreader.localization.geometry import fixed_geometry
from cxreader.synthetic.findings import FindingRequest, draw_chest

KEYS = {"finding", "probability", "side", "zone", "organ", "extent", "size_cm", "severity", "box", "sentence"}


def _phantom_case(finding: str, side: str, seed: int = 4, size: int = 128, view: str = "PA"):
    """A phantom with one finding, and a heatmap that is exactly what the finding drew (image minus the
    finding-free image of the same seed), normalised to [0, 1]."""
    drawn = draw_chest(seed, size=size, findings=[FindingRequest(finding, side=side)], view=view)
    clean = draw_chest(seed, size=size, findings=(), view=view)
    difference = np.abs(drawn.pixels.astype(np.float32) - clean.pixels.astype(np.float32))
    heatmap = difference / difference.max()
    image = LoadedImage(
        pixels=drawn.pixels / np.float32(255), path=f"phantom-{seed}.png", format="png", bits_stored=8
    )
    return image, heatmap, drawn.findings


def _probabilities(**positive: float) -> dict[str, float]:
    values = dict.fromkeys(FINDINGS, 0.1)
    values.update(positive)
    return values


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("finding", ["Effusion", "Pneumothorax", "Mass"])
def test_a_finding_drawn_on_the_patients_side_is_described_on_that_side(finding, side):
    image, heatmap, truth = _phantom_case(finding, side)
    assert {item.side for item in truth} == {side}
    (description,) = describe_findings(
        _probabilities(**{finding: 0.9}), {finding: heatmap}, image, [0.5] * 14, view_position="PA"
    )
    assert description.side == side
    assert f" {side} " in f" {description.sentence} "
    if finding == "Effusion":
        assert description.zone == "lower"
        assert description.organ == "pleura"
    # The box is the drawn finding's place: the patient's right is the image's LEFT half.
    x, _, w, _ = description.box
    centre = x + w / 2
    assert (centre < 64) == (side == "right")


def test_ap_films_follow_the_same_convention_and_lateral_films_name_no_side():
    image, heatmap, _ = _phantom_case("Effusion", "right", view="AP")
    probabilities = _probabilities(Effusion=0.9)
    (ap,) = describe_findings(probabilities, {"Effusion": heatmap}, image, [0.5] * 14, view_position="AP")
    assert ap.side == "right" and ap.view == "AP" and not ap.view_assumed
    (lateral,) = describe_findings(
        probabilities, {"Effusion": heatmap}, image, [0.5] * 14, view_position="LL"
    )
    assert lateral.side is None and "right" not in lateral.sentence and "left" not in lateral.sentence
    assert patient_side("left", "PA") == "right" and patient_side("right", "AP") == "left"
    assert patient_side("left", "LL") is None


def test_an_image_without_view_position_uses_the_documented_default():
    image, heatmap, _ = _phantom_case("Effusion", "left")
    assert image.view_position is None
    (description,) = describe_findings(_probabilities(Effusion=0.8), {"Effusion": heatmap}, image, [0.5] * 14)
    assert DEFAULT_VIEW == "PA"
    assert description.view == "PA" and description.view_assumed
    assert description.side == "left"
    assert normalise_view(None) == ("PA", True)
    assert normalise_view(" ap ") == ("AP", False)
    assert normalise_view("OBLIQUE") == ("PA", True)  # unknown words are not trusted either


def test_the_dicom_view_position_is_used_unless_overridden():
    image, heatmap, _ = _phantom_case("Effusion", "left")
    lateral = dataclasses.replace(image, view_position="LL")
    (description,) = describe_findings(
        _probabilities(Effusion=0.8), {"Effusion": heatmap}, lateral, [0.5] * 14
    )
    assert description.side is None and description.view == "LL"
    (override,) = describe_findings(
        _probabilities(Effusion=0.8), {"Effusion": heatmap}, lateral, [0.5] * 14, view_position="PA"
    )
    assert override.side == "left"


def test_bilateral_effusions_are_described_as_bilateral():
    image, heatmap, truth = _phantom_case("Effusion", "bilateral")
    assert {item.side for item in truth} == {"right", "left"}
    (description,) = describe_findings(_probabilities(Effusion=0.9), {"Effusion": heatmap}, image, [0.5] * 14)
    assert description.side == "bilateral"
    assert "bilateral pleural effusion" in description.sentence


def test_cardiomegaly_is_a_midline_heart_finding():
    heatmap = np.zeros((64, 64), np.float32)
    heatmap[30:50, 25:45] = 1.0
    description = describe_finding("Cardiomegaly", 0.9, heatmap, fixed_geometry(64, 64), threshold=0.5)
    assert (description.side, description.zone, description.organ) == ("midline", "cardiac", "heart")
    assert description.sentence.endswith("cardiomegaly.")


def test_size_in_cm_needs_a_pixel_spacing_and_a_large_nodule_is_called_mass_sized():
    heatmap = np.zeros((64, 64), np.float32)
    heatmap[20:28, 10:18] = 1.0  # 8 px on the 64 grid
    geometry = fixed_geometry(64, 64)
    without = describe_finding("Nodule", 0.9, heatmap, geometry, threshold=0.5, original_size=(1024, 1024))
    assert without.size_cm is None and "cm" not in without.sentence
    # 8 px of 64 = 128 px of 1024; at 0.3 mm per pixel that is 3.84 cm: over 3 cm.
    large = describe_finding(
        "Nodule",
        0.9,
        heatmap,
        geometry,
        threshold=0.5,
        original_size=(1024, 1024),
        pixel_spacing_mm=(0.3, 0.3),
    )
    assert large.size_cm == pytest.approx(3.84)
    assert large.box == [160.0, 320.0, 128.0, 128.0]
    assert "about 3.8 cm (larger than 3 cm: mass-sized)" in large.sentence
    small = describe_finding(
        "Nodule",
        0.9,
        heatmap,
        geometry,
        threshold=0.5,
        original_size=(1024, 1024),
        pixel_spacing_mm=(0.1, 0.1),
    )
    assert "about 1.3 cm." in small.sentence


def test_severity_grows_with_extent_and_confidence():
    geometry = fixed_geometry(64, 64)
    small = np.zeros((64, 64), np.float32)
    small[40:43, 10:13] = 1.0
    large = np.zeros((64, 64), np.float32)
    large[10:48, 3:31] = 1.0  # most of the image-left lung field
    mild = describe_finding("Consolidation", 0.55, small, geometry, threshold=0.5)
    severe = describe_finding("Consolidation", 0.99, large, geometry, threshold=0.5)
    assert mild.severity == "mild" and mild.extent < 0.1
    assert severe.severity == "severe" and severe.extent > 0.25
    assert describe_finding("Consolidation", 0.99, small, geometry, threshold=0.5).severity == "moderate"


def test_only_positive_findings_are_described_most_probable_first_with_the_json_keys():
    image, heatmap, _ = _phantom_case("Effusion", "right")
    probabilities = _probabilities(Effusion=0.7, Mass=0.95, Nodule=0.3)
    maps = {"Effusion": heatmap, "Mass": heatmap, "Nodule": heatmap}
    thresholds = dict.fromkeys(FINDINGS, 0.5)
    descriptions = describe_findings(probabilities, maps, image, thresholds)
    assert [item.finding for item in descriptions] == ["Mass", "Effusion"]
    payload = descriptions[1].to_json_dict()
    assert set(payload) == KEYS
    assert payload["sentence"].startswith(payload["severity"].capitalize())
    assert payload["sentence"].endswith(".")


def test_a_positive_finding_without_its_heatmap_is_a_clear_error():
    image, heatmap, _ = _phantom_case("Effusion", "right")
    with pytest.raises(ConfigError, match="no heatmap given for the positive finding Mass"):
        describe_findings(_probabilities(Effusion=0.9, Mass=0.9), {"Effusion": heatmap}, image, [0.5] * 14)
    with pytest.raises(ConfigError, match="one value per finding"):
        describe_findings(_probabilities(Effusion=0.9), {"Effusion": heatmap}, image, [0.5] * 3)


def test_real_film_heatmap_orientation_and_side(shared_data, toy_model):
    """A bright patch painted on the image's LEFT half of a real PA film: the (brightness) model's map must peak
    there, at input size, in [0, 1], and the finding must be described on the patient's RIGHT."""
    name = "00013911_000.png"
    image = load_image(shared_data / "nih" / "images_1024" / name)
    entry = read_data_entry(shared_data / "nih" / "labels.csv").set_index("image").loc[name]
    pixels = image.pixels * np.float32(0.3)
    pixels[600:760, 150:310] = 1.0  # image-left, lower half
    size = 128
    from cxreader.data.transforms import EvalPreset

    tensor = EvalPreset(image_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(pixels)
    (heatmap,) = heatmaps(toy_model, tensor, ["Effusion"], "cam")
    assert heatmap.shape == (size, size) and heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
    row, col = np.unravel_index(int(heatmap.argmax()), heatmap.shape)
    assert col < size / 2 and row > size / 2
    painted = dataclasses.replace(image, pixels=pixels)
    (description,) = describe_findings(
        _probabilities(Effusion=0.9),
        {"Effusion": heatmap},
        painted,
        [0.5] * 14,
        view_position=entry["view_position"],
    )
    assert entry["view_position"] == "PA" and description.side == "right"
    x, y, w, h = description.box  # original 1024-px coordinates around the painted patch
    assert 100 <= x + w / 2 <= 360 and 550 <= y + h / 2 <= 810


def test_an_all_zero_map_describes_the_finding_without_inventing_a_place():
    description = describe_finding(
        "Effusion", 0.8, np.zeros((32, 32), np.float32), fixed_geometry(32, 32), threshold=0.5
    )
    assert description.side is None and description.zone is None and description.box is None
    assert description.sentence.endswith("pleural effusion (the heatmap does not show where).")
