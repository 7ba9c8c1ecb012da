"""A learned location reader: side and zone read from a heatmap by per-finding linear classifiers.

The rules of :mod:`cxreader.localization.describe` read a heatmap the same way for every model: the side of
the larger heatmap mass, the zone of its weighted centroid. A weakly supervised map, though, marks where a
finding is most conspicuous (the apical pleural line of a pneumothorax, the plate of an atelectasis, the
upper zones of emphysema), and the report convention names the zone of the whole finding. Where location
ground truth exists for a model's training images, the mapping from *this model's* maps to the report's side
and zone can be learned instead of assumed: a multinomial logistic regression per finding (Cox 1958; the
maximum-entropy classifier of Berger et al. 1996), on a few dozen numbers that summarise the map in the
frame of the estimated lung fields (:mod:`cxreader.localization.geometry`):

* **side features** (:func:`side_features`): at heatmap levels 0, 0.3, 0.5, 0.7 and 0.9, the log ratio of
  the map mass in the image's left and right halves and the smaller half's share of the larger;
* **zone features** (:func:`zone_features`), over the involved half or halves: at the same levels, the
  weighted centroid and spread of the map along the lung height (0 at the apex, 1 at the base) and its mass
  in each third; the cover of each third of the lung field at levels 0.1, 0.3 and 0.5; at levels 0.3, 0.5
  and 0.7, the height of the heaviest connected part of the map and its share of the mass (the zone of a
  multifocal finding is that of its largest focus); the centroid at levels 0.5 and 0.7 as a fraction of
  the image height, and the estimated apex and base (the lung-field estimate is noisy, and the absolute
  heights let the reader weigh it); the probability; and whether both halves are involved;
* **image features** (:func:`image_features`, readers fitted with images): the image itself, resampled to
  :data:`IMAGE_GRID` pixels square and windowed to its 1st-99th percentiles (:func:`image_on_grid`), in each
  of :data:`IMAGE_BANDS` bands of the lung height of the involved lung field(s) and of the other one: the mean
  density and the mean absolute high-pass (the lung markings, a difference of the image and its Gaussian
  blur), and the involved minus the other. The map says which lung and roughly where; the image says how far down the air of a pneumothorax,
  the fibrotic reticulation or the hyperlucency of emphysema reach, which the map's peak does not.

Side classes are in the IMAGE frame (``left``, ``right``, ``both``), so one reader serves PA and AP films; the
patient's side follows from the view (:func:`~cxreader.localization.describe.patient_side`). Zone classes are
those of the ground truth (upper, middle, lower, diffuse, perihilar). The reader is fitted on the
TRAINING split's true positives of the very checkpoint it is stored in (``cxreader localize-fit``), because
it reads that model's maps; it is used only in frontal views, and only for the findings it was fitted for.
Everything else keeps the rules. Its inputs are the heatmap, the probability and the geometry: the
description stays grounded in the map, and a finding the map puts on the wrong side is still described
there.

Serialised as plain lists and numbers (:meth:`LocationReader.to_dict`), so that a checkpoint holding one
still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxreader.errors import CheckpointError, ConfigError
from cxreader.labels import FINDINGS, canonical_finding
from cxreader.localization.geometry import ChestGeometry

#: Heatmap levels at which the side and zone features are taken.
FEATURE_LEVELS = (0.0, 0.3, 0.5, 0.7, 0.9)
#: Levels of the per-third cover features.
COVER_LEVELS = (0.1, 0.3, 0.5)
#: Levels at which the heaviest connected part of the map is located.
COMPONENT_LEVELS = (0.3, 0.5, 0.7)
#: Levels of the centroid in image (not lung) fractions.
ABSOLUTE_LEVELS = (0.5, 0.7)
#: Side classes, in the image frame.
IMAGE_SIDES = ("left", "right", "both")
#: Fewest training true positives a finding needs to get a reader of its own.
MIN_SAMPLES = 20
#: Side of the square grid the image is resampled to for :func:`image_features`.
IMAGE_GRID = 128
#: Bands of the lung height the image features are taken in (8 beat 6 and 3 in 2-fold cross-validation on
#: the demo's held-out fitting set: 682, 727 and 784 errors of 7,516 true positives).
IMAGE_BANDS = 8
#: Scale (in :data:`IMAGE_GRID` pixels) of the Gaussian blur the marking texture is measured against.
TEXTURE_SIGMA = 1.0
#: Inverse L2 strength of the logistic regressions (scikit-learn's ``C``), on standardised features (0.3
#: ranked first in the same cross-validation, ahead of 0.1 and 1).
REGULARISATION_C = 0.3
READER_FORMAT = "cxreader-location-reader/1"
#: Lengths of :func:`side_features` and of :func:`zone_features` (the image features add 6 per band).
SIDE_WIDTH = 2 * len(FEATURE_LEVELS)
ZONE_WIDTH = (
    5 * len(FEATURE_LEVELS) + 3 * len(COVER_LEVELS) + 2 * len(COMPONENT_LEVELS) + len(ABSOLUTE_LEVELS) + 4
)
_EPS = 1e-3


def _halves(shape: tuple[int, int], geometry: ChestGeometry, image_sides: Sequence[str]) -> np.ndarray:
    if (geometry.height, geometry.width) != tuple(shape):
        raise ValueError(f"geometry grid {geometry.width}x{geometry.height} differs from the map's {shape}")
    return geometry.half_mask(tuple(image_sides))


def side_features(values: np.ndarray, geometry: ChestGeometry) -> np.ndarray:
    """Left/right balance of the map (module docstring): ``2 * len(FEATURE_LEVELS)`` numbers."""
    left = _halves(values.shape, geometry, ("left",))
    features = []
    for level in FEATURE_LEVELS:
        weight = np.where(values >= level, values, 0.0)
        left_mass = float(weight[left].sum()) + _EPS
        right_mass = float(weight[~left].sum()) + _EPS
        features += [
            math.log(left_mass / right_mass),
            min(left_mass, right_mass) / max(left_mass, right_mass),
        ]
    return np.asarray(features, dtype=np.float64)


def zone_features(
    values: np.ndarray, geometry: ChestGeometry, image_sides: Sequence[str], probability: float
) -> np.ndarray:
    """Vertical distribution of the map over the involved lung field(s) (module docstring)."""
    half = _halves(values.shape, geometry, image_sides)
    top, bottom = geometry.zone_bounds(tuple(image_sides))
    height = max(bottom - top, 1e-6)
    rows = (np.arange(values.shape[0]) + 0.5 - top) / height
    thirds = ((-np.inf, 1 / 3), (1 / 3, 2 / 3), (2 / 3, np.inf))
    features: list[float] = []
    for level in FEATURE_LEVELS:
        profile = np.where(half & (values >= level), values, 0.0).sum(axis=1)
        if not profile.sum() > 0:
            profile = np.where(half, values, 0.0).sum(axis=1) + 1e-9
        profile = profile / profile.sum()
        centre = float((rows * profile).sum())
        spread = math.sqrt(max(float(((rows - centre) ** 2 * profile).sum()), 0.0))
        features += [centre, spread]
        features += [float(profile[(rows >= low) & (rows < high)].sum()) for low, high in thirds]
    bands = _lung_bands(geometry, image_sides, rows, 3)
    for level in COVER_LEVELS:
        covered = values >= level
        for band in bands:
            features.append(float((band & covered).sum()) / max(1.0, float(band.sum())))
    for level in COMPONENT_LEVELS:
        features += _largest_component(values, half & (values >= level), rows)
    # The same centroid in image fractions, and the estimated apex and base: the lung-field estimate is
    # noisy (its base by a few % of the lung height), and the absolute heights let the reader weigh it.
    image_rows = (np.arange(values.shape[0]) + 0.5) / values.shape[0]
    for level in ABSOLUTE_LEVELS:
        profile = np.where(half & (values >= level), values, 0.0).sum(axis=1)
        features.append(float((image_rows * profile).sum() / max(float(profile.sum()), 1e-9)))
    features += [top / values.shape[0], bottom / values.shape[0]]
    features += [float(probability), float(len(image_sides) == 2)]
    return np.asarray(features, dtype=np.float64)


def image_on_grid(pixels: np.ndarray) -> np.ndarray:
    """The image as the image features see it: gray, :data:`IMAGE_GRID` pixels square (area-averaged when
    shrunk), windowed to its 1st-99th percentiles into [0, 1]."""
    from PIL import Image

    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim == 3:
        array = array.mean(axis=2)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"expected a 2-D image, got shape {array.shape}")
    low, high = np.percentile(array, (1.0, 99.0))
    array = np.clip((array - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    resized = Image.fromarray(array).resize((IMAGE_GRID, IMAGE_GRID), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32)


def image_features(
    image: np.ndarray, geometry: ChestGeometry, image_sides: Sequence[str], bands: int = IMAGE_BANDS
) -> np.ndarray:
    """Density and marking texture by band of the involved and the other lung field (module docstring)."""
    from scipy.ndimage import gaussian_filter

    if image.shape != (IMAGE_GRID, IMAGE_GRID):
        raise ValueError(f"image_features needs an image_on_grid image, got shape {image.shape}")
    grid = geometry.scaled_to(IMAGE_GRID, IMAGE_GRID)
    involved = tuple(image_sides)
    other = tuple(side for side in IMAGE_SIDES[:2] if side not in involved) or involved
    texture = np.abs(image - gaussian_filter(image, TEXTURE_SIGMA))
    per_field = []
    for sides in (involved, other):
        top, bottom = grid.zone_bounds(sides)
        rows = (np.arange(IMAGE_GRID) + 0.5 - top) / max(bottom - top, 1e-6)
        numbers = []
        for band in _lung_bands(grid, sides, rows, bands):
            numbers += [float(image[band].mean()), float(texture[band].mean())] if band.any() else [0.0, 0.0]
        per_field.append(np.asarray(numbers))
    return np.concatenate([per_field[0], per_field[1], per_field[0] - per_field[1]])


def _lung_bands(
    geometry: ChestGeometry, image_sides: Sequence[str], rows: np.ndarray, count: int
) -> list[np.ndarray]:
    """The lung field(s) of ``image_sides`` cut into ``count`` equal bands of their height; ``rows`` are the
    grid's row centres as fractions of that height (0 at the apex, 1 at the base)."""
    lungs = np.zeros((geometry.height, geometry.width), dtype=bool)
    for side in image_sides:
        lungs |= geometry.lung_mask(side)
    return [lungs & (rows[:, None] >= k / count) & (rows[:, None] < (k + 1) / count) for k in range(count)]


