"""A cheap estimate of the lung fields of a frontal chest radiograph, from intensity profiles.

Describing where a finding lies (side, upper/middle/lower zone, extent of the hemithorax) needs the midline
and the two lung fields. Fixed image fractions (midline at the centre, lungs between fixed rows) are wrong
whenever the patient is off-centre, the collimation is tight or loose, or inspiration is shallow, so the
lungs are located from the image itself, at the cost of a few array reductions:

1. The image is resampled to at most :data:`WORK_SIZE` pixels a side and smoothed (Gaussian, about 1.5 % of
   the side), which removes ribs, vessels and noise but keeps the large dark lung fields.
2. **Midline**: the column profile (mean of each column over the chest band, 20-60 % of the height) is bright
   at the mediastinum and spine between two dark lung valleys. The midline is the axis about which that
   profile is most nearly mirror-symmetric (least mean absolute difference, searched over the central 40 %),
   which is less pulled by the heart, lying two thirds left of the midline, than the profile's maximum.
3. **Lateral extent of each lung**: on each side of the midline, the darkest column of the profile (the lung
   valley); the lung spans the contiguous columns around it that stay below half way between the valley and
   the mediastinal peak (a half-maximum rule: half way between dark lung and bright soft tissue).
4. **Apex and base of each lung**: the row profile of the lung's central columns is dark from the apex to the
   diaphragm; the lung spans the contiguous rows around its darkest row that stay below half way between that
   minimum and the brighter of the shoulder and abdomen levels. The base found this way is the height of the
   diaphragm under the middle of the lung, which is what zone thirds are measured against. A column whose
   walk runs off the top or bottom of the image found no apex or diaphragm (opacities flattened its profile)
   and is ignored; when no column of either lung is left, the rows are those of :data:`FIXED_FRACTIONS`,
   while the midline and columns stay estimated.
5. **Sanity checks**: a lung narrower than 12 % or shorter than 25 % of the image, or a midline outside the
   central 40 %, means the profiles were not those of a frontal chest film (a lateral view, a cropped or
   inverted image); then the fixed fractions of :func:`fixed_geometry` are used and ``method`` says so.

Zones are the upper, middle and lower thirds of the lung height between apex and base, as in chest
radiograph reports. Everything here is in IMAGE coordinates
(``image_left`` is the lung on the image's left); naming the patient's side is the caller's job
(:mod:`cxreader.localization.describe`), because it depends on the view position.

How often this is right, against the fixed fractions, is measured on the synthetic set by
``benchmarks/localization_synthetic.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter1d

from cxreader.vocabulary import ZONES

#: Side (in pixels) of the working copy the profiles are computed on.
WORK_SIZE = 128
#: Margin (fraction of the image side) by which the thorax mask grows beyond the lung fields, so that the
#: costophrenic recesses, the domes and a hernia just below them stay inside.
THORAX_MARGIN = 0.05
#: Fixed fractions of a typical PA film (fractions of width and height), the fallback and the baseline.
FIXED_FRACTIONS = {
    "midline": 0.5,
    "lung_inner": 0.04,  # lung's medial edge, from the midline
    "lung_outer": 0.40,  # lung's lateral edge, from the midline
    "apex": 0.12,
    "base": 0.75,
}

_SMOOTH_FRACTION = 0.015
_BAND = (0.20, 0.60)
_MIDLINE_RANGE = (0.35, 0.65)
_MIDLINE_REFINE = 0.06
_MIN_LUNG_WIDTH = 0.12
_MIN_LUNG_HEIGHT = 0.25
_WALL_RISE = 0.1
_MEDIAL_SKIP = 0.5
_EDGE_LEVEL = 0.75
_APEX_LEVEL = 0.6
_BASE_PERCENTILE = 75
_DARKEST_ROWS = (0.3, 0.65)  # every frontal chest film has aerated lung at these heights


@dataclass(frozen=True)
class LungField:
    """One lung field as a box in image pixels: columns ``[x0, x1)`` and rows ``[top, bottom)``."""

    x0: float
    x1: float
    top: float
    bottom: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.bottom - self.top

    def scaled(self, sx: float, sy: float) -> LungField:
        return LungField(self.x0 * sx, self.x1 * sx, self.top * sy, self.bottom * sy)


@dataclass(frozen=True)
class ChestGeometry:
    """Midline and lung fields of one image, in pixels of a ``width x height`` grid (image coordinates).

    Attributes:
        width, height: The grid the coordinates refer to.
        midline: Column of the patient's midline.
        image_left, image_right: The lung fields on the image's left and right halves.
        method: ``"profile"`` (estimated from the image) or ``"fixed"`` (fixed fractions).
    """

    width: int
    height: int
    midline: float
    image_left: LungField
    image_right: LungField
    method: str

    def scaled_to(self, width: int, height: int) -> ChestGeometry:
        """The same geometry on another grid size (e.g. from the heatmap's grid to the original image)."""
        sx, sy = width / self.width, height / self.height
        return replace(
            self,
            width=int(width),
            height=int(height),
            midline=self.midline * sx,
            image_left=self.image_left.scaled(sx, sy),
            image_right=self.image_right.scaled(sx, sy),
        )

    def lung(self, image_side: str) -> LungField:
        """The lung field on the image's ``"left"`` or ``"right"``."""
        return self.image_left if image_side == "left" else self.image_right

    def image_side_of(self, x: float) -> str:
        """``"left"`` or ``"right"``: which half of the image (split at the midline) column ``x`` is in."""
        return "left" if x < self.midline else "right"

    def zone_bounds(self, image_sides: tuple[str, ...] = ("left", "right")) -> tuple[float, float]:
        """Apex and base rows used for zones: of one lung, or the mean of both."""
        lungs = [self.lung(side) for side in image_sides]
        return float(np.mean([lung.top for lung in lungs])), float(np.mean([lung.bottom for lung in lungs]))

    def zone_of(self, y: float, image_sides: tuple[str, ...] = ("left", "right")) -> str:
        """The zone (third of the lung height) holding row ``y``; rows beyond the lung clamp to the ends."""
        top, bottom = self.zone_bounds(image_sides)
        third = max((bottom - top) / 3.0, 1e-6)
        return ZONES[int(np.clip(math.floor((y - top) / third), 0, 2))]

    def thorax_mask(self, margin: float = 0.0) -> np.ndarray:
        """Boolean ``(height, width)`` mask of the thorax, open below.

        Columns span from the outer edge of one lung field to the outer edge of the other (keeping the
        mediastinum, heart and hila between them), rows from the higher apex down to the BOTTOM of the image;
        both grow by ``margin`` (a fraction of the grid's side). It is open below because the lower lung
        border found from the profiles is where aerated lung ends: an effusion, a collapse or a hiatus hernia
        lies at or below it, and must stay inside.
        """
        grow_x, grow_y = margin * self.width, margin * self.height
        top = min(self.image_left.top, self.image_right.top) - grow_y
        left = min(self.image_left.x0, self.image_right.x0) - grow_x
        right = max(self.image_left.x1, self.image_right.x1) + grow_x
        mask = np.zeros((self.height, self.width), dtype=bool)
        cols = slice(max(0, int(math.floor(left))), max(0, int(math.ceil(right))))
        mask[max(0, int(math.floor(top))) :, cols] = True
        return mask

    def half_mask(self, image_sides: tuple[str, ...] | list[str] = ("left", "right")) -> np.ndarray:
        """Boolean ``(height, width)`` mask of the image halves (split at the midline) named in ``image_sides``."""
        mask = np.zeros((self.height, self.width), dtype=bool)
        split = int(math.ceil(self.midline))
        for side in image_sides:
            if side == "left":
                mask[:, :split] = True
            else:
                mask[:, split:] = True
        return mask

    def lung_mask(self, image_sides: tuple[str, ...] = ("left", "right")) -> np.ndarray:
        """Boolean ``(height, width)`` mask of the boxes of the lung fields named in ``image_sides``."""
        mask = np.zeros((self.height, self.width), dtype=bool)
        for side in image_sides:
            lung = self.lung(side)
            rows = slice(int(round(lung.top)), max(int(round(lung.bottom)), int(round(lung.top)) + 1))
            cols = slice(int(round(lung.x0)), max(int(round(lung.x1)), int(round(lung.x0)) + 1))
            mask[rows, cols] = True
        return mask


def fixed_geometry(width: int, height: int) -> ChestGeometry:
    """Lung fields at the fixed fractions of the image in :data:`FIXED_FRACTIONS`."""
    f = FIXED_FRACTIONS
    mid = f["midline"] * width
    top, bottom = f["apex"] * height, f["base"] * height
    inner, outer = f["lung_inner"] * width, f["lung_outer"] * width
    return ChestGeometry(
        width=int(width),
        height=int(height),
        midline=mid,
        image_left=LungField(max(0.0, mid - outer), mid - inner, top, bottom),
        image_right=LungField(mid + inner, min(float(width), mid + outer), top, bottom),
        method="fixed",
    )


def estimate_geometry(pixels: np.ndarray) -> ChestGeometry:
    """Estimate the midline and lung fields of a frontal chest image from intensity profiles.

    Args:
        pixels: Grayscale ``(H, W)``, float in [0, 1] or uint8, bone bright (the display rule of
            :mod:`cxreader.data.io`).

    Returns:
        The geometry on the ``W x H`` grid of ``pixels``; ``method == "fixed"`` when the profiles failed the
        sanity checks of the module docstring.
    """
    array = np.asarray(pixels)
    if array.ndim != 2 or min(array.shape) < 8:
        raise ValueError(f"pixels must be a 2-D image of at least 8x8, got shape {array.shape}")
    height, width = array.shape
    estimate = _profile_geometry(_working_copy(array))
    if estimate is None:
        return fixed_geometry(width, height)
    return estimate.scaled_to(width, height)


def _working_copy(array: np.ndarray) -> np.ndarray:
    values = array.astype(np.float32)
    if array.dtype == np.uint8:
        values /= 255.0
    height, width = values.shape
    scale = min(1.0, WORK_SIZE / max(height, width))
    if scale < 1.0:
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        values = np.asarray(Image.fromarray(values, mode="F").resize(size, Image.Resampling.BOX))
    return values


def _profile_geometry(work: np.ndarray) -> ChestGeometry | None:
    height, width = work.shape
    sigma = max(1.0, _SMOOTH_FRACTION * max(height, width))
    band = work[int(_BAND[0] * height) : max(int(_BAND[1] * height), int(_BAND[0] * height) + 1)]
    columns = gaussian_filter1d(band.mean(axis=0), sigma, mode="nearest")
    midline = _symmetry_axis(columns)
    if midline is None:
        return None
    mid = int(round(midline))
    peak = float(columns[max(0, mid - 2) : mid + 3].max())
    spans, rows = {}, {}
    for image_side, direction in (("left", -1), ("right", 1)):
        span = _lung_columns(columns, mid, direction, peak)
        if span is None:
            return None
        spans[image_side] = span
        rows[image_side] = _lung_rows(work, span[0], span[1], direction, sigma)
    found = [value for value in rows.values() if value is not None]
    if found:
        # Fluid, collapse or a mass can hide one lung's base or apex; the anatomical lung is at least as
        # tall as the taller of the two, so both take the highest apex and the lowest base.
        top = float(min(value[0] for value in found))
        bottom = float(max(value[1] for value in found))
    else:  # opacities everywhere: no row profile shows a lung; the typical film's rows (step 5)
        top, bottom = FIXED_FRACTIONS["apex"] * height, FIXED_FRACTIONS["base"] * height
    lungs = {side: LungField(float(x0), float(x1), top, bottom) for side, (x0, x1) in spans.items()}
    for lung in lungs.values():
        if lung.width < _MIN_LUNG_WIDTH * width or lung.height < _MIN_LUNG_HEIGHT * height:
            return None
    return ChestGeometry(
        width=width,
        height=height,
        midline=float(midline),
        image_left=lungs["left"],
        image_right=lungs["right"],
        method="profile",
    )


def _symmetry_axis(profile: np.ndarray) -> float | None:
    """The midline (module docstring, step 2), searched near the brightest column of the central range."""
    n = len(profile)
    low, high = int(_MIDLINE_RANGE[0] * n), int(_MIDLINE_RANGE[1] * n)
    brightest = low + int(np.argmax(profile[low : high + 1]))
    reach = int(0.3 * n)
    best, best_score = None, math.inf
    refine = max(1, int(_MIDLINE_REFINE * n))
    for centre in range(max(low, brightest - refine), min(high, brightest + refine) + 1):
        k = min(reach, centre, n - 1 - centre)
        if k < 0.15 * n:
            continue
        left = profile[centre - k : centre][::-1]
        right = profile[centre + 1 : centre + 1 + k]
        score = float(np.mean(np.abs(left - right)))
        if score < best_score:
            best, best_score = centre, score
    return None if best is None else float(best)


def _lung_columns(profile: np.ndarray, mid: int, direction: int, peak: float) -> tuple[int, int] | None:
    """Columns ``[x0, x1)`` of the lung valley on one side of the midline (half-maximum rule)."""
    n = len(profile)
    start = mid + direction * max(1, int(0.03 * n))
    path = np.arange(start, n if direction > 0 else -1, direction)
    if len(path) < 4:
        return None
    values = profile[path]
    # Outside the body the film is darker still than the lung, so the lung valley is the first deep minimum
    # walking out from the midline: the walk stops at the chest wall, the first clear rise after it.
    deepest = peak - float(values.min())
    if deepest < 0.02:  # no contrast between lung and mediastinum: not a chest film
        return None
    valley, wall = 0, len(values) - 1
    for index in range(1, len(values)):
        if values[index] < values[valley]:
            valley = index
        depth = peak - float(values[valley])
        if depth >= 0.5 * deepest and values[index] > values[valley] + _WALL_RISE * depth:
            wall = index
            while wall + 1 < len(values) and values[wall + 1] >= values[wall]:
                wall += 1
            break
    bottom = float(values[valley])
    # Medial border: half way up to the mediastinum; lateral border: half way up to the chest wall.
    medial_level = bottom + _EDGE_LEVEL * (peak - bottom)
    lateral_level = bottom + _EDGE_LEVEL * (float(values[wall]) - bottom)
    first = last = valley
    while first - 1 >= 0 and values[first - 1] < medial_level:
        first -= 1
    while last + 1 <= wall and values[last + 1] < lateral_level:
        last += 1
    columns = sorted((int(path[first]), int(path[last])))
    return columns[0], columns[1] + 1


def _lung_rows(work: np.ndarray, x0: int, x1: int, direction: int, sigma: float) -> tuple[int, int] | None:
    """Rows ``[top, bottom)`` of a lung spanning columns ``[x0, x1)`` (apex and mean diaphragm height).

    ``direction`` is -1 for the lung on the image's left (lateral border at ``x0``), +1 for the other. The
    medial quarter of the lung is left out: the heart overlaps it.
    """
    height = work.shape[0]
    width = x1 - x0
    skip = int(round(_MEDIAL_SKIP * width))
    c0, c1 = (x0, x1 - skip) if direction < 0 else (x0 + skip, x1)
    c1 = max(c1, c0 + 1)
    columns = gaussian_filter1d(gaussian_filter1d(work[:, c0:c1], sigma, axis=0, mode="nearest"), 1.0, axis=1)
    rows = columns.mean(axis=1)
    search = slice(int(_DARKEST_ROWS[0] * height), int(_DARKEST_ROWS[1] * height) + 1)
    darkest = search.start + int(np.argmin(rows[search]))
    above, below = float(rows[: darkest + 1].max()), float(rows[darkest:].max())
    dark = float(rows[darkest])
    level = dark + _EDGE_LEVEL * (min(above, below) - dark)
    # Above the apex lie the darker soft tissues of the neck and supraclavicular fossae, not bone: a lower
    # level stops the walk at the apex instead of letting it run up the neck.
    apex_level = dark + _APEX_LEVEL * (above - dark)
    tops, bottoms = [], []
    for column in columns.T:
        if column[darkest] >= min(level, apex_level):
            continue
        top = bottom = darkest
        while top - 1 >= 0 and column[top - 1] < apex_level:
            top -= 1
        while bottom + 1 < height and column[bottom + 1] < level:
            bottom += 1
        if top == 0 or bottom == height - 1:
            # The walk ran off the image: no apex or diaphragm stopped it (opacities flattened the
            # profile), so this column says nothing about where the lung ends.
            continue
        tops.append(top)
        bottoms.append(bottom + 1)
    if len(tops) < max(2, 0.3 * columns.shape[1]):
        return None
    # The apex is the lung's highest point; the base is the mean height of the diaphragm under the lung
    # (between the dome and the costophrenic angle), the lower end of the lung height that zones divide.
    return round(float(np.percentile(tops, 10))), round(float(np.percentile(bottoms, _BASE_PERCENTILE)))
