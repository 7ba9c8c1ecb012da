"""Several foci of a nodule or mass: found apart, placed one by one, named in the sentence."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cxreader.data.io import LoadedImage
from cxreader.labels import FINDINGS
from cxreader.localization.describe import describe_finding, describe_findings
from cxreader.localization.foci import foci_of
from cxreader.localization.geometry import fixed_geometry
from cxreader.synthetic.findings import FindingRequest, draw_chest


def _blob(shape, x, y, radius, height=1.0):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return height * np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2.0 * radius**2))


def test_two_separate_blobs_are_two_foci_heaviest_first():
    values = np.maximum(_blob((64, 64), 16, 20, 3, 0.8), _blob((64, 64), 46, 44, 4, 1.0))
    foci = foci_of(values, 0.5)
    assert len(foci) == 2
    # Centres in the convention of pixel centres (pixel k spans [k, k + 1)).
    assert (foci[0].centre_x, foci[0].centre_y) == pytest.approx((46.5, 44.5), abs=0.05)
    assert (foci[1].centre_x, foci[1].centre_y) == pytest.approx((16.5, 20.5), abs=0.05)
    assert foci[0].box.x <= 46 < foci[0].box.x + foci[0].box.w


def test_a_small_spill_over_is_not_a_focus_of_its_own():
    values = np.maximum(_blob((64, 64), 20, 20, 6), _blob((64, 64), 50, 50, 1.0, 0.75))
    assert len(foci_of(values, 0.5)) == 1
    assert len(foci_of(values, 0.5, share=0.0)) == 2
    assert foci_of(np.zeros((8, 8)), 0.5) == []
    with pytest.raises(ValueError, match="2-D"):
        foci_of(np.zeros((2, 8, 8)), 0.5)


def test_a_nodule_in_each_lung_is_described_focus_by_focus_in_the_patients_frame():
    geometry = fixed_geometry(64, 64)
    # Image-left lung (the patient's RIGHT), upper zone; image-right lung (the patient's LEFT), lower zone.
    upper_y = geometry.image_left.top + 0.15 * geometry.image_left.height
    lower_y = geometry.image_right.top + 0.85 * geometry.image_right.height
    values = np.maximum(_blob((64, 64), 18, upper_y, 2.5), _blob((64, 64), 46, lower_y, 2.5, 0.9))
    description = describe_finding(
        "Nodule", 0.9, values, geometry, threshold=0.5, original_size=(256, 256), pixel_spacing_mm=(1.0, 1.0)
    )
    assert [(f["side"], f["zone"]) for f in description.foci] == [("right", "upper"), ("left", "lower")]
    assert description.sentence.startswith(f"{description.severity.capitalize()} multiple nodules (2): ")
    assert "right upper zone" in description.sentence and "left lower zone" in description.sentence
    first = description.foci[0]
    assert 4 * 14 <= first["box"][0] + first["box"][2] / 2 <= 4 * 22  # original-image pixels (x4)
    assert first["size_cm"] is not None and 0.5 < first["size_cm"] < 3.0
    assert description.to_json_dict()["foci"] == description.foci


def test_one_focus_and_findings_that_are_not_focal_keep_the_single_description():
    geometry = fixed_geometry(64, 64)
    single = describe_finding("Nodule", 0.9, _blob((64, 64), 18, 30, 2.5), geometry, threshold=0.5)
    assert single.foci == [] and "foci" not in single.to_json_dict()
    assert "multiple" not in single.sentence
    two = np.maximum(_blob((64, 64), 18, 40, 4), _blob((64, 64), 46, 40, 4))
    effusion = describe_finding("Effusion", 0.9, two, geometry, threshold=0.5)
    assert effusion.foci == [] and "multiple" not in effusion.sentence


def test_several_drawn_nodules_are_counted_and_placed_as_drawn():
    for seed in range(40):
        drawn = draw_chest(
            seed, size=128, findings=[FindingRequest("Nodule", side="right", severity="severe")]
        )
        if len(drawn.findings) >= 2:
            break
    assert len(drawn.findings) >= 2
    clean = draw_chest(seed, size=128, findings=())
    difference = np.abs(drawn.pixels.astype(np.float32) - clean.pixels.astype(np.float32))
    image = LoadedImage(
        pixels=drawn.pixels / np.float32(255), path="phantom.png", format="png", bits_stored=8
    )
    probabilities = dict.fromkeys(FINDINGS, 0.1) | {"Nodule": 0.95}
    (description,) = describe_findings(
        probabilities, {"Nodule": difference / difference.max()}, image, [0.5] * 14, view_position="PA"
    )
    truth = Counter((item.side, item.zone) for item in drawn.findings)
    assert Counter((f["side"], f["zone"]) for f in description.foci) == truth
