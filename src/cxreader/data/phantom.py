"""A chest radiograph phantom: chest-like images with the 14 ChestX-ray14 findings drawn at known places.

This is a test and demo instrument, not a simulation of radiography. Each image is a frontal (PA or AP)
chest-like picture: body soft tissue on a dark background, two dark lung fields shaped like lungs, mediastinum,
heart (two thirds of it left of the midline), hila, diaphragm domes with costophrenic angles, spine, ribs,
clavicles, a gastric bubble and branching vascular markings in the lungs. Findings are drawn with a look
modelled on their textbook radiographic signs (Felson, *Principles of Chest Roentgenology*; Hansell et al.,
"Fleischner Society: Glossary of Terms for Thoracic Imaging", Radiology 2008) and are kept visually distinct
so that a small CNN can separate them. Every drawn instance is recorded precisely (:class:`DrawnFinding`):
side, zone, organ, bounding box, extent, size and severity.

Coordinates. Geometry lives in normalised units: the image spans [0, 1] in x (left to right) and y (top to
bottom), one unit being :data:`FIELD_OF_VIEW_CM` centimetres. Anatomy is defined in a frame turned by a
degree or two against the image. A hemithorax uses the mirrored lateral coordinate ``d = sign * (x -
midline)``, ``sign`` being -1 for the patient's RIGHT and +1 for the patient's LEFT: in a PA or AP view the
patient faces the viewer, so the patient's right lies in the image's LEFT half. One lung model serves both
sides.

Rendering is additive in a linear "density" map (brighter = more attenuating): soft tissue, bone, heart and
fluid add; aerated lung subtracts. Findings add density (opacities), remove lung markings or deepen the lucency
(pneumothorax, emphysema), or change the anatomy (cardiomegaly, hyperinflation, volume loss). The map is then
blurred a little, given noise and a random window and gamma, and quantised to 8 bits.

Vocabulary of the records: sides :data:`SIDES`, zones :data:`ZONES` plus :data:`SPECIAL_ZONES`, organs
:data:`ORGANS`, severities :data:`SEVERITIES`. A finding drawn on both sides as two separate processes (a
bilateral effusion, bilateral apical caps) is recorded as two instances, one per side; a finding that is
bilateral by nature (Edema, Emphysema, Fibrosis) is one instance with side ``"bilateral"``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import gaussian_filter

from cxreader.labels import FINDINGS, NO_FINDING, ORGAN_OF, canonical_finding

#: Width (and height) of the imaged field in centimetres: a realistic chest field of view.
FIELD_OF_VIEW_CM = 40.0
SEVERITIES = ("mild", "moderate", "severe")
SIDES = ("right", "left", "bilateral", "midline")
ZONES = ("upper", "middle", "lower")
#: Zone values used besides the thirds of a lung, and what they mean.
SPECIAL_ZONES = {
    "diffuse": "all three zones of the affected lung(s) involved (extensive Emphysema or Fibrosis)",
    "perihilar": "around both hila, sparing the periphery (the bat-wing haze of Edema)",
    "cardiac": "the cardiac silhouette itself (Cardiomegaly)",
    "retrocardiac": "behind the heart at the midline, just above the diaphragm (hiatus Hernia)",
}
ORGANS = ("lung", "pleura", "heart", "mediastinum", "diaphragm")
_SEVERITY_P = (0.4, 0.4, 0.2)
_SIGN = {"right": -1, "left": 1}
_SIDE_OF_SIGN = {-1: "right", 1: "left"}
_BILATERAL = ("Edema", "Emphysema", "Fibrosis")
_MIDLINE = ("Cardiomegaly", "Hernia")
_EPS = 1e-6


@dataclass(frozen=True)
class FindingRequest:
    """A finding to draw; severity and side are drawn at random when left as None.

    Attributes:
        finding: One of :data:`~cxreader.labels.FINDINGS` (any accepted spelling).
        severity: One of :data:`SEVERITIES`, or None.
        side: "right" or "left" (the patient's side; Effusion also "bilateral"), or None. Bilateral and
            midline findings accept only their own side or None.
    """

    finding: str
    severity: str | None = None
    side: str | None = None


@dataclass(frozen=True)
class DrawnFinding:
    """One drawn instance of a finding, as recorded in the ground truth.

    Attributes:
        finding: Canonical finding name.
        side: "right"/"left" (the patient's), "bilateral" or "midline".
        zone: "upper"/"middle"/"lower" (third of the lung height holding the centroid) or a
            :data:`SPECIAL_ZONES` value.
        organ: One of :data:`ORGANS`.
        x, y, w, h: Bounding box in pixels (top-left corner, width, height) of the drawn abnormality.
        extent: Fraction of the hemithorax's lung area covered (right/left), or of the thorax area
            (lungs, mediastinum and heart; bilateral and midline findings).
        size_cm: Diameter for nodules, masses and hernias; otherwise the longest side of the box.
        severity: One of :data:`SEVERITIES`; drawn first, it sets how big and dense the finding is.
    """

    finding: str
    side: str
    zone: str
    organ: str
    x: float
    y: float
    w: float
    h: float
    extent: float
    size_cm: float
    severity: str


@dataclass(frozen=True)
class Lung:
    """One lung field in the mirrored frame of its hemithorax (all lengths normalised).

    The field is the inside of an ellipse (lateral border and apex), above a diaphragm dome (a parabola with
    its top at ``dome_d``; the lateral limb descends ``dome_drop`` into the costophrenic recess, the medial
    limb half as far) and lateral to the line ``d = medial_d``.
    """

    sign: int
    centre_d: float
    centre_y: float
    semi_a: float
    semi_b: float
    medial_d: float
    dome_y: float
    dome_d: float
    dome_halfwidth: float
    dome_drop: float
    air: float

    @property
    def apex_y(self) -> float:
        return self.centre_y - self.semi_b

    @property
    def base_y(self) -> float:
        """Mean height of the diaphragm under the lung: the lower end of the lung height used for zones."""
        return self.dome_y + 0.5 * self.dome_drop

    @property
    def lateral_d(self) -> float:
        return self.centre_d + self.semi_a

    def lateral_edge(self, y):
        """Lateral border ``d`` at height ``y``."""
        v = np.clip((y - self.centre_y) / self.semi_b, -1.0, 1.0)
        return self.centre_d + self.semi_a * np.sqrt(1.0 - v * v)

    def diaphragm_y(self, d):
        t = (d - self.dome_d) / self.dome_halfwidth
        return self.dome_y + self._drop(t) * t * t

    def _drop(self, t):
        """Depth of the dome's limb: the medial limb (t < 0) descends half as far as the lateral one."""
        if np.ndim(t) == 0:
            return 0.5 * self.dome_drop if t < 0 else self.dome_drop
        drop = np.full(np.shape(t), self.dome_drop, dtype=np.result_type(t, np.float32))
        drop[t < 0] *= 0.5
        return drop

    def distance(self, d, y):
        """Approximate signed distance to the lung border (positive inside), for masks and pleural bands."""
        u = (d - self.centre_d) / self.semi_a
        v = (y - self.centre_y) / self.semi_b
        grad = 2.0 * np.sqrt((u / self.semi_a) ** 2 + (v / self.semi_b) ** 2) + _EPS
        inside_ellipse = (1.0 - u * u - v * v) / grad
        t = (d - self.dome_d) / self.dome_halfwidth
        drop = self._drop(t)
        slope = 2.0 * drop * t / self.dome_halfwidth
        above_dome = (self.dome_y + drop * t * t - y) / np.sqrt(1.0 + slope * slope)
        return np.minimum(np.minimum(inside_ellipse, above_dome), d - self.medial_d)


@dataclass(frozen=True)
class Anatomy:
    """The normal anatomy of one image (normalised units, anatomy frame); findings may modify it."""

    view: str
    rotation: float
    midline: float
    body_half_width: float
    right: Lung
    left: Lung
    heart_width: float
    heart_tilt: float
    heart_aspect: float
    heart_right_fraction: float
    heart_base_y: float
    hilum_d: float
    hilum_y_right: float
    hilum_y_left: float
    knob_y: float
    carina_y: float
    rib_top: float
    rib_spacing: float
    marking_strength: float
    bubble_radius: float
    bubble_y: float
    soft_tissue: float
    texture_seed: int
    noise_sigma: float
    window_low: float
    window_high: float
    gamma: float

    def lung(self, sign: int) -> Lung:
        return self.right if sign < 0 else self.left

    def hilum_y(self, sign: int) -> float:
        return self.hilum_y_right if sign < 0 else self.hilum_y_left

    @property
    def thoracic_width(self) -> float:
        """Internal thoracic diameter at its widest (the denominator of the cardiothoracic ratio)."""
        return self.right.lateral_d + self.left.lateral_d

    @property
    def cardiothoracic_ratio(self) -> float:
        return self.heart_width / self.thoracic_width

    def heart_ellipse(self) -> tuple[float, float, float, float, float]:
        """Centre x, centre y, semi-major, semi-minor and tilt of the heart ellipse in the anatomy frame.

        The ellipse is sized so that its horizontal extent is ``heart_width``, with ``heart_right_fraction``
        of it right of the midline (the patient's right: image left) and its lower part cut by the diaphragm.
        """
        tilt, aspect = self.heart_tilt, self.heart_aspect
        half = 0.5 * self.heart_width
        semi_major = half / math.sqrt(math.cos(tilt) ** 2 + (aspect * math.sin(tilt)) ** 2)
        semi_minor = aspect * semi_major
        vertical = math.sqrt((semi_major * math.sin(tilt)) ** 2 + (semi_minor * math.cos(tilt)) ** 2)
        centre_x = self.midline + self.heart_width * (0.5 - self.heart_right_fraction)
        centre_y = self.heart_base_y - 0.8 * vertical
        return centre_x, centre_y, semi_major, semi_minor, tilt


@dataclass(frozen=True)
class PhantomImage:
    """A drawn image: 8-bit pixels, the drawn findings and the anatomy they were drawn on."""

    pixels: np.ndarray
    findings: tuple[DrawnFinding, ...]
    anatomy: Anatomy

    @property
    def labels(self) -> tuple[str, ...]:
        """The findings present, in :data:`FINDINGS` order (empty for a normal image)."""
        present = {item.finding for item in self.findings}
        return tuple(name for name in FINDINGS if name in present)


@dataclass
class _Plan:
    finding: str
    severity: str
    side: str
    rng: np.random.Generator
    lung_before: Lung | None = None


def _entropy(seed: int | Sequence[int]) -> tuple[int, ...]:
    values = (seed,) if isinstance(seed, (int, np.integer)) else tuple(seed)
    if not values or any(int(value) < 0 for value in values):
        raise ValueError(f"seed must be a non-negative integer or a sequence of them, got {seed!r}")
    return tuple(int(value) for value in values)


def _rng(entropy: tuple[int, ...], stream: int) -> np.random.Generator:
    # Independent streams per purpose (anatomy, noise, each finding) so that adding a finding never changes
    # the rest of the picture: the finding-free image is the exact reference for what a finding drew.
    return np.random.default_rng(np.random.SeedSequence([*entropy, stream]))


def sample_anatomy(patient_rng: np.random.Generator, image_rng: np.random.Generator, *, view: str) -> Anatomy:
    """Draw a normal anatomy: patient traits from ``patient_rng``, per-image jitter from ``image_rng``.

    Follow-up images of one patient share the patient draws, so they look like the same person imaged
    again (slightly different position, inspiration and exposure).
    """
    if view not in ("PA", "AP"):
        raise ValueError(f"view must be 'PA' or 'AP', got {view!r}")
    p, j = patient_rng, image_rng
    habitus = p.uniform(0.92, 1.05)
    # An AP film is usually taken supine or sitting: shallower inspiration, domes higher.
    inspiration = j.normal(0.0, 0.008) + (0.025 if view == "AP" else 0.0)
    apex = 0.135 + p.normal(0.0, 0.008) + j.normal(0.0, 0.004)
    dome_right = 0.70 + p.normal(0.0, 0.012) + inspiration

    def lung(sign: int, dome_y: float) -> Lung:
        semi_a = 0.19 * habitus * (1.0 + p.normal(0.0, 0.03))
        semi_b = 0.47 * (1.0 + p.normal(0.0, 0.025))
        centre_d = 0.235 * habitus + p.normal(0.0, 0.005)
        return Lung(
            sign=sign,
            centre_d=centre_d,
            centre_y=apex + semi_b + j.normal(0.0, 0.003),
            semi_a=semi_a,
            semi_b=semi_b,
            medial_d=0.055 + p.normal(0.0, 0.004),
            dome_y=dome_y,
            dome_d=centre_d - 0.015,
            dome_halfwidth=semi_a,
            dome_drop=0.085 + p.normal(0.0, 0.008),
            air=0.42 + p.normal(0.0, 0.015),
        )

    right = lung(-1, dome_right)
    # The left hemidiaphragm usually lies a little lower than the right one (the liver lifts the right).
    left = lung(1, dome_right + p.uniform(0.01, 0.03))
    thoracic = right.lateral_d + left.lateral_d
    heart_ctr = p.uniform(0.41, 0.50)
    view_ap = view == "AP"
    return Anatomy(
        view=view,
        rotation=p.normal(0.0, 0.015) + j.normal(0.0, 0.012),
        midline=0.5 + p.normal(0.0, 0.008) + j.normal(0.0, 0.005),
        body_half_width=0.5 * thoracic + p.uniform(0.03, 0.07),
        right=right,
        left=left,
        heart_width=heart_ctr * thoracic,
        heart_tilt=p.uniform(0.35, 0.55),
        heart_aspect=p.uniform(0.68, 0.78),
        heart_right_fraction=p.uniform(0.27, 0.35),
        heart_base_y=left.diaphragm_y(left.medial_d + 0.02) - 0.005,
        hilum_d=0.095 + p.normal(0.0, 0.006),
        hilum_y_right=0.45 + p.normal(0.0, 0.01) + 0.5 * inspiration,
        hilum_y_left=0.43 + p.normal(0.0, 0.01) + 0.5 * inspiration,
        knob_y=0.30 + p.normal(0.0, 0.01),
        carina_y=0.38 + p.normal(0.0, 0.01),
        rib_top=0.105 + p.normal(0.0, 0.006),
        rib_spacing=(dome_right - 0.06) / 10.0,
        marking_strength=p.uniform(0.85, 1.15),
        bubble_radius=p.uniform(0.022, 0.04) if p.random() < 0.75 else 0.0,
        bubble_y=left.dome_y + 0.05,
        soft_tissue=p.uniform(0.72, 0.8),
        texture_seed=int(j.integers(0, 2**31 - 1)),
        noise_sigma=j.uniform(0.006, 0.016),
        window_low=j.uniform(-0.06, 0.04) + (0.03 if view_ap else 0.0),
        window_high=j.uniform(0.98, 1.1) + (0.06 if view_ap else 0.0),
        gamma=j.uniform(0.8, 1.2),
    )


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    x = np.broadcast_to(centres[None, :], (size, size)).copy()
    y = np.ascontiguousarray(x.T)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _ellipse_distance(x, y, cx: float, cy: float, a: float, b: float, tilt: float = 0.0):
    """Approximate signed distance to an ellipse (positive inside) and its normalised radius."""
    c, s = math.cos(tilt), math.sin(tilt)
    u = ((x - cx) * c + (y - cy) * s) / a
    v = (-(x - cx) * s + (y - cy) * c) / b
    q = u * u + v * v
    grad = 2.0 * np.sqrt((u / a) ** 2 + (v / b) ** 2) + _EPS
    return (1.0 - q) / grad, np.sqrt(q)


class _Canvas:
    """Drawing helpers on a square image whose anatomy frame is turned by ``rotation`` about its centre."""

    def __init__(self, size: int, rotation: float, midline: float):
        self.size = size
        self.px = 1.0 / size
        self.scale = size / 128.0  # blur widths are set at 128 px and scale with the image
        self.rotation = rotation
        self.midline = midline

    def to_image(self, xa, ya):
        """Anatomy-frame normalised coordinates to image-frame normalised coordinates."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        return 0.5 + c * (xa - 0.5) - s * (ya - 0.5), 0.5 + s * (xa - 0.5) + c * (ya - 0.5)

    def xa_of(self, sign: int, d):
        return self.midline + sign * d

    def smooth_noise(self, rng: np.random.Generator, sigma: float) -> np.ndarray:
        """Gaussian noise low-passed at ``sigma`` (normalised units), rescaled to unit standard deviation."""
        sigma_px = sigma * self.size
        field_ = gaussian_filter(
            rng.standard_normal((self.size, self.size), dtype=np.float32), sigma_px, truncate=3.0
        )
        return field_ * np.float32(2.0 * math.sqrt(math.pi) * sigma_px)

    def lines(self, curves: list[tuple[np.ndarray, np.ndarray, np.ndarray]], sigma_px: float) -> np.ndarray:
        """Render polylines given in the anatomy frame as blurred lines; a weight-1 line peaks near 1.

        Each curve is (xa, ya, weight), arrays of shape (k, n) of k polylines of n points each.
        """
        size = self.size
        xs, ys, ws = [], [], []
        for xa, ya, weight in curves:
            x, y = self.to_image(xa, ya)
            step = np.hypot(np.diff(x, axis=1), np.diff(y, axis=1)) * size  # point spacing in pixels
            step = np.concatenate([step[:, :1], step], axis=1)
            xs.append((x * size - 0.5).ravel())
            ys.append((y * size - 0.5).ravel())
            ws.append((weight * step).ravel())
        px, py, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
        x0, y0 = np.floor(px), np.floor(py)
        fx, fy = px - x0, py - y0
        ok = (x0 >= 0) & (x0 < size - 1) & (y0 >= 0) & (y0 < size - 1)
        x0, y0, fx, fy, w = x0[ok].astype(np.int64), y0[ok].astype(np.int64), fx[ok], fy[ok], w[ok]
        index = y0 * size + x0
        # Bilinear splatting keeps thin lines smooth without per-pixel loops.
        acc = np.bincount(
            np.concatenate([index, index + 1, index + size, index + size + 1]),
            np.concatenate([w * (1 - fx) * (1 - fy), w * fx * (1 - fy), w * (1 - fx) * fy, w * fx * fy]),
            minlength=size * size,
        )
        image = acc.reshape(size, size).astype(np.float32)
        sigma_px = max(sigma_px, 0.35)
        return gaussian_filter(image, sigma_px, truncate=3.0) * np.float32(
            math.sqrt(2.0 * math.pi) * sigma_px
        )

    def curves(self, sign, d0, y0, angle, length, curvature, weight_start, weight_end):
        """Polylines in one hemithorax, started at (d0, y0) with a heading (0 = lateral, +pi/2 = down).

        Returns the anatomy-frame x, y and weight of every point (shape (k, n)), plus ``d`` and the heading.
        """
        d0, y0, angle, length, curvature = (
            np.atleast_1d(np.asarray(v, np.float64)) for v in (d0, y0, angle, length, curvature)
        )
        n = max(8, int(np.ceil(length.max() * self.size)) + 1)  # about one point per pixel
        t = np.linspace(0.0, 1.0, n)[None, :]
        heading = angle[:, None] + curvature[:, None] * (t * length[:, None])
        step = length[:, None] / (n - 1)
        d = np.cos(heading) * step
        y = np.sin(heading) * step
        d[:, 1:] = d[:, :-1]
        y[:, 1:] = y[:, :-1]
        d[:, 0] = d0
        y[:, 0] = y0
        d = d.cumsum(axis=1)
        y = y.cumsum(axis=1)
        start = np.asarray(weight_start, np.float64).reshape(-1, 1)
        weight = start + (np.asarray(weight_end, np.float64).reshape(-1, 1) - start) * t
        return self.xa_of(sign, d), y, np.broadcast_to(weight, d.shape), d, heading


class _Scene(_Canvas):
    """The fields of one image: grids, lung and heart masks, base layers and the findings' edits."""

    def __init__(self, anatomy: Anatomy, size: int):
        super().__init__(size, anatomy.rotation, anatomy.midline)
        self.anatomy = anatomy
        x, y = _grid(size)
        c, s = math.cos(anatomy.rotation), math.sin(anatomy.rotation)
        self.xa = 0.5 + c * (x - 0.5) + s * (y - 0.5)
        self.ya = 0.5 - s * (x - 0.5) + c * (y - 0.5)
        self.d = {sign: sign * (self.xa - anatomy.midline) for sign in (-1, 1)}
        self.lung_f = {sign: anatomy.lung(sign).distance(self.d[sign], self.ya) for sign in (-1, 1)}
        self.lung_soft = {sign: _ramp(self.lung_f[sign], 1.5 * self.px) for sign in (-1, 1)}
        self.lung_mask = {sign: self.lung_f[sign] > 0 for sign in (-1, 1)}
        hx, hy, ha, hb, tilt = anatomy.heart_ellipse()
        heart_f, _ = _ellipse_distance(self.xa, self.ya, hx, hy, ha, hb, tilt)
        # The heart sits on the diaphragm: cut it where the domes are, so it never overlaps the abdomen.
        floor = np.where(
            self.xa > anatomy.midline,
            anatomy.left.diaphragm_y(self.d[1]),
            anatomy.right.diaphragm_y(self.d[-1]),
        )
        self.heart_soft = _ramp(np.minimum(heart_f, floor - self.ya), 1.5 * self.px)
        dx = self.xa - anatomy.midline
        knob = np.clip(1.0 - ((self.ya - anatomy.knob_y) * np.float32(1.0 / 0.045)) ** 2, 0.0, 1.0)
        self.mediastinum = _ramp(dx + (0.068 + 0.03 * self.ya), 3 * self.px) * _ramp(
            0.07 + 0.035 * knob - dx, 3 * self.px
        )
        self.mediastinum *= _ramp(hy - self.ya, 0.1)
        # Lung behind the heart and mediastinum is thin: they displace most of it (and what replaces its air).
        behind = 1.0 - 0.75 * np.maximum(self.heart_soft, self.mediastinum)
        self.lung_air = {sign: self.lung_soft[sign] * behind for sign in (-1, 1)}
        lungs = self.lung_mask[-1] | self.lung_mask[1]
        self.thorax_mask = _fill_rows(lungs) | (self.heart_soft > 0.5)
        self.add = np.zeros((size, size), np.float32)
        self.marking_gain = np.ones((size, size), np.float32)
        self.air_gain = np.ones((size, size), np.float32)

    # -- geometry helpers ---------------------------------------------------------------------------------
    def zone_bounds(self, signs: Sequence[int]) -> tuple[float, float]:
        lungs = [self.anatomy.lung(sign) for sign in signs]
        return float(np.mean([lung.apex_y for lung in lungs])), float(
            np.mean([lung.base_y for lung in lungs])
        )

    def sample_point(
        self,
        rng: np.random.Generator,
        sign: int,
        *,
        height: tuple[float, float],
        margin: float,
        avoid_heart: bool = True,
    ) -> tuple[float, float]:
        """A point (d, y) well inside one lung, between fractions ``height`` of the lung height."""
        lung = self.anatomy.lung(sign)
        top, base = lung.apex_y, lung.base_y
        hx, hy, ha, hb, tilt = self.anatomy.heart_ellipse()
        for attempt in range(8):
            shrink = 0.8**attempt  # relax the margin if the lung is too crowded for it
            d = rng.uniform(lung.medial_d, lung.lateral_d, 64)
            y = top + (base - top) * rng.uniform(height[0], height[1], 64)
            ok = lung.distance(d, y) >= margin * shrink
            if avoid_heart:
                heart_f, _ = _ellipse_distance(self.xa_of(sign, d), y, hx, hy, ha, hb, tilt)
                ok &= heart_f < -0.5 * margin * shrink
            hits = np.flatnonzero(ok)
            if hits.size:
                return float(d[hits[0]]), float(y[hits[0]])
        return lung.centre_d, top + (base - top) * 0.5 * (height[0] + height[1])

    # -- records ----------------------------------------------------------------------------------------------
    def record(
        self,
        plan: _Plan,
        footprint: np.ndarray,
        *,
        side: str,
        zone: str | None = None,
        size_cm: float | None = None,
        diffuse_possible: bool = False,
    ) -> DrawnFinding:
        rows = np.flatnonzero(footprint.any(axis=1))
        cols = np.flatnonzero(footprint.any(axis=0))
        if rows.size == 0:
            raise RuntimeError(f"internal error: {plan.finding} drew nothing")  # guarded by every drawer
        x, y = float(cols[0]), float(rows[0])
        w, h = float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)
        if side in _SIGN:
            signs = (_SIGN[side],)
            reference = self.lung_mask[_SIGN[side]]
        else:
            signs = (-1, 1)
            reference = self.thorax_mask
        extent = float((footprint & reference).sum()) / max(1.0, float(reference.sum()))
        if zone is None:
            zone = self.zone_of(footprint, signs, diffuse_possible)
        if size_cm is None:
            size_cm = max(w, h) * FIELD_OF_VIEW_CM / self.size
        return DrawnFinding(
            finding=plan.finding,
            side=side,
            zone=zone,
            organ=ORGAN_OF[plan.finding],
            x=x,
            y=y,
            w=w,
            h=h,
            extent=round(extent, 4),
            size_cm=round(float(size_cm), 2),
            severity=plan.severity,
        )

    def zone_of(self, footprint: np.ndarray, signs: Sequence[int], diffuse_possible: bool) -> str:
        top, base = self.zone_bounds(signs)
        third = (base - top) / 3.0
        ya = self.ya[footprint]
        if diffuse_possible:
            lungs = self.lung_mask[signs[0]] if len(signs) == 1 else (self.lung_mask[-1] | self.lung_mask[1])
            cover = []
            for k in range(3):
                band = lungs & (self.ya >= top + k * third) & (self.ya < top + (k + 1) * third)
                cover.append(float((band & footprint).sum()) / max(1.0, float(band.sum())))
            if min(cover) >= 0.5:
                return "diffuse"
        centre = float(ya.mean())
        return ZONES[int(np.clip((centre - top) // third, 0, 2))]

    # -- rendering ----------------------------------------------------------------------------------------------
    def render(self, noise_rng: np.random.Generator) -> np.ndarray:
        """Compose the density map (anatomy, then the findings' edits), blur, add noise, window, quantise."""
        a = self.anatomy
        rng = np.random.default_rng(a.texture_seed)
        xa, ya, px = self.xa, self.ya, self.px
        dx = xa - a.midline
        # Body: a squarish superellipse (broad shoulders, abdomen below) whose brightness follows thickness.
        u = dx * np.float32(1.0 / a.body_half_width)
        u *= u
        u *= u
        v = (ya - 0.56) * np.float32(1.0 / 0.62)
        v *= v
        v *= v
        inside = 1.0 - (u + v)
        density = np.sqrt(np.clip(inside, 0.0, 1.0))
        density *= np.float32(0.6 * a.soft_tissue)
        density += np.float32(0.4 * a.soft_tissue)
        density *= _ramp(inside, 0.05)
        # Mediastinum continuous with the heart, spine seen through it, trachea down to the carina.
        density += 0.09 * np.maximum(self.mediastinum, self.heart_soft)
        vertebra = np.abs((ya - a.rib_top) * np.float32(1.0 / a.rib_spacing) % 1.0 - 0.5)
        density += _ramp(0.03 - np.abs(dx), 2 * px) * (0.03 + 0.06 * vertebra)
        density -= 0.12 * _ramp(0.012 - np.abs(dx - 0.004), 1.5 * px) * _ramp(a.carina_y - ya, 3 * px)
        # Lungs: aerated lung subtracts density, less at the borders (partial volume) and behind the heart.
        for sign in (-1, 1):
            interior = np.clip(self.lung_f[sign] * np.float32(1.0 / 0.05), 0.0, 1.0)
            interior *= 0.2
            interior += 0.8
            density -= np.float32(a.lung(sign).air) * self.lung_air[sign] * self.air_gain * interior
        for sign in (-1, 1):
            hilum_x = a.midline + sign * (a.hilum_d - 0.005)
            bump = (
                1.0
                - ((xa - hilum_x) * np.float32(1 / 0.035)) ** 2
                - ((ya - a.hilum_y(sign)) * np.float32(1 / 0.05)) ** 2
            )
            density += 0.07 * np.clip(bump, 0.0, 1.0)
        if a.bubble_radius > 0:
            bubble_f, _ = _ellipse_distance(
                xa, ya, a.midline + 0.17, a.bubble_y, 1.4 * a.bubble_radius, a.bubble_radius
            )
            density -= 0.2 * _ramp(bubble_f, 2 * px)
        density += 0.07 * self._bones()
        markings = self._markings(rng)
        markings *= self.marking_gain
        markings *= self.lung_air[-1] + self.lung_air[1]
        density += markings
        density += self.add
        density = gaussian_filter(density, 0.45 * self.scale, truncate=3.0)
        density += noise_rng.standard_normal(density.shape, dtype=np.float32) * np.float32(a.noise_sigma)
        # Window and gamma through a lookup table (cheaper than a power of every pixel).
        level = (density - a.window_low) * np.float32(4095.0 / (a.window_high - a.window_low))
        index = np.clip(level, 0.0, 4095.0).astype(np.int16)
        return _gamma_table(round(a.gamma, 3))[index]

    def _bones(self) -> np.ndarray:
        """Ribs and clavicles as bands around families of curves (no splatting: a few array operations).

        Posterior ribs run from the spine in a low arch to the chest wall, all ribs of a side following the
        same curve shifted by the rib spacing; anterior ribs run from the chest wall down and medially.
        """
        a = self.anatomy
        dx = self.xa - a.midline
        d = np.abs(dx)
        lateral = np.where(dx < 0, a.right.lateral_d, a.left.lateral_d).astype(np.float32) + np.float32(0.015)
        t = np.clip((d - 0.03) / (lateral - 0.03), 0.0, 1.0)
        arch = -0.03 * np.sin(np.float32(np.pi) * np.minimum(t * 1.15, 1.0)) + 0.07 * t * t
        half = np.float32(0.016 / a.rib_spacing)

        def ribs(offset, count: int, weight):
            phase = (self.ya - a.rib_top - offset) * np.float32(1.0 / a.rib_spacing)
            index = np.floor(phase + 0.5)
            frac = (phase - index) * np.float32(1.0 / half)
            band = np.clip(1.6 * (1.0 - frac * frac), 0.0, 1.0)  # a flat-topped bar
            return band * ((index >= 0) & (index < count)) * weight

        inside = (d > 0.03) & (d < lateral)
        bones = ribs(arch, 10, (0.6 + 0.4 * t) * inside)
        back = np.clip((lateral - d) / (lateral - 0.14), 0.0, 1.0)
        front = 0.04 + 0.11 * back - 0.03 * np.sin(np.float32(np.pi) * back)
        bones += ribs(front, 9, 0.4 * ((d > 0.14) & (d < lateral)))
        tc = (d - 0.04) * np.float32(1.0 / 0.3)
        clavicle_y = (
            0.165
            - 0.075 * tc
            + 0.012 * np.sin(np.float32(2 * np.pi) * tc)
            + (0.01 if a.view == "AP" else 0.0)
        )
        across = (self.ya - clavicle_y) * np.float32(1.0 / 0.013)
        bones += 0.8 * np.clip(1.0 - across * across, 0.0, 1.0) * ((tc > 0) & (tc < 1))
        return bones

    def _markings(self, rng: np.random.Generator) -> np.ndarray:
        """Pulmonary vessels: one tree per hilum, picked from a cached library and moved onto the hilum."""
        a = self.anatomy
        library = _vessel_library(self.size)
        out = np.zeros((self.size, self.size), np.float32)
        for sign in (-1, 1):
            stamp = library[int(rng.integers(len(library)))]
            hx, hy = self.to_image(a.midline + sign * a.hilum_d, a.hilum_y(sign))
            if sign > 0:
                stamp = stamp[:, ::-1]  # the left tree is a mirrored right tree
                ref_x = 1.0 - _LIBRARY_HILUM[0]
            else:
                ref_x = _LIBRARY_HILUM[0]
            shift_x = int(round((hx - ref_x) * self.size))
            shift_y = int(round((hy - _LIBRARY_HILUM[1]) * self.size))
            _add_shifted(out, stamp, shift_y, shift_x, a.marking_strength)
        return out


#: Where the library's trees start (image-frame normalised x, y of the patient's right hilum).
_LIBRARY_HILUM = (0.5 - 0.095, 0.45)


@functools.lru_cache(maxsize=2)
def _vessel_library(size: int) -> np.ndarray:
    """A fixed set of right-lung vessel trees at this image size (the same in every process)."""
    count = 48 if size <= 256 else 12 if size <= 1024 else 4  # bounded memory at large sizes
    canvas = _Canvas(size, rotation=0.0, midline=0.5)
    trees = np.empty((count, size, size), np.float32)
    for index in range(count):
        rng = np.random.default_rng([20250, index])
        trees[index] = _vessel_tree(canvas, rng, 0.5 - _LIBRARY_HILUM[0], _LIBRARY_HILUM[1])
    trees.flags.writeable = False
    return trees


def _vessel_tree(canvas: _Canvas, rng: np.random.Generator, hilum_d: float, hilum_y: float) -> np.ndarray:
    """Branching vessels from the right hilum, tapering towards the periphery (three generations)."""
    k = 12
    angle = np.linspace(-2.0, 1.35, k) + rng.normal(0.0, 0.1, k)
    length = (0.21 + 0.12 * np.clip(-np.sin(angle), 0.0, 1.0)) * rng.uniform(0.85, 1.1, k)
    strength = rng.uniform(0.8, 1.2, k)
    xa, y, w, d, heading = canvas.curves(
        -1,
        hilum_d + rng.normal(0.0, 0.006, k),
        hilum_y + rng.normal(0.0, 0.012, k),
        angle,
        length,
        rng.normal(0.0, 1.2, k),
        strength,
        0.4 * strength,
    )
    trunks = canvas.lines([(xa, y, w)], 0.7 * canvas.scale)
    curves = []
    for _generation in range(2):
        count = d.shape[0]
        parent = np.repeat(np.arange(count), 2)
        at = rng.uniform(0.25, 0.7, 2 * count)
        index = (at * (d.shape[1] - 1)).astype(int)
        fork = np.where(np.arange(2 * count) % 2 == 0, -1.0, 1.0) * rng.uniform(0.35, 0.8, 2 * count)
        start_weight = w[parent, index] * 0.8
        length = (1.0 - at) * length[parent] * rng.uniform(0.5, 0.8, 2 * count)
        xa, y, w, d, heading = canvas.curves(
            -1,
            d[parent, index],
            y[parent, index],
            heading[parent, index] + fork,
            length,
            rng.normal(0.0, 1.5, 2 * count),
            start_weight,
            0.3 * start_weight,
        )
        curves.append((xa, y, w))
    branches = canvas.lines(curves, 0.5 * canvas.scale)
    # Faint parenchymal texture, so that the lung is not a flat field between the vessels.
    texture = canvas.smooth_noise(rng, 0.005)
    return 0.1 * trunks + 0.11 * branches + 0.01 * texture


def _add_shifted(out: np.ndarray, stamp: np.ndarray, dy: int, dx: int, gain: float) -> None:
    """``out += gain * stamp`` moved by (dy, dx) pixels, dropping what falls outside."""
    size_y, size_x = out.shape
    ys, yd = (
        (slice(0, size_y - dy), slice(dy, size_y)) if dy >= 0 else (slice(-dy, size_y), slice(0, size_y + dy))
    )
    xs, xd = (
        (slice(0, size_x - dx), slice(dx, size_x)) if dx >= 0 else (slice(-dx, size_x), slice(0, size_x + dx))
    )
    out[yd, xd] += np.float32(gain) * stamp[ys, xs]


@functools.lru_cache(maxsize=64)
def _gamma_table(gamma: float) -> np.ndarray:
    return (np.linspace(0.0, 1.0, 4096) ** gamma * 255.0 + 0.5).astype(np.uint8)


def _ramp(value, width: float):
    """A soft step from 0 to 1 over ``width`` around ``value == 0`` (cheaper than a logistic)."""
    return np.clip(value * np.float32(1.0 / width) + np.float32(0.5), 0.0, 1.0)


def _fill_rows(mask: np.ndarray) -> np.ndarray:
    """Fill each row between its first and last set pixel (the thorax between the lungs' outer borders)."""
    any_row = mask.any(axis=1)
    first = np.argmax(mask, axis=1)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    cols = np.arange(mask.shape[1])[None, :]
    return any_row[:, None] & (cols >= first[:, None]) & (cols <= last[:, None])


def _footprint(layer: np.ndarray, relative: float = 0.2) -> np.ndarray:
    peak = float(layer.max())
    return layer > relative * peak if peak > 0 else np.zeros(layer.shape, bool)


def _by_severity(plan: _Plan, table: dict[str, tuple[float, float]]) -> float:
    low, high = table[plan.severity]
    return float(plan.rng.uniform(low, high))


# --------------------------------------------------------------------------------------------------------------
# Anatomy-changing findings (applied before the scene is built)
# --------------------------------------------------------------------------------------------------------------


def _modify_anatomy(anatomy: Anatomy, plans: Sequence[_Plan]) -> Anatomy:
    by_name = {plan.finding: plan for plan in plans}
    if "Emphysema" in by_name:
        # Hyperinflation: low, flattened domes and taller, slightly wider lungs; a long narrow heart.
        plan = by_name["Emphysema"]
        level = SEVERITIES.index(plan.severity)
        lower = (0.035, 0.055, 0.08)[level] + plan.rng.uniform(0.0, 0.01)
        flatten = (0.6, 0.45, 0.3)[level]
        widen = (1.03, 1.05, 1.08)[level]

        def inflate(lung: Lung) -> Lung:
            return replace(
                lung,
                dome_y=lung.dome_y + lower,
                dome_drop=lung.dome_drop * flatten,
                semi_b=lung.semi_b + 0.5 * lower,
                centre_y=lung.centre_y + 0.5 * lower,
                semi_a=lung.semi_a * widen,
                dome_halfwidth=lung.dome_halfwidth * widen,
            )

        right, left = inflate(anatomy.right), inflate(anatomy.left)
        anatomy = replace(
            anatomy,
            right=right,
            left=left,
            heart_width=anatomy.heart_width * 0.9,
            heart_aspect=anatomy.heart_aspect * 1.1,
            heart_base_y=anatomy.heart_base_y + 0.8 * lower,
        )
    if "Fibrosis" in by_name and by_name["Fibrosis"].severity == "severe":
        # Volume loss of fibrotic lungs: both domes rise a little.
        rise = by_name["Fibrosis"].rng.uniform(0.015, 0.025)
        anatomy = replace(
            anatomy,
            right=replace(anatomy.right, dome_y=anatomy.right.dome_y - rise),
            left=replace(anatomy.left, dome_y=anatomy.left.dome_y - rise),
        )
    if "Atelectasis" in by_name:
        # Volume loss: the hemidiaphragm of the collapsed side rises.
        plan = by_name["Atelectasis"]
        sign = _SIGN[plan.side]
        rise = _by_severity(
            plan, {"mild": (0.012, 0.018), "moderate": (0.025, 0.035), "severe": (0.04, 0.055)}
        )
        lung = anatomy.lung(sign)
        plan.lung_before = lung
        raised = replace(lung, dome_y=lung.dome_y - rise)
        anatomy = replace(anatomy, right=raised) if sign < 0 else replace(anatomy, left=raised)
    if "Cardiomegaly" in by_name:
        plan = by_name["Cardiomegaly"]
        ratio = _by_severity(plan, {"mild": (0.56, 0.60), "moderate": (0.60, 0.65), "severe": (0.65, 0.71)})
        anatomy = replace(anatomy, heart_width=ratio * anatomy.thoracic_width)
    return anatomy


# --------------------------------------------------------------------------------------------------------------
# Finding drawers: each edits the scene's layers and returns its records
# --------------------------------------------------------------------------------------------------------------


def _atelectasis(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Plate-like (discoid) band in the lower/middle zone plus a raised hemidiaphragm; severe: a lobar wedge."""
    rng, sign, a = plan.rng, _SIGN[plan.side], scene.anatomy
    lung = a.lung(sign)
    length = _by_severity(plan, {"mild": (0.11, 0.14), "moderate": (0.14, 0.18), "severe": (0.17, 0.21)})
    thick = _by_severity(plan, {"mild": (0.014, 0.018), "moderate": (0.018, 0.024), "severe": (0.022, 0.028)})
    d0, y0 = scene.sample_point(rng, sign, height=(0.55, 0.8), margin=0.03)
    d0 = float(np.clip(d0, lung.medial_d + 0.5 * length + 0.01, lung.lateral_d - 0.5 * length - 0.01))
    tilt = rng.uniform(-0.25, 0.25)
    plate_f, _ = _ellipse_distance(scene.d[sign], scene.ya, d0, y0, 0.5 * length, 0.5 * thick, tilt)
    layer = _ramp(plate_f, 1.5 * scene.px) * scene.lung_air[sign]
    if plan.severity == "severe":
        # Lower-lobe collapse: a triangle from the hilum down to the medial diaphragm.
        apex = np.array([a.hilum_d + 0.01, a.hilum_y(sign) + 0.03])
        base_y = lung.diaphragm_y(lung.medial_d + 0.06) + 0.01
        p1 = np.array([lung.medial_d, base_y])
        p2 = np.array([lung.medial_d + rng.uniform(0.11, 0.15), base_y])
        wedge = _triangle(scene.d[sign], scene.ya, apex, p1, p2, 2.0 * scene.px)
        layer = np.maximum(layer, 0.7 * wedge * scene.lung_air[sign])
    scene.add += np.float32(0.9 * lung.air) * layer
    before = plan.lung_before.distance(scene.d[sign], scene.ya) > 0
    footprint = _footprint(layer) | (before & ~scene.lung_mask[sign])
    return [scene.record(plan, footprint, side=plan.side)]


def _triangle(x, y, p0, p1, p2, edge: float):
    """Soft-edged triangle: product of three half-planes oriented to contain the centroid."""
    centre = (p0 + p1 + p2) / 3.0
    result = None
    for a_, b_ in ((p0, p1), (p1, p2), (p2, p0)):
        normal = np.array([-(b_[1] - a_[1]), b_[0] - a_[0]])
        normal /= np.linalg.norm(normal) + _EPS
        if np.dot(centre - a_, normal) < 0:
            normal = -normal
        half = _ramp((x - a_[0]) * normal[0] + (y - a_[1]) * normal[1], edge)
        result = half if result is None else result * half
    return result


def _cardiomegaly(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """The heart itself was enlarged in :func:`_modify_anatomy` (cardiothoracic ratio > 0.55)."""
    footprint = scene.heart_soft > 0.5
    size_cm = scene.anatomy.heart_width * FIELD_OF_VIEW_CM
    return [scene.record(plan, footprint, side="midline", zone="cardiac", size_cm=size_cm)]


def _effusion(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Dense basal opacity with a meniscus rising along the chest wall; obscures dome and costophrenic angle."""
    signs = (-1, 1) if plan.side == "bilateral" else (_SIGN[plan.side],)
    records = []
    for sign in signs:
        lung = scene.anatomy.lung(sign)
        rng = plan.rng
        level = {
            "mild": lung.dome_y - rng.uniform(0.01, 0.035),
            "moderate": lung.dome_y - rng.uniform(0.06, 0.10),
            "severe": lung.dome_y - rng.uniform(0.15, 0.23),
        }[plan.severity]
        rise = rng.uniform(0.035, 0.06)
        lateral = np.clip(
            (scene.d[sign] - lung.medial_d) * np.float32(1.0 / (lung.lateral_d - lung.medial_d)), 0.0, 1.0
        )
        depth = scene.ya - (level - rise * lateral * lateral)
        fluid = _ramp(depth, 3.0 * scene.px) * scene.lung_air[sign]
        density = (0.88 + 0.04 * SEVERITIES.index(plan.severity)) * lung.air
        layer = fluid * (0.9 + 0.1 * np.clip(depth * np.float32(1.0 / 0.08), 0.0, 1.0))
        layer *= np.float32(density)
        scene.add += layer
        scene.marking_gain *= 1.0 - 0.8 * fluid  # fluid hides the vessels behind it
        records.append(scene.record(plan, _footprint(layer), side=_SIDE_OF_SIGN[sign]))
    return records


def _infiltration(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Ill-defined, patchy, hazy opacities over a region of the upper/middle lung."""
    rng, sign = plan.rng, _SIGN[plan.side]
    signs = [sign]
    if plan.severity == "severe" and rng.random() < 0.5:
        signs.append(-sign)
    records = []
    level = SEVERITIES.index(plan.severity)
    for k, s in enumerate(signs):
        lung = scene.anatomy.lung(s)
        radius = _by_severity(plan, {"mild": (0.065, 0.08), "moderate": (0.08, 0.1), "severe": (0.1, 0.125)})
        radius *= 0.8 if k else 1.0
        d0, y0 = scene.sample_point(rng, s, height=(0.15, 0.7), margin=0.6 * radius)
        _, rho = _ellipse_distance(
            scene.d[s], scene.ya, d0, y0, radius, 1.25 * radius, rng.uniform(-0.5, 0.5)
        )
        region = _ramp(1.0 - rho, 0.7) * scene.lung_air[s]
        patches = 0.35 + 0.65 * _ramp(scene.smooth_noise(rng, 0.012) + 0.3, 2.5)
        layer = region * patches * np.float32((0.5 + 0.08 * level) * lung.air)
        scene.add += layer
        records.append(scene.record(plan, region > 0.3, side=_SIDE_OF_SIGN[s]))
    return records


def _round_opacity(scene: _Scene, sign: int, d0: float, y0: float, radius: float, lobulation, edge: float):
    """A sphere-like opacity: lobulated radius r(theta), thicker (denser) in the centre."""
    dd, dy = scene.d[sign] - d0, scene.ya - y0
    r = np.sqrt(dd * dd + dy * dy)
    edge_r = radius
    if lobulation:
        theta = np.arctan2(dy, dd)
        edge_r = radius * (1.0 + sum(amp * np.cos(k * theta + phase) for k, amp, phase in lobulation))
    inside = _ramp(edge_r - r, edge)
    core = np.sqrt(np.clip(1.0 - (r / edge_r) ** 2, 0.0, 1.0))
    return inside * (0.6 + 0.4 * core)


def _mass(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Large (> 3 cm) round or lobulated opacity with a fairly sharp edge."""
    rng, sign = plan.rng, _SIGN[plan.side]
    diameter = _by_severity(plan, {"mild": (3.3, 4.4), "moderate": (4.4, 5.8), "severe": (5.8, 7.5)})
    radius = diameter / FIELD_OF_VIEW_CM / 2.0
    d0, y0 = scene.sample_point(rng, sign, height=(0.12, 0.75), margin=0.9 * radius)
    lobulation = [(k, rng.uniform(0.03, 0.08), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5)]
    layer = _round_opacity(scene, sign, d0, y0, radius, lobulation, 2.0 * scene.px)
    density = (0.85 + 0.07 * SEVERITIES.index(plan.severity)) * scene.anatomy.lung(sign).air
    layer = layer * np.float32(density)
    scene.add += layer
    return [scene.record(plan, _footprint(layer), side=plan.side, size_cm=diameter)]


def _nodule(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Round, well-defined opacities under 3 cm; more and larger ones with severity."""
    rng = plan.rng
    count = {"mild": 1, "moderate": int(rng.integers(1, 3)), "severe": int(rng.integers(2, 4))}[plan.severity]
    records = []
    for k in range(count):
        sign = _SIGN[plan.side] if k == 0 else int(rng.choice((-1, 1)))
        diameter = _by_severity(plan, {"mild": (1.3, 1.8), "moderate": (1.8, 2.4), "severe": (2.3, 2.9)})
        radius = diameter / FIELD_OF_VIEW_CM / 2.0
        d0, y0 = scene.sample_point(rng, sign, height=(0.1, 0.8), margin=radius + 0.015)
        layer = _round_opacity(scene, sign, d0, y0, radius, [], 1.2 * scene.px)
        layer *= np.float32((0.9 + 0.05 * SEVERITIES.index(plan.severity)) * scene.anatomy.lung(sign).air)
        scene.add += layer
        records.append(scene.record(plan, _footprint(layer), side=_SIDE_OF_SIGN[sign], size_cm=diameter))
    return records


def _pneumonia(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Patchy consolidation with fuzzy margins, middle/lower zone."""
    rng, sign = plan.rng, _SIGN[plan.side]
    lung = scene.anatomy.lung(sign)
    radius = _by_severity(plan, {"mild": (0.055, 0.07), "moderate": (0.07, 0.09), "severe": (0.09, 0.115)})
    d0, y0 = scene.sample_point(rng, sign, height=(0.42, 0.85), margin=0.5 * radius)
    aspect = rng.uniform(0.75, 1.3)
    _, rho = _ellipse_distance(
        scene.d[sign], scene.ya, d0, y0, radius * aspect, radius / aspect, rng.uniform(0, math.pi)
    )
    cloud = _ramp(0.85 - rho, 0.9) * scene.lung_air[sign]
    patchy = np.clip(0.82 + 0.2 * scene.smooth_noise(rng, 0.016), 0.5, 1.0)
    density = (0.8 + 0.07 * SEVERITIES.index(plan.severity)) * lung.air
    layer = np.float32(density) * cloud * patchy
    scene.add += layer
    return [scene.record(plan, cloud > 0.2, side=plan.side)]


def _pneumothorax(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Apical/lateral rim of air without lung markings, bounded by a thin visible visceral pleural line."""
    sign, a = _SIGN[plan.side], scene.anatomy
    lung = a.lung(sign)
    gap = _by_severity(plan, {"mild": (0.15, 0.2), "moderate": (0.25, 0.32), "severe": (0.38, 0.5)})
    hd, hy = a.hilum_d, a.hilum_y(sign)
    dd, dy = scene.d[sign] - hd, scene.ya - hy
    r = np.sqrt(dd * dd + dy * dy) + _EPS
    # The lung collapses towards the hilum, most at the apex and laterally (air rises in an erect patient).
    toward = np.clip((0.45 * dd - 0.6 * dy) / r + 0.2, 0.0, 1.0)
    if plan.severity == "mild":
        toward = toward * toward
    shrink = 1.0 - gap * toward
    f_collapsed = lung.distance(hd + dd / shrink, hy + dy / shrink) * shrink
    space = scene.lung_soft[sign] * (1.0 - _ramp(f_collapsed, 1.5 * scene.px))
    line = np.clip(1.0 - np.abs(f_collapsed) * np.float32(1.0 / (1.1 * scene.px)), 0.0, 1.0)
    line *= _ramp(scene.lung_f[sign] - 2.5 * scene.px, 2.0 * scene.px)
    scene.marking_gain *= 1.0 - space
    scene.add += np.float32(-0.25 * lung.air) * space + np.float32(0.45 * lung.air) * line
    footprint = (space > 0.5) | (line > 0.3)
    return [scene.record(plan, footprint, side=plan.side)]


def _consolidation(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Dense homogeneous lobar opacity with a sharp straight fissural border and dark air bronchograms."""
    rng, sign, a = plan.rng, _SIGN[plan.side], scene.anatomy
    lung = a.lung(sign)
    d, ya = scene.d[sign], scene.ya
    hy = a.hilum_y(sign)
    lobes = ("upper", "middle", "lower") if sign < 0 else ("upper", "lower")
    lobe = lobes[int(rng.integers(len(lobes)))]
    sharp = 1.2 * scene.px
    if lobe == "lower":  # bounded above by the oblique (major) fissure, descending laterally
        slope = rng.uniform(0.3, 0.45)
        fissure_y0 = hy + 0.03
        region = _ramp(ya - (fissure_y0 + slope * (d - a.hilum_d)), sharp)
        region *= _ramp(lung.lateral_edge(ya) - 0.02 - d, 0.05)
        towards = 1.0  # the segment hangs below the fissure
    else:  # upper and middle lobes meet at the horizontal (minor) fissure
        slope = rng.uniform(-0.08, 0.08)
        fissure_y0 = hy - 0.01
        above = lobe == "upper"
        offset = ya - (fissure_y0 + slope * (d - a.hilum_d))
        region = _ramp(-offset if above else offset, sharp)
        if lobe == "middle":
            region *= _ramp(lung.centre_d + 0.05 - d, 0.06)
        towards = -1.0 if above else 1.0
    level = SEVERITIES.index(plan.severity)
    if level < 2:
        # A segment: the lobe cut by a soft ellipse lying along the fissure, so the straight edge stays long.
        along = (0.09, 0.12)[level] + rng.uniform(0.0, 0.02)
        across = (0.07, 0.1)[level] + rng.uniform(0.0, 0.02)
        # On the left, keep the segment lateral to the heart, where it shows.
        shift = rng.uniform(-0.03, 0.03) + (0.03 if sign > 0 else 0.0)
        centre_d = float(np.clip(lung.centre_d + shift, a.hilum_d + 0.05, lung.lateral_d - 0.06))
        centre_y = fissure_y0 + slope * (centre_d - a.hilum_d) + towards * 0.5 * across
        _, rho = _ellipse_distance(d, ya, centre_d, centre_y, along, across, math.atan(slope))
        region = region * _ramp(1.0 - rho, 0.35)
    footprint = region * scene.lung_soft[sign] > 0.3
    region = region * scene.lung_air[sign]
    k = 5 + 2 * level
    start_d = lung.centre_d + rng.uniform(-0.06, 0.04, k)
    start_y = fissure_y0 + slope * (start_d - a.hilum_d) + towards * 0.01
    xa_, yb, wb, _, _ = scene.curves(
        sign,
        start_d,
        start_y,
        towards * math.pi / 2 + rng.normal(0.0, 0.5, k),
        rng.uniform(0.05, 0.1, k),
        rng.normal(0.0, 3.0, k),
        1.0,
        0.5,
    )
    bronchi = scene.lines([(xa_, yb, wb)], 0.45 * scene.scale)
    core = np.clip((region - 0.7) * np.float32(1.0 / 0.3), 0.0, 1.0)
    layer = region * (1.0 - 0.4 * np.clip(bronchi, 0.0, 1.0) * core)
    layer *= np.float32((0.92 + 0.04 * level) * lung.air)
    scene.add += layer
    scene.marking_gain *= 1.0 - 0.7 * region
    return [scene.record(plan, footprint, side=plan.side)]


def _edema(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Bilateral perihilar "bat-wing" haze sparing the periphery, with Kerley B lines at the bases."""
    rng, a = plan.rng, scene.anatomy
    level = SEVERITIES.index(plan.severity)
    haze_total = np.zeros_like(scene.add)
    curves = []
    for sign in (-1, 1):
        lung = a.lung(sign)
        sx = (0.09, 0.115, 0.14)[level] * rng.uniform(0.9, 1.1)
        sy = (0.11, 0.14, 0.17)[level] * rng.uniform(0.9, 1.1)
        dd = (scene.d[sign] - (a.hilum_d + 0.015)) * np.float32(1.0 / sx)
        dy = (scene.ya - (a.hilum_y(sign) + 0.03)) * np.float32(1.0 / sy)
        haze = np.exp(-(dd * dd + dy * dy)) * scene.lung_air[sign]
        haze_total += haze * np.float32((0.6 + 0.1 * level) * lung.air)
        count = (4, 6, 8)[level]
        top, base = lung.apex_y, lung.base_y
        yk = top + (base - top) * np.sort(rng.uniform(0.66, 0.93, count))
        start = lung.lateral_edge(yk) - 0.004
        length = rng.uniform(0.03, 0.045, count)
        xa_, yl, wl, _, _ = scene.curves(
            sign, start, yk, math.pi + rng.normal(0.0, 0.08, count), length, 0.0, 1.0, 1.0
        )
        curves.append((xa_, yl, wl))
    texture = 0.85 + 0.15 * scene.smooth_noise(rng, 0.008)
    lines = scene.lines(curves, 0.45 * scene.scale) * (scene.lung_soft[-1] + scene.lung_soft[1])
    layer = haze_total * texture + np.float32(0.5 * a.right.air) * lines
    scene.add += layer
    footprint = _footprint(haze_total, 0.25) | (lines > 0.3)
    return [scene.record(plan, footprint, side="bilateral", zone="perihilar")]


def _emphysema(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Hyperinflation (set in :func:`_modify_anatomy`), darker lungs with fewer markings, upper zones first."""
    rng, a = plan.rng, scene.anatomy
    level = SEVERITIES.index(plan.severity)
    top, base = scene.zone_bounds((-1, 1))
    cut = top + (base - top) * (0.5, 0.78, 1.3)[level]
    weight = _ramp(cut - scene.ya, 0.1) * (scene.lung_soft[-1] + scene.lung_soft[1])
    scene.air_gain += np.float32((0.22, 0.3, 0.38)[level]) * weight
    scene.marking_gain *= 1.0 - np.float32((0.55, 0.7, 0.85)[level]) * weight
    if level == 2:
        # Bullae: round marking-free lucencies with a hairline wall in the upper zones.
        for _ in range(int(rng.integers(1, 3))):
            sign = int(rng.choice((-1, 1)))
            radius = rng.uniform(0.03, 0.045)
            d0, y0 = scene.sample_point(rng, sign, height=(0.05, 0.4), margin=radius)
            dd, dy = scene.d[sign] - d0, scene.ya - y0
            r = np.sqrt(dd * dd + dy * dy)
            inside = _ramp(radius - r, 2.0 * scene.px)
            wall = np.clip(1.0 - np.abs(r - radius) * np.float32(1.0 / scene.px), 0.0, 1.0)
            scene.marking_gain *= 1.0 - inside
            scene.add += (
                np.float32(-0.18 * a.lung(sign).air) * inside + np.float32(0.25 * a.lung(sign).air) * wall
            )
    return [scene.record(plan, weight > 0.5, side="bilateral", diffuse_possible=True)]


def _fibrosis(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Reticular net of fine lines, peripheral and basal, extending upwards with severity."""
    rng, a = plan.rng, scene.anatomy
    level = SEVERITIES.index(plan.severity)
    top, base = scene.zone_bounds((-1, 1))
    cut = top + (base - top) * (0.6, 0.42, 0.22)[level]
    sigma_px = 1.25 * scene.scale
    white = rng.standard_normal(scene.add.shape, dtype=np.float32)
    band = gaussian_filter(white, sigma_px, truncate=3.0) - gaussian_filter(
        white, 2.0 * sigma_px, truncate=3.0
    )
    # Zero crossings of band-pass noise form closed polygons: a reticular (net-like) pattern.
    net = np.clip(1.0 - np.abs(band) * np.float32(1.0 / (0.5 * float(band.std()) + _EPS)), 0.0, 1.0)
    weight = np.zeros_like(scene.add)
    for sign in (-1, 1):
        peripheral = np.clip(1.0 - scene.lung_f[sign] * np.float32(1.0 / (0.07 + 0.02 * level)), 0.0, 1.0)
        weight += _ramp(scene.ya - cut, 0.12) * peripheral * scene.lung_air[sign]
    layer = net * weight * np.float32((0.75 + 0.1 * level) * a.right.air)
    scene.add += layer
    return [scene.record(plan, weight > 0.35, side="bilateral", diffuse_possible=True)]


def _pleural_thickening(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Pleural band along the lateral chest wall with an undulating inner margin, or an apical cap."""
    rng, sign = plan.rng, _SIGN[plan.side]
    signs = [sign]
    if plan.severity != "mild" and rng.random() < 0.3:
        signs.append(-sign)
    apical = rng.random() < 0.35
    level = SEVERITIES.index(plan.severity)
    records = []
    for s in signs:
        lung = scene.anatomy.lung(s)
        thickness = _by_severity(
            plan, {"mild": (0.024, 0.03), "moderate": (0.03, 0.037), "severe": (0.038, 0.048)}
        )
        f, ya, d = scene.lung_f[s], scene.ya, scene.d[s]
        top, base = lung.apex_y, lung.base_y
        # Plaque-like undulation of the inner margin, so the band reads as thickened pleura, not chest wall.
        wave = 1.0 + 0.3 * np.sin(
            ya * np.float32(2 * math.pi / rng.uniform(0.06, 0.09)) + rng.uniform(0, 2 * math.pi)
        )
        band = scene.lung_soft[s] * _ramp(thickness * wave - f, 1.5 * scene.px)
        if apical:
            cap = top + (0.17 + 0.04 * level) * (base - top)
            window = _ramp(cap - ya, 0.04) * _ramp(d - lung.medial_d - 0.03, 0.04)
        else:
            span = (0.3, 0.42, 0.55)[level]
            start = rng.uniform(0.18, 0.75 - span)
            y1, y2 = top + start * (base - top), top + (start + span) * (base - top)
            window = _ramp(ya - y1, 0.05) * _ramp(y2 - ya, 0.05) * _ramp(d - lung.centre_d, 0.04)
        layer = band * window * np.float32(1.05 * lung.air)
        scene.add += layer
        scene.marking_gain *= 1.0 - band * window
        records.append(scene.record(plan, _footprint(layer, 0.3), side=_SIDE_OF_SIGN[s]))
    return records


def _hernia(scene: _Scene, plan: _Plan) -> list[DrawnFinding]:
    """Hiatus hernia: retrocardiac round opacity at the midline with an air-fluid level."""
    rng, a = plan.rng, scene.anatomy
    radius = _by_severity(plan, {"mild": (0.04, 0.05), "moderate": (0.05, 0.065), "severe": (0.065, 0.08)})
    cx = a.midline + rng.uniform(0.0, 0.03)
    cy = a.heart_base_y - radius * rng.uniform(1.2, 1.5)
    dx, dy = scene.xa - cx, scene.ya - cy
    r = np.sqrt(dx * dx + dy * dy)
    inside = _ramp(radius - r, 1.5 * scene.px)
    wall = np.clip(1.0 - np.abs(r - radius) * np.float32(1.0 / (1.2 * scene.px)), 0.0, 1.0)
    fluid_level = cy + radius * rng.uniform(-0.2, 0.2)
    air = inside * _ramp(fluid_level - scene.ya, 1.0 * scene.px)
    fluid = inside - air
    lung_air = a.left.air
    layer = (
        np.float32(0.2 * lung_air) * wall
        + np.float32(0.2 * lung_air) * fluid
        - np.float32(0.6 * lung_air) * air
    )
    scene.add += layer
    footprint = (inside > 0.5) | (wall > 0.3)
    return [
        scene.record(
            plan, footprint, side="midline", zone="retrocardiac", size_cm=2 * radius * FIELD_OF_VIEW_CM
        )
    ]


_DRAWERS = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": _cardiomegaly,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}


def _plan(request: FindingRequest, rng: np.random.Generator) -> _Plan:
    name = request.finding
    # Severity is drawn first: every size and density below depends on it.
    if request.severity is None:
        severity = SEVERITIES[int(rng.choice(3, p=_SEVERITY_P))]
    elif request.severity in SEVERITIES:
        severity = request.severity
    else:
        raise ValueError(f"{name}: severity must be one of {', '.join(SEVERITIES)}, got {request.severity!r}")
    if name in _BILATERAL or name in _MIDLINE:
        natural = "bilateral" if name in _BILATERAL else "midline"
        if request.side not in (None, natural):
            raise ValueError(f"{name} is drawn {natural}; side {request.side!r} is not possible")
        side = natural
    else:
        allowed = ("right", "left", "bilateral") if name == "Effusion" else ("right", "left")
        if request.side is None:
            weights = (0.4, 0.35, 0.25) if name == "Effusion" else (0.5, 0.5)
            side = allowed[int(rng.choice(len(allowed), p=weights))]
        elif request.side in allowed:
            side = request.side
        else:
            raise ValueError(f"{name}: side must be one of {', '.join(allowed)}, got {request.side!r}")
    return _Plan(finding=name, severity=severity, side=side, rng=rng)


def _requests(findings: Iterable[str | FindingRequest]) -> list[FindingRequest]:
    requests: dict[str, FindingRequest] = {}
    for item in findings:
        request = item if isinstance(item, FindingRequest) else FindingRequest(str(item))
        name = canonical_finding(request.finding)
        if name == NO_FINDING:
            continue
        if name in requests:
            raise ValueError(f"finding {name!r} requested twice")
        requests[name] = replace(request, finding=name)
    return [requests[name] for name in FINDINGS if name in requests]


def draw_chest(
    seed: int | Sequence[int],
    *,
    size: int = 128,
    findings: Iterable[str | FindingRequest] = (),
    view: str = "PA",
    patient_seed: int | Sequence[int] | None = None,
) -> PhantomImage:
    """Draw one synthetic chest radiograph with the given findings.

    The same arguments always give the same pixels. The anatomy, the image noise and each finding use
    independent random streams, so ``draw_chest(seed, findings=())`` is the exact finding-free version of
    ``draw_chest(seed, findings=[...])``: their difference is what the findings drew.

    Args:
        seed: Non-negative integer (or sequence of them) seeding this image.
        size: Image side in pixels (at least 32; the look is tuned at 128 to 512).
        findings: Finding names or :class:`FindingRequest` objects ("No Finding" is ignored).
        view: "PA" or "AP" (AP: shallower inspiration, lower contrast).
        patient_seed: Seeds the patient's anatomy; images sharing it look like the same person. Defaults to
            ``seed``.

    Returns:
        The 8-bit image and the records of every drawn instance.

    Raises:
        ValueError: unknown finding, a finding requested twice, an impossible side or severity, bad size.
    """
    if int(size) < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    entropy = _entropy(seed)
    patient_entropy = _entropy(patient_seed) if patient_seed is not None else entropy
    anatomy = sample_anatomy(_rng(patient_entropy, 1), _rng(entropy, 2), view=view)
    plans = [
        _plan(request, _rng(entropy, 100 + FINDINGS.index(request.finding)))
        for request in _requests(findings)
    ]
    anatomy = _modify_anatomy(anatomy, plans)
    scene = _Scene(anatomy, int(size))
    drawn: list[DrawnFinding] = []
    for plan in plans:
        drawn.extend(_DRAWERS[plan.finding](scene, plan))
    pixels = scene.render(_rng(entropy, 3))
    return PhantomImage(pixels=pixels, findings=tuple(drawn), anatomy=anatomy)