def _largest_component(values: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> list[float]:
    """Height (lung-normalised) of the heaviest connected part of ``mask`` and its share of the map mass:
    where the biggest of several foci lies (the zone of a finding is that of its largest instance)."""
    from scipy.ndimage import label

    labels, count = label(mask)
    if count == 0:
        return [0.5, 0.0]
    weights = np.where(mask, values, 0.0)
    masses = np.bincount(labels.ravel(), weights=weights.ravel(), minlength=count + 1)[1:]
    biggest = int(np.argmax(masses)) + 1
    part = np.where(labels == biggest, weights, 0.0).sum(axis=1)
    return [float((rows * part).sum() / max(part.sum(), 1e-9)), float(masses.max() / max(masses.sum(), 1e-9))]


def image_sides_of(side_class: str) -> tuple[str, ...]:
    """The image halves of a side class: ``both`` is both halves."""
    return ("left", "right") if side_class == "both" else (side_class,)


@dataclass(frozen=True)
class LinearReader:
    """One fitted multinomial (or binary, or constant) logistic regression on standardised features."""

    classes: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_classes, n_features); one row for a binary model; empty for a constant one
    intercept: np.ndarray

    def predict(self, features: np.ndarray) -> str:
        if len(self.classes) == 1:
            return self.classes[0]
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        scores = self.coef @ x + self.intercept
        if len(self.classes) == 2 and scores.shape[0] == 1:
            return self.classes[int(scores[0] > 0)]
        return self.classes[int(np.argmax(scores))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LinearReader:
        reader = cls(
            classes=tuple(str(name) for name in values["classes"]),
            mean=np.asarray(values["mean"], dtype=np.float64),
            scale=np.asarray(values["scale"], dtype=np.float64),
            coef=np.asarray(values["coef"], dtype=np.float64).reshape(-1, len(values["mean"]) or 0),
            intercept=np.asarray(values["intercept"], dtype=np.float64),
        )
        if not reader.classes:
            raise ValueError("a reader needs at least one class")
        return reader

    @classmethod
    def fit(cls, features: np.ndarray, targets: Sequence[str], c: float = REGULARISATION_C) -> LinearReader:
        from sklearn.linear_model import LogisticRegression  # fitting only; reading needs numpy alone

        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(targets)
        classes = tuple(sorted({str(value) for value in y}))
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        if len(classes) == 1:
            empty = np.zeros((0, x.shape[1]))
            return cls(classes, mean, scale, empty, np.zeros(0))
        model = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y)
        return cls(tuple(str(name) for name in model.classes_), mean, scale, model.coef_, model.intercept_)


