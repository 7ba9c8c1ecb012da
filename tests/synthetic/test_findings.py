"""The SYNTHETIC chest phantom: drawing conventions (patient's side, boxes, severity, sizes, vocabulary)."""

from __future__ import annotations

import numpy as np
import pytest

from cxreader.labels import BOXED_FINDINGS
from cxreader.synthetic.findings import FindingRequest, draw_chest
from cxreader.vocabulary import SEVERITIES


def _difference(name: str, seed: int, severity: str, side: str | None = None, size: int = 128):
    request = FindingRequest(name, severity=severity, side=side)
    with_finding = draw_chest(seed, size=size, findings=[request])
    without = draw_chest(seed, size=size)
    return with_finding, np.abs(with_finding.pixels.astype(float) - without.pixels.astype(float))


@pytest.mark.parametrize("name", ["Effusion", "Nodule", "Pneumothorax", "Mass"])
def test_side_is_the_patients_side(name):
    """The patient's right is the image's LEFT half in a PA view."""
    for side, half in (("right", slice(0, 64)), ("left", slice(64, 128))):
        for seed in (11, 12):
            drawn, diff = _difference(name, seed, "moderate", side)
            assert drawn.findings[0].side == side
            assert diff[:, half].sum() > 0.9 * diff.sum(), (name, side, seed)
            first = drawn.findings[0]
            centre = first.x + first.w / 2
            assert (centre < 64) == (side == "right")


@pytest.mark.parametrize("name", BOXED_FINDINGS)
def test_boxes_lie_in_the_image_and_cover_the_drawn_change(name):
    for seed, severity in zip((21, 22, 23), SEVERITIES, strict=True):
        drawn, diff = _difference(name, seed, severity)
        inside = np.zeros(diff.shape, bool)
        for item in drawn.findings:
            assert item.finding == name and item.severity == severity
            assert item.x >= 0 and item.y >= 0 and item.x + item.w <= 128 and item.y + item.h <= 128
            inside[int(item.y) : int(item.y + item.h), int(item.x) : int(item.x + item.w)] = True
        assert diff.sum() > 0
        assert diff[inside].sum() > 0.8 * diff.sum(), (name, severity)


@pytest.mark.parametrize(
    "name",
    ["Effusion", "Pneumothorax", "Consolidation", "Cardiomegaly", "Emphysema", "Fibrosis", "Pneumonia"],
)
def test_severity_orders_extent(name):
    for seed in (31, 32):
        mild = draw_chest(seed, findings=[FindingRequest(name, "mild", None)]).findings
        severe = draw_chest(seed, findings=[FindingRequest(name, "severe", None)]).findings
        assert max(item.extent for item in severe) > max(item.extent for item in mild), (name, seed)


def _cardiothoracic_ratio(anatomy) -> float:
    return anatomy.heart_width / anatomy.thoracic_width


def test_cardiomegaly_ratio_and_nodule_mass_sizes():
    for seed in range(5):
        assert _cardiothoracic_ratio(draw_chest(seed).anatomy) < 0.52
        assert _cardiothoracic_ratio(draw_chest(seed, findings=["Cardiomegaly"]).anatomy) > 0.55
        assert all(item.size_cm < 3.0 for item in draw_chest(seed, findings=["Nodule"]).findings)
        assert all(item.size_cm > 3.0 for item in draw_chest(seed, findings=["Mass"]).findings)


def test_zone_and_vocabulary_of_records():
    hernia = draw_chest(5, findings=["Hernia"]).findings[0]
    assert (hernia.side, hernia.zone, hernia.organ) == ("midline", "retrocardiac", "diaphragm")
    edema = draw_chest(5, findings=["Edema"]).findings[0]
    assert (edema.side, edema.zone) == ("bilateral", "perihilar")
    apical = draw_chest(6, findings=[FindingRequest("Pneumothorax", "mild", "left")]).findings[0]
    assert (apical.zone, apical.organ) == ("upper", "pleura")
    with pytest.raises(ValueError, match="side"):
        draw_chest(1, findings=[FindingRequest("Nodule", side="bilateral")])
