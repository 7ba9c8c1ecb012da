"""The learned location reader: what it learns, how it is stored, and when the rules still apply."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from cxreader.errors import CheckpointError, ConfigError
from cxreader.localization.describe import DEFAULT_RULES, describe_finding, describe_findings, rules_for
from cxreader.localization.geometry import fixed_geometry
from cxreader.localization.reader import (
    IMAGE_GRID,
    SIDE_WIDTH,
    ZONE_WIDTH,
    LinearReader,
    LocatedSample,
    LocationReader,
    fit_location_reader,
    image_features,
    image_on_grid,
    side_features,
    zone_features,
)
from cxreader.training.checkpoint import load_checkpoint, read_checkpoint, store_location_reader

SIZE = 64
GEOMETRY = fixed_geometry(SIZE, SIZE)
ZONES = ("upper", "middle", "lower")


def _blob(image_side: str, position: float, radius: float = 3.0) -> np.ndarray:
    """A map with one round blob in one lung field, ``position`` of the way from its apex to its base."""
    lung = GEOMETRY.lung(image_side)
    cy = lung.top + position * lung.height
    cx = 0.5 * (lung.x0 + lung.x1)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    return np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * radius**2)).astype(np.float32)


def _shifted_truth(position: float) -> str:
    """A convention the centroid rule cannot follow: the finding reaches 0.25 of the lung height below its
    most conspicuous part (as an atelectatic plate's lost volume does), so the zone is that of position +
    0.25."""
    return ZONES[min(2, int((position + 0.25) * 3))]


def _samples(rng: np.random.Generator, count: int) -> list[LocatedSample]:
    samples = []
    for _ in range(count):
        side = str(rng.choice(["left", "right"]))
        position = float(rng.uniform(0.05, 0.75))
        samples.append(
            LocatedSample("Atelectasis", _blob(side, position), GEOMETRY, 0.8, side, _shifted_truth(position))
        )
    return samples


@pytest.fixture(scope="module")
def fitted() -> LocationReader:
    return fit_location_reader(_samples(np.random.default_rng(0), 200), fitted_on="test blobs")


def test_the_reader_learns_a_zone_convention_the_centroid_rule_misses(fitted):
    held_out = _samples(np.random.default_rng(1), 100)
    reader_right = rules_right = 0
    rules = dataclasses.replace(DEFAULT_RULES, reader=fitted)
    for sample in held_out:
        truth_side = "right" if sample.truth_side == "left" else "left"  # image left = patient right (PA)
        for which, chosen in (("reader", rules), ("rules", DEFAULT_RULES)):
            described = describe_finding(
                "Atelectasis", 0.8, sample.values, GEOMETRY, threshold=0.5, view="PA", rules=chosen
            )
            right = described.side == truth_side and described.zone == sample.truth_zone
            if which == "reader":
                reader_right += right
            else:
                rules_right += right
    assert reader_right >= 80, reader_right  # measured 89 of 100
    assert rules_right <= 50, rules_right  # measured 22: right only where the shift keeps the zone


def test_lateral_views_and_findings_placed_by_definition_keep_the_rules(fitted):
    values = _blob("left", 0.5)
    rules = dataclasses.replace(DEFAULT_RULES, reader=fitted)
    lateral = describe_finding("Atelectasis", 0.8, values, GEOMETRY, threshold=0.5, view="LL", rules=rules)
    assert lateral.side is None  # a lateral film names no side, reader or not
    heart = describe_finding("Cardiomegaly", 0.8, values, GEOMETRY, threshold=0.5, view="PA", rules=rules)
    assert (heart.side, heart.zone) == ("midline", "cardiac")
    other = describe_finding("Mass", 0.8, values, GEOMETRY, threshold=0.5, view="PA", rules=rules)
    plain = describe_finding("Mass", 0.8, values, GEOMETRY, threshold=0.5, view="PA", rules=DEFAULT_RULES)
    assert (other.side, other.zone) == (plain.side, plain.zone)  # no reader for Mass: the rules


def test_a_serialised_reader_reads_the_same_and_is_plain_json(fitted):
    text = json.dumps(fitted.to_dict())
    again = LocationReader.from_dict(json.loads(text))
    for sample in _samples(np.random.default_rng(2), 20):
        assert again.read("Atelectasis", sample.values, GEOMETRY, 0.8) == fitted.read(
            "Atelectasis", sample.values, GEOMETRY, 0.8
        )
    assert again.fitted_on == "test blobs"


def test_a_checkpoint_carries_its_reader_and_keeps_everything_else(fitted, tiny_checkpoint):
    before = read_checkpoint(tiny_checkpoint)
    assert load_checkpoint(tiny_checkpoint).model.location_reader is None
    assert rules_for(load_checkpoint(tiny_checkpoint).model).reader is None
    store_location_reader(tiny_checkpoint, fitted)
    after = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)  # still plain data
    assert after["contract"] == before["contract"]
    assert all(torch.equal(after["state_dict"][k], v) for k, v in before["state_dict"].items())
    loaded = load_checkpoint(tiny_checkpoint)
    assert isinstance(loaded.model.location_reader, LocationReader)
    assert rules_for(loaded.model).reader.fitted_on == "test blobs"


def test_a_malformed_reader_in_a_checkpoint_is_a_clear_error(tiny_checkpoint):
    payload = read_checkpoint(tiny_checkpoint)
    payload["location_reader"] = {"format": "something else"}
    torch.save(payload, tiny_checkpoint)
    with pytest.raises(CheckpointError, match="tiny.pt.*location reader"):
        load_checkpoint(tiny_checkpoint)


def test_fitting_refuses_unknown_sides_and_too_few_samples():
    values = _blob("left", 0.5)
    with pytest.raises(ConfigError, match="side 'bilateral'"):
        fit_location_reader([LocatedSample("Mass", values, GEOMETRY, 0.9, "bilateral", "upper")])
    with pytest.raises(ConfigError, match="20 true positives"):
        fit_location_reader([LocatedSample("Mass", values, GEOMETRY, 0.9, "left", "upper")] * 5)


def test_a_finding_seen_in_one_zone_only_gets_a_constant_reader():
    samples = [
        LocatedSample("Effusion", _blob("right", p), GEOMETRY, 0.9, "right", "lower") for p in (0.6, 0.7)
    ]
    reader = fit_location_reader(samples * 10)
    assert reader.zone["Effusion"].classes == ("lower",)
    assert reader.read("Effusion", _blob("right", 0.1), GEOMETRY, 0.9) == ("right", "lower")


def test_features_have_fixed_lengths_and_binary_readers_predict_both_classes():
    values = _blob("left", 0.3)
    assert side_features(values, GEOMETRY).shape == (10,)
    assert zone_features(values, GEOMETRY, ("left",), 0.9).shape == (46,)
    x = np.array([[0.0], [1.0], [0.1], [0.9]] * 5)
    reader = LinearReader.fit(x, ["a", "b", "a", "b"] * 5)
    assert (reader.predict(np.array([0.0])), reader.predict(np.array([1.0]))) == ("a", "b")


def _image_with_air(image_side: str, third: int) -> np.ndarray:
    """A gray image whose one lung field is dark (air without markings) in one third of its height only."""
    image = np.full((SIZE, SIZE), 120.0, np.float32)
    lung = GEOMETRY.lung(image_side)
    top = int(round(lung.top + third * lung.height / 3))
    bottom = int(round(lung.top + (third + 1) * lung.height / 3))
    image[top:bottom, int(lung.x0) : int(lung.x1)] = 20.0
    image[0, 0] = 255.0  # something bright, so the window is not the air's
    return image


def test_image_on_grid_is_gray_square_and_windowed():
    rgb = np.random.default_rng(0).integers(0, 4096, (300, 200, 3)).astype(np.uint16)
    grid = image_on_grid(rgb)
    assert grid.shape == (IMAGE_GRID, IMAGE_GRID) and grid.dtype == np.float32
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    assert image_on_grid(np.zeros((10, 10))).max() == 0.0  # a blank image is no error
    with pytest.raises(ValueError, match="2-D image"):
        image_on_grid(np.zeros(5))


def test_a_reader_with_image_features_reads_what_the_map_cannot_show():
    # The map is the same blob for every sample; the zone is where the image's air is (a pneumothorax whose
    # pleural line the map marks while its extent shows only in the image).
    rng = np.random.default_rng(3)
    values = _blob("left", 0.3)
    samples = []
    for _ in range(90):
        third = int(rng.integers(3))
        image = image_on_grid(_image_with_air("left", third))
        samples.append(LocatedSample("Pneumothorax", values, GEOMETRY, 0.9, "left", ZONES[third], image))
    with_image = fit_location_reader(samples)
    map_only = fit_location_reader([dataclasses.replace(s, image=None) for s in samples])
    assert with_image.uses_image and not map_only.uses_image
    for third in range(3):
        image = image_on_grid(_image_with_air("left", third))
        assert with_image.read("Pneumothorax", values, GEOMETRY, 0.9, image) == ("left", ZONES[third])
    # Stored and loaded, it still needs the image; without one it reads nothing and the rules place it.
    again = LocationReader.from_dict(json.loads(json.dumps(with_image.to_dict())))
    assert again.uses_image and again.image_bands == with_image.image_bands > 0
    assert again.read("Pneumothorax", values, GEOMETRY, 0.9) is None
    rules = dataclasses.replace(DEFAULT_RULES, reader=again)
    lower = image_on_grid(_image_with_air("left", 2))
    described = describe_finding(
        "Pneumothorax", 0.9, values, GEOMETRY, threshold=0.5, view="PA", rules=rules, reader_image=lower
    )
    assert (described.side, described.zone) == ("right", "lower")  # image left = patient right in PA
    # describe_findings (predict, screening, the API) hands the reader the image it describes.
    (listed,) = describe_findings(
        {"Pneumothorax": 0.9},
        {"Pneumothorax": values},
        _image_with_air("left", 0),
        {"Pneumothorax": 0.5},
        view_position="PA",
        geometry=GEOMETRY,
        rules=rules,
    )
    assert (listed.side, listed.zone) == ("right", "upper")
    plain = describe_finding(
        "Pneumothorax", 0.9, values, GEOMETRY, threshold=0.5, view="PA", rules=DEFAULT_RULES
    )
    fallback = describe_finding("Pneumothorax", 0.9, values, GEOMETRY, threshold=0.5, view="PA", rules=rules)
    assert (fallback.side, fallback.zone) == (plain.side, plain.zone)


def test_an_older_reader_without_the_image_flag_reads_the_map_alone(fitted):
    stored = fitted.to_dict()
    del stored["image_bands"]
    again = LocationReader.from_dict(stored)
    assert not again.uses_image
    sample = _samples(np.random.default_rng(4), 1)[0]
    assert again.read("Atelectasis", sample.values, GEOMETRY, 0.8) == fitted.read(
        "Atelectasis", sample.values, GEOMETRY, 0.8
    )


def test_feature_widths_match_and_a_reader_of_other_widths_is_refused(fitted):
    sample = _samples(np.random.default_rng(5), 1)[0]
    assert side_features(sample.values, GEOMETRY).shape == (SIDE_WIDTH,)
    zone = zone_features(sample.values, GEOMETRY, ("left",), 0.8)
    assert zone.shape == (ZONE_WIDTH,)
    image = image_on_grid(_image_with_air("left", 1))
    assert image_features(image, GEOMETRY, ("left",), 8).shape == (6 * 8,)
    stored = fitted.to_dict()
    stored["image_bands"] = 3  # a reader stored by a version with another feature set
    with pytest.raises(CheckpointError, match="refit it with cxreader localize-fit"):
        LocationReader.from_dict(stored)