@dataclass(frozen=True)
class LocationReader:
    """Per-finding side and zone readers, and a line saying what they were fitted on."""

    side: dict[str, LinearReader] = field(default_factory=dict)
    zone: dict[str, LinearReader] = field(default_factory=dict)
    fitted_on: str = ""
    image_bands: int = 0  # > 0: the zone readers also take image_features in that many bands

    @property
    def uses_image(self) -> bool:
        return self.image_bands > 0

    def read(
        self,
        finding: str,
        values: np.ndarray,
        geometry: ChestGeometry,
        probability: float,
        image: np.ndarray | None = None,
    ) -> tuple[str, str] | None:
        """``(image side class, zone)`` of one finding's map, or None when this finding has no reader (or
        the reader needs the image, :func:`image_on_grid`, and none is given: the rules place it then)."""
        if finding not in self.side or finding not in self.zone or (self.uses_image and image is None):
            return None
        side = self.side[finding].predict(side_features(values, geometry))
        zone = self.zone[finding].predict(
            _zone_inputs(self.image_bands, values, geometry, side, probability, image)
        )
        return side, zone

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": READER_FORMAT,
            "fitted_on": self.fitted_on,
            "image_bands": self.image_bands,
            "side": {name: reader.to_dict() for name, reader in self.side.items()},
            "zone": {name: reader.to_dict() for name, reader in self.zone.items()},
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LocationReader:
        if not isinstance(values, Mapping) or values.get("format") != READER_FORMAT:
            raise CheckpointError(f"not a location reader of format {READER_FORMAT}")
        try:
            reader = cls(
                side={canonical_finding(k): LinearReader.from_dict(v) for k, v in values["side"].items()},
                zone={canonical_finding(k): LinearReader.from_dict(v) for k, v in values["zone"].items()},
                fitted_on=str(values.get("fitted_on", "")),
                image_bands=int(values.get("image_bands", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed location reader ({type(exc).__name__}: {exc})") from None
        widths = {"side": SIDE_WIDTH, "zone": ZONE_WIDTH + 6 * max(reader.image_bands, 0)}
        for kind, width in widths.items():
            for name, linear in getattr(reader, kind).items():
                if linear.mean.shape != (width,):
                    raise CheckpointError(
                        f"the location reader's {kind} reader of {name} reads {linear.mean.shape[0]} features, "
                        f"this version {width}: refit it with cxreader localize-fit"
                    )
        return reader


@dataclass(frozen=True)
class LocatedSample:
    """One training example: a true positive's map on the model's grid, its geometry and its ground truth.

    ``truth_side`` is in the IMAGE frame (:data:`IMAGE_SIDES`); ``image`` is the image on the image
    features' grid (:func:`image_on_grid`), or None for a reader of the map alone.
    """

    finding: str
    values: np.ndarray
    geometry: ChestGeometry
    probability: float
    truth_side: str
    truth_zone: str
    image: np.ndarray | None = None


def _zone_inputs(
    image_bands: int,
    values: np.ndarray,
    geometry: ChestGeometry,
    side_class: str,
    probability: float,
    image: np.ndarray | None,
) -> np.ndarray:
    sides = image_sides_of(side_class)
    features = zone_features(values, geometry, sides, probability)
    if image_bands <= 0:
        return features
    return np.concatenate([features, image_features(image, geometry, sides, image_bands)])


def fit_location_reader(
    samples: Sequence[LocatedSample],
    *,
    skip: Sequence[str] = (),
    min_samples: int = MIN_SAMPLES,
    c: float = REGULARISATION_C,
    fitted_on: str = "",
) -> LocationReader:
    """Fit one side and one zone reader per finding with at least ``min_samples`` samples.

    The zone reader is fitted on the zone features of the TRUE image sides; at reading time it gets those of
    the side the side reader chose. Findings in ``skip`` (placed by definition) get none. The readers take the
    image features too when every sample carries its image.

    Raises:
        ConfigError: a side class outside :data:`IMAGE_SIDES`, or no finding with enough samples.
    """
    by_finding: dict[str, list[LocatedSample]] = {}
    for sample in samples:
        if sample.truth_side not in IMAGE_SIDES:
            raise ConfigError(f"side {sample.truth_side!r} is not one of {', '.join(IMAGE_SIDES)}")
        by_finding.setdefault(canonical_finding(sample.finding), []).append(sample)
    bands = IMAGE_BANDS if samples and all(sample.image is not None for sample in samples) else 0
    side_readers, zone_readers = {}, {}
    for name in FINDINGS:
        group = by_finding.get(name, [])
        if name in skip or len(group) < min_samples:
            continue
        side_x = np.stack([side_features(s.values, s.geometry) for s in group])
        side_readers[name] = LinearReader.fit(side_x, [s.truth_side for s in group], c)
        zone_x = np.stack(
            [_zone_inputs(bands, s.values, s.geometry, s.truth_side, s.probability, s.image) for s in group]
        )
        zone_readers[name] = LinearReader.fit(zone_x, [s.truth_zone for s in group], c)
    if not side_readers:
        raise ConfigError(f"no finding has the {min_samples} true positives a location reader needs")
    return LocationReader(side=side_readers, zone=zone_readers, fitted_on=fitted_on, image_bands=bands)
