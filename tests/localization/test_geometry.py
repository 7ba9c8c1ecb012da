"""The lung-field estimate from intensity profiles, on generated phantoms and real films."""

from __future__ import annotations

import numpy as np
import pytest

from cxreader.data.io import read_image_uint8
from cxreader.localization.geometry import estimate_geometry, fixed_geometry
from cxreader.synthetic.findings import draw_chest


@pytest.mark.parametrize("seed,view", [(3, "PA"), (11, "AP"), (27, "PA")])
def test_profile_geometry_finds_the_phantoms_midline_and_lungs(seed, view):
    size = 128
    picture = draw_chest(seed, size=size, view=view)
    anatomy = picture.anatomy
    geometry = estimate_geometry(picture.pixels)
    assert geometry.method == "profile"
    assert abs(geometry.midline - anatomy.midline * size) <= 3
    # The lung on the image's LEFT is the patient's RIGHT lung (frontal view).
    for lung, truth in ((geometry.image_left, anatomy.right), (geometry.image_right, anatomy.left)):
        assert abs(lung.top - truth.apex_y * size) <= 6
        assert abs(lung.bottom - truth.base_y * size) <= 8
    assert geometry.image_left.x1 <= geometry.midline <= geometry.image_right.x0
    assert geometry.image_left.x0 <= (anatomy.midline - anatomy.right.centre_d) * size
    assert geometry.image_right.x1 >= (anatomy.midline + anatomy.left.centre_d) * size


def test_geometry_follows_a_shifted_patient_where_fixed_fractions_cannot():
    size = 128
    pixels = draw_chest(5, size=size).pixels
    shifted = np.zeros_like(pixels)
    shifted[:, 12:] = pixels[:, :-12]  # the patient 12 px (9 %) to the image's right
    before, after = estimate_geometry(pixels), estimate_geometry(shifted)
    assert after.method == "profile"
    assert after.midline - before.midline == pytest.approx(12, abs=2)
    assert fixed_geometry(size, size).midline == 64


def test_images_without_chest_profiles_fall_back_to_fixed_fractions():
    flat = np.full((64, 64), 0.5, np.float32)
    assert estimate_geometry(flat).method == "fixed"
    noise = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    assert estimate_geometry(noise).method in ("fixed", "profile")  # never raises on nonsense
    with pytest.raises(ValueError, match="2-D image"):
        estimate_geometry(np.zeros((4, 4, 3)))


def test_zones_are_thirds_of_the_lung_height_and_scale_with_the_grid():
    geometry = fixed_geometry(100, 100)  # lungs from row 12 to 75: thirds of 21 rows
    assert geometry.zone_of(20) == "upper"
    assert geometry.zone_of(40) == "middle"
    assert geometry.zone_of(70) == "lower"
    assert geometry.zone_of(0) == "upper" and geometry.zone_of(99) == "lower"  # clamped
    assert geometry.image_side_of(10) == "left" and geometry.image_side_of(90) == "right"
    big = geometry.scaled_to(1000, 500)
    assert big.midline == 500 and big.zone_bounds() == pytest.approx((60, 375))
    mask = geometry.lung_mask(("left",))
    assert mask.shape == (100, 100) and mask[40, 20] and not mask[40, 80]


def test_real_films_get_a_plausible_midline(shared_data):
    names = sorted((shared_data / "nih" / "images_1024").glob("*.png"))[:4]
    assert names
    for path in names:
        pixels = read_image_uint8(path, size=256)
        geometry = estimate_geometry(pixels)
        # NIH frontal films are roughly centred: the midline lies in the central 30 % of the width.
        assert 0.35 * 256 <= geometry.midline <= 0.65 * 256
        assert geometry.image_left.x1 <= geometry.image_right.x0


def test_the_thorax_mask_spans_both_lungs_and_is_open_below():
    geometry = fixed_geometry(100, 100)
    mask = geometry.thorax_mask()
    assert mask[50, 50]  # the mediastinum, between the lung fields
    assert mask[99, 50]  # below the lung bases: effusions and hernias lie there
    assert not mask[2, 50]  # above the apices
    assert not mask[50, 2] and not mask[50, 97]  # outside the chest wall
    grown = geometry.thorax_mask(0.05)
    assert grown.sum() > mask.sum() and (grown | mask).sum() == grown.sum()


def test_opacities_everywhere_never_stretch_the_lungs_to_the_image_border():
    """With opacities in both lungs the row walk used to run off the image (apex at row 0, base at the last
    row) in about 6 % of the demo's test images; such walks are now ignored."""
    size = 128
    errors = []
    for seed in range(12):
        picture = draw_chest(
            seed, size=size, findings=["Consolidation", "Edema", "Infiltration", "Pneumonia"]
        )
        geometry = estimate_geometry(picture.pixels)
        for lung in (geometry.image_left, geometry.image_right):
            assert lung.top > 1 and lung.bottom < size - 1
        errors.append(abs(geometry.image_left.top - picture.anatomy.right.apex_y * size))
    assert np.median(errors) <= 6
